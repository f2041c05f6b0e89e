using Conveyor.Presence;
using Conveyor.Testing;
using Conveyor.Tests.Infrastructure;
using Npgsql;

namespace Conveyor.Tests.Presence;

/// <summary>
/// PostgreSQL stopped or frozen in the middle of a flush or a sweep, through a proxy between the service and the real
/// server: the run fails with a transient error (the timer runs it again at its next tick), no acknowledged beat is
/// lost, and no runtime is marked offline wrongly.
/// </summary>
[Collection(PresenceCollection.Name)]
public sealed class TransientFaultTests(PresenceDatabase fixture) : IClassFixture<PresenceDatabase>
{
    [Theory]
    [InlineData("stopped")]
    [InlineData("frozen")]
    public async Task A_flush_that_loses_postgres_midway_keeps_every_unwritten_beat_for_the_next_flush(string fault)
    {
        var settings = new Dictionary<string, string?> { ["Conveyor:Presence:FlushBatchSize"] = "2" };
        await using var host = await PresenceHost.StartAsync(fixture.Database, settings);
        var runtimes = await host.OnlineRuntimesAsync(6);
        var before = await LastSeenAsync(host, runtimes);
        await Task.Delay(5); // the beats below are newer than the synchronous first beats
        var acked = new Dictionary<Guid, DateTime>();
        foreach (var runtime in runtimes)
        {
            acked[runtime.Id] = (await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token)).SeenAt!.Value.UtcDateTime;
        }
        await using var proxy = StartProxy();
        await using var faulty = await PresenceHost.StartAsync(fixture.Database, settings, ProxiedConnectionString(proxy, commandTimeout: 2), clearPresence: false);
        // One batch at a time: the first is written, then PostgreSQL goes away before the second.
        faulty.Flusher.Writers = 1;
        var writes = 0;
        var lost = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        faulty.Flusher.BeforeStep = step =>
        {
            if (step == FlushStep.Write && ++writes == 2)
            {
                (fault == "stopped" ? (Action)proxy.Refuse : proxy.Stall)();
                lost.SetResult();
            }
            return Task.CompletedTask;
        };

        var flush = faulty.Flusher.RunOnceAsync(CancellationToken.None);
        await lost.Task;
        // Beats keep coming while PostgreSQL is away.
        var late = runtimes[^1];
        acked[late.Id] = (await host.Heartbeats.BeatAsync(late.Id.ToString(), late.Token)).SeenAt!.Value.UtcDateTime;
        var error = await Assert.ThrowsAnyAsync<NpgsqlException>(() => flush);

        Assert.True(error.IsTransient, $"{error.GetType().Name} is not transient: {error.Message}");
        var frozen = await host.FrozenAsync();
        Assert.Equal(4, frozen.Length);
        foreach (var runtime in runtimes.Where(r => r != late))
        {
            var expected = frozen.Contains(runtime.Id.ToString()) ? before[runtime.Id] : acked[runtime.Id];
            Assert.Equal(expected, await host.LastSeenAtAsync(runtime.Id));
        }

        proxy.Resume();
        await host.Flusher.RunOnceAsync(CancellationToken.None);

        Assert.Equal(0, await host.BufferedCountAsync());
        foreach (var runtime in runtimes)
        {
            Assert.Equal(acked[runtime.Id], await host.LastSeenAtAsync(runtime.Id));
            Assert.Equal("online", await host.StatusAsync(runtime.Id));
        }
    }

    [Fact]
    public async Task A_sweep_that_loses_postgres_midway_marks_no_one_offline_wrongly_and_the_next_sweep_finishes()
    {
        var settings = new Dictionary<string, string?> { ["Conveyor:Presence:SweepBatchSize"] = "2" };
        await using var host = await PresenceHost.StartAsync(fixture.Database, settings);
        // In id order, as the sweep reads them: batches (r0, r1), (r2, r3), (r4, r5). r1 and r3 are alive: their
        // fresh beat is recorded in Redis. The silent r0, r2, r4, r5 go offline in batches (r0, r2), (r4, r5);
        // PostgreSQL stops after the second of those left the online set, before it is marked.
        var r = (await host.OnlineRuntimesAsync(6)).OrderBy(x => x.Id.ToString(), StringComparer.Ordinal).ToArray();
        await host.Database.ExecuteAsync("UPDATE runtimes SET last_seen_at = now() - interval '1 hour'");
        foreach (var alive in (RegisteredRuntime[])[r[1], r[3]])
        {
            Assert.Equal(BeatOutcome.Buffered, (await host.Heartbeats.BeatAsync(alive.Id.ToString(), alive.Token)).Outcome);
        }
        await using var proxy = StartProxy();
        await using var faulty = await PresenceHost.StartAsync(fixture.Database, settings, ProxiedConnectionString(proxy, commandTimeout: 2), clearPresence: false);
        var marks = 0;
        faulty.Sweeper.BeforeStep = step =>
        {
            if (step == SweepStep.MarkOffline && ++marks == 2)
            {
                proxy.Refuse();
            }
            return Task.CompletedTask;
        };

        var error = await Assert.ThrowsAnyAsync<NpgsqlException>(() => faulty.Sweeper.RunOnceAsync(CancellationToken.None));

        Assert.True(error.IsTransient, $"{error.GetType().Name} is not transient: {error.Message}");
        Assert.Equal(["offline", "online", "offline", "online", "online", "online"], await StatusesAsync(host, r));
        // r4 left the online set but is online in PostgreSQL: its next beat is written at once and brings it back.
        Assert.False(await host.KnownOnlineAsync(r[4].Id));
        var back = await host.Heartbeats.BeatAsync(r[4].Id.ToString(), r[4].Token);
        Assert.Equal(new BeatResult(BeatOutcome.Synchronous, FlippedOnline: false, back.SeenAt), back);
        Assert.True(await host.KnownOnlineAsync(r[4].Id));

        proxy.Resume();
        var sweep = await host.Sweeper.RunOnceAsync(CancellationToken.None);

        Assert.Equal([r[5].Id], sweep.Offline);
        Assert.Equal(["offline", "online", "offline", "online", "online", "offline"], await StatusesAsync(host, r));
    }

    [Fact]
    public async Task A_sweep_stalled_by_a_frozen_postgres_does_not_mark_offline_a_runtime_that_beat_meanwhile()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        var runtimes = await host.OnlineRuntimesAsync(2);
        await host.Database.ExecuteAsync("UPDATE runtimes SET last_seen_at = now() - interval '1 hour'");
        await using var proxy = StartProxy();
        await using var faulty = await PresenceHost.StartAsync(fixture.Database, connectionString: ProxiedConnectionString(proxy, commandTimeout: 30), clearPresence: false);
        var frozen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        faulty.Sweeper.BeforeStep = step =>
        {
            if (step == SweepStep.MarkOffline)
            {
                proxy.Stall();
                frozen.SetResult();
            }
            return Task.CompletedTask;
        };

        // Both left the online set; the sweep's UPDATE waits on a frozen server while one of them beats.
        var sweep = faulty.Sweeper.RunOnceAsync(CancellationToken.None);
        await frozen.Task;
        var beat = await host.Heartbeats.BeatAsync(runtimes[0].Id.ToString(), runtimes[0].Token);
        Assert.Equal(BeatOutcome.Synchronous, beat.Outcome);
        proxy.Resume();

        Assert.Equal(1, (await sweep).Swept);
        Assert.Equal("online", await host.StatusAsync(runtimes[0].Id));
        Assert.Equal(beat.SeenAt!.Value.UtcDateTime, await host.LastSeenAtAsync(runtimes[0].Id));
        Assert.Equal("offline", await host.StatusAsync(runtimes[1].Id));
    }

    private FaultProxy StartProxy()
    {
        var server = new NpgsqlConnectionStringBuilder(fixture.Database.ConnectionString);
        return FaultProxy.Start(server.Host!, server.Port);
    }

    /// <summary>The test database through <paramref name="proxy"/>; a frozen server fails a command after a few times <paramref name="commandTimeout"/> s.</summary>
    private string ProxiedConnectionString(FaultProxy proxy, int commandTimeout) =>
        new NpgsqlConnectionStringBuilder(fixture.Database.ConnectionString)
        {
            Host = "127.0.0.1",
            Port = proxy.Port,
            CommandTimeout = commandTimeout,
            Timeout = commandTimeout, // also bounds the cancel request Npgsql sends after a timeout
            CancellationTimeout = -1,
        }.ConnectionString;

    private static async Task<Dictionary<Guid, DateTime>> LastSeenAsync(PresenceHost host, List<RegisteredRuntime> runtimes)
    {
        var seen = new Dictionary<Guid, DateTime>();
        foreach (var runtime in runtimes)
        {
            seen[runtime.Id] = (await host.LastSeenAtAsync(runtime.Id))!.Value;
        }
        return seen;
    }

    private static async Task<string[]> StatusesAsync(PresenceHost host, RegisteredRuntime[] runtimes)
    {
        var statuses = new string[runtimes.Length];
        for (var i = 0; i < runtimes.Length; i++)
        {
            statuses[i] = await host.StatusAsync(runtimes[i].Id);
        }
        return statuses;
    }
}
