using System.Net;
using System.Net.Sockets;
using Conveyor.Presence;
using Conveyor.Storage;
using Conveyor.Tests.Infrastructure;
using Npgsql;

namespace Conveyor.Tests.Presence;

/// <summary>No acknowledged beat is lost: not to a failed flush, not to a process that stops.</summary>
[Collection(PresenceCollection.Name)]
public sealed class DurabilityTests(PresenceDatabase fixture) : IClassFixture<PresenceDatabase>
{
    [Fact]
    public async Task A_flush_while_postgres_is_unreachable_fails_keeps_the_beats_and_the_next_flush_writes_them_all()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        var runtimes = await host.OnlineRuntimesAsync(3);
        await Task.Delay(5);
        foreach (var runtime in runtimes)
        {
            Assert.Equal(BeatOutcome.Buffered, (await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token)).Outcome);
        }
        var before = await host.SnapshotAsync();
        var unreachable = new NpgsqlConnectionStringBuilder(fixture.Database.ConnectionString) { Port = ClosedPort(), Timeout = 2 }.ConnectionString;
        await using (var down = await PresenceHost.StartAsync(fixture.Database, connectionString: unreachable, clearPresence: false))
        {
            await Assert.ThrowsAnyAsync<NpgsqlException>(() => down.Flusher.RunOnceAsync(CancellationToken.None));
        }

        Assert.Equal(before, await host.SnapshotAsync());
        // Frozen by the failed flush: the next one writes them first.
        string[] expected = [.. runtimes.Select(r => r.Id.ToString()).Order(StringComparer.Ordinal)];
        Assert.Equal(expected, await host.FrozenAsync());

        var flush = await host.Flusher.RunOnceAsync(CancellationToken.None);

        Assert.Equal(new FlushResult(3, 0, 1), flush);
        foreach (var runtime in runtimes)
        {
            Assert.Null(await host.BufferedAsync(runtime.Id));
            Assert.True(await host.KnownOnlineAsync(runtime.Id));
        }
        Assert.NotEqual(before, await host.SnapshotAsync());
        Assert.Equal(0, await host.BufferedCountAsync());
    }

    [Fact]
    public async Task A_flush_that_fails_midway_keeps_the_failed_batch_frozen_and_the_next_flush_writes_only_that()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, new() { ["Conveyor:Presence:FlushBatchSize"] = "2" });
        var runtimes = await host.OnlineRuntimesAsync(6);
        await Task.Delay(5);
        var beats = new Dictionary<Guid, DateTime>();
        foreach (var runtime in runtimes)
        {
            var beat = await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token);
            beats[runtime.Id] = beat.SeenAt!.Value.UtcDateTime;
        }
        // One runtime's row refuses the write, so exactly one of the three batches fails; the others commit.
        var poisoned = runtimes[3].Id;
        await host.Database.ExecuteAsync($$"""
            CREATE FUNCTION refuse_flush() RETURNS trigger LANGUAGE plpgsql AS $f$
            BEGIN RAISE EXCEPTION 'refused'; END $f$;
            CREATE TRIGGER refuse_flush BEFORE UPDATE ON runtimes
                FOR EACH ROW WHEN (NEW.id = '{{poisoned}}') EXECUTE FUNCTION refuse_flush();
            """);
        try
        {
            await Assert.ThrowsAsync<PostgresException>(() => host.Flusher.RunOnceAsync(CancellationToken.None));
        }
        finally
        {
            await host.Database.ExecuteAsync("DROP TRIGGER refuse_flush ON runtimes; DROP FUNCTION refuse_flush();");
        }

        var frozen = await host.FrozenAsync();
        Assert.Equal(2, frozen.Length);
        Assert.Contains(poisoned.ToString(), frozen);
        foreach (var runtime in runtimes)
        {
            var written = await host.LastSeenAtAsync(runtime.Id) == beats[runtime.Id];
            Assert.Equal(!frozen.Contains(runtime.Id.ToString()), written);
        }

        var flush = await host.Flusher.RunOnceAsync(CancellationToken.None);

        Assert.Equal(new FlushResult(2, 0, 1), flush);
        foreach (var runtime in runtimes)
        {
            Assert.Equal(beats[runtime.Id], await host.LastSeenAtAsync(runtime.Id));
            Assert.True(await host.KnownOnlineAsync(runtime.Id));
        }
        Assert.Equal(0, await host.BufferedCountAsync());
    }

    [Fact]
    public async Task A_beat_accepted_by_a_process_right_before_it_stops_is_written_by_a_flush_from_another_process()
    {
        var first = await PresenceHost.StartAsync(fixture.Database, ownConnection: true);
        var runtime = await first.OnlineRuntimeAsync();
        var synchronous = await first.LastSeenAtAsync(runtime.Id);
        await Task.Delay(5);
        var beat = await first.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token);
        Assert.Equal(BeatOutcome.Buffered, beat.Outcome);
        // The process stops at once: its Redis connection and PostgreSQL pool go, nothing is drained.
        await first.DisposeAsync();

        await using var second = await PresenceHost.StartAsync(fixture.Database, ownConnection: true, clearPresence: false);
        var flush = await second.Flusher.RunOnceAsync(CancellationToken.None);

        Assert.Equal(1, flush.Flushed);
        Assert.True(beat.SeenAt!.Value.UtcDateTime > synchronous);
        Assert.Equal(beat.SeenAt.Value.UtcDateTime, await second.LastSeenAtAsync(runtime.Id));
    }

    private static int ClosedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
