using Conveyor.Presence;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.Presence;

/// <summary>Every presence script against a Redis Cluster node, which refuses keys that span hash slots.</summary>
[Collection(PresenceCollection.Name)]
public sealed class PresenceClusterTests(PresenceDatabase fixture) : IClassFixture<PresenceDatabase>
{
    [Fact]
    public async Task Every_presence_script_runs_on_a_redis_cluster_in_one_hash_slot()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, cluster: true);
        Assert.Equal(["beat", "disruption", "forget", "online", "release_stale", "take"], PresenceScripts.All.Select(s => s.Name).Order());
        var multiplexer = await TestRedis.GetClusterAsync();
        var slot = multiplexer.HashSlot(PresenceKeys.Online);
        Assert.All(PresenceKeys.All, key => Assert.Equal(slot, multiplexer.HashSlot(key)));
        var runtimes = await host.OnlineRuntimesAsync(2);
        foreach (var runtime in runtimes)
        {
            Assert.Equal(BeatOutcome.Buffered, (await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token)).Outcome);
        }
        await host.Database.ExecuteAsync("UPDATE runtimes SET status = 'offline' WHERE id = $1", runtimes[1].Id);
        // The registry reads both buffers in one transaction, which a cluster allows only within one slot.
        Assert.NotNull((await host.Registry.GetAsync(runtimes[0].Id.ToString()))!.LastSeenAt);

        Assert.Equal(new FlushResult(1, 1, 1), await host.Flusher.RunOnceAsync(CancellationToken.None));
        await host.SilenceAsync(TimeSpan.FromHours(1));
        Assert.Equal(1, (await host.Sweeper.RunOnceAsync(CancellationToken.None)).Swept);

        // online (the flips), beat, take, forget, disruption and release_stale all ran (the cluster refuses a script
        // whose keys span slots).
        Assert.Equal(0, await host.Db.HashLengthAsync(PresenceKeys.Online));
    }
}
