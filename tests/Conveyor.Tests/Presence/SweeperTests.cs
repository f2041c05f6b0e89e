using Conveyor.Presence;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.Presence;

[Collection(PresenceCollection.Name)]
public sealed class SweeperTests(PresenceDatabase fixture) : IClassFixture<PresenceDatabase>
{
    private static readonly Dictionary<string, string?> NoDisruption = new() { ["Conveyor:Presence:MassOfflineShare"] = "1" };

    [Fact]
    public async Task The_sweeper_marks_a_silent_runtime_offline_but_not_one_whose_fresh_beat_is_still_buffered()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        var silent = await host.OnlineRuntimeAsync("silent");
        var alive = await host.OnlineRuntimeAsync("alive");
        Assert.Equal(BeatOutcome.Buffered, (await host.Heartbeats.BeatAsync(alive.Id.ToString(), alive.Token)).Outcome);
        // Both rows look stale in PostgreSQL; only the buffer knows better.
        await BackdateAsync(host, silent.Id, alive.Id);
        var buffered = await host.BufferedAsync(alive.Id);

        var sweep = await host.Sweeper.RunOnceAsync(CancellationToken.None);

        Assert.Equal([silent.Id], sweep.Offline);
        Assert.Equal((1, 0, SweepDisruption.None, 1), (sweep.Silent, sweep.HeldBack, sweep.Disruption, sweep.Batches));
        Assert.Equal("offline", await host.StatusAsync(silent.Id));
        Assert.False(await host.KnownOnlineAsync(silent.Id));
        Assert.Equal("online", await host.StatusAsync(alive.Id));
        Assert.True(await host.KnownOnlineAsync(alive.Id));
        Assert.Equal(buffered, await host.BufferedAsync(alive.Id));

        var back = await host.Heartbeats.BeatAsync(silent.Id.ToString(), silent.Token);
        Assert.Equal(BeatOutcome.Synchronous, back.Outcome);
        Assert.True(back.FlippedOnline);
    }

    [Fact]
    public async Task A_fresh_beat_a_flush_has_frozen_but_not_yet_written_also_keeps_a_runtime_online()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        var alive = await host.OnlineRuntimeAsync("alive");
        Assert.Equal(BeatOutcome.Buffered, (await host.Heartbeats.BeatAsync(alive.Id.ToString(), alive.Token)).Outcome);
        await BackdateAsync(host, alive.Id);
        await PresenceScripts.Take.RunAsync(host.Db, PresenceKeys.ForTake, [(long)new PresenceOptions().IntakeGap.TotalMilliseconds]);
        Assert.False(await host.Db.KeyExistsAsync(PresenceKeys.Beats));

        var sweep = await host.Sweeper.RunOnceAsync(CancellationToken.None);

        Assert.Equal(0, sweep.Swept);
        Assert.Equal("online", await host.StatusAsync(alive.Id));
        Assert.True(await host.KnownOnlineAsync(alive.Id));
    }

    [Fact]
    public async Task The_sweeper_leaves_runtimes_inside_the_stale_window_alone()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        var runtime = await host.OnlineRuntimeAsync();
        await host.Database.ExecuteAsync("UPDATE runtimes SET last_seen_at = now() - interval '100 seconds' WHERE id = $1", runtime.Id);

        Assert.Equal(0, (await host.Sweeper.RunOnceAsync(CancellationToken.None)).Swept);
        Assert.Equal("online", await host.StatusAsync(runtime.Id));
    }

    [Fact]
    public async Task The_sweeper_works_in_batches_and_skips_fresh_runtimes_without_looping()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, new() { ["Conveyor:Presence:SweepBatchSize"] = "2" });
        var runtimes = await host.OnlineRuntimesAsync(5);
        await BackdateAsync(host, [.. runtimes.Select(r => r.Id)]);
        var alive = runtimes.OrderBy(r => r.Id.ToString(), StringComparer.Ordinal).First();
        await host.Heartbeats.BeatAsync(alive.Id.ToString(), alive.Token);

        var sweep = await host.Sweeper.RunOnceAsync(CancellationToken.None);

        Assert.Equal((4, 4, 0, 3), (sweep.Swept, sweep.Silent, sweep.HeldBack, sweep.Batches));
        Assert.Equal(runtimes.Where(r => r != alive).Select(r => r.Id).Order(), sweep.Offline);
        Assert.Equal(1L, await host.Database.ScalarAsync<long>("SELECT count(*) FROM runtimes WHERE status = 'online'"));
        Assert.Equal("online", await host.StatusAsync(alive.Id));
    }

    [Fact]
    public async Task Synchronous_beats_racing_the_sweeper_always_end_online()
    {
        // Every runtime looks silent when the race starts: with the disruption rules on, the sweep would hold them all.
        await using var host = await PresenceHost.StartAsync(fixture.Database, NoDisruption);
        var runtimes = await host.OnlineRuntimesAsync(40);
        for (var round = 0; round < 15; round++)
        {
            // Stale and not known online (say Redis lost them): every beat takes the synchronous path.
            await BackdateAsync(host, [.. runtimes.Select(r => r.Id)]);
            await host.Database.ExecuteAsync("UPDATE runtimes SET status = 'online'");
            await host.ResetRedisAsync();

            await RaceAsync(host, runtimes);

            Assert.Equal(0L, await NotFreshlyOnlineAsync(host));
        }
    }

    [Fact]
    public async Task Buffered_beats_racing_the_sweeper_always_end_online()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, NoDisruption);
        var runtimes = await host.OnlineRuntimesAsync(40);
        for (var round = 0; round < 15; round++)
        {
            // Stale in PostgreSQL but known online: beats are buffered unless the sweeper got there first.
            await BackdateAsync(host, [.. runtimes.Select(r => r.Id)]);
            await host.Database.ExecuteAsync("UPDATE runtimes SET status = 'online'");
            await host.Db.KeyDeleteAsync([PresenceKeys.Beats, PresenceKeys.Flushing]);
            foreach (var runtime in runtimes)
            {
                await host.Db.HashSetAsync(PresenceKeys.Online, runtime.Id.ToString(), Hash(runtime.Token));
            }

            await RaceAsync(host, runtimes);
            await host.Flusher.RunOnceAsync(CancellationToken.None);

            Assert.Equal(0L, await NotFreshlyOnlineAsync(host));
        }
    }

    private static async Task RaceAsync(PresenceHost host, List<RegisteredRuntime> runtimes)
    {
        var start = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var sweep = Task.Run(async () =>
        {
            await start.Task;
            return await host.Sweeper.RunOnceAsync(CancellationToken.None);
        });
        // Each runtime beats once, the beats spread over the few milliseconds a sweep takes.
        var beats = runtimes.Select((r, i) => Task.Run(async () =>
        {
            await start.Task;
            await Task.Delay(i % 8);
            return await host.Heartbeats.BeatAsync(r.Id.ToString(), r.Token);
        })).ToList();
        start.SetResult();
        await sweep;
        Assert.All(await Task.WhenAll(beats), b => Assert.Contains(b.Outcome, (BeatOutcome[])[BeatOutcome.Buffered, BeatOutcome.Synchronous]));
    }

    private static Task<long> NotFreshlyOnlineAsync(PresenceHost host) =>
        host.Database.ScalarAsync<long>("SELECT count(*) FROM runtimes WHERE status <> 'online' OR last_seen_at < now() - interval '1 minute'");

    private static string Hash(string token) =>
        Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(token)));

    private static Task<int> BackdateAsync(PresenceHost host, params Guid[] ids) =>
        host.Database.ExecuteAsync("UPDATE runtimes SET last_seen_at = now() - interval '1 hour' WHERE id = ANY($1)", ids);
}
