using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.Presence;

/// <summary>Its own database, so the table's update counters are this test's alone.</summary>
[Collection(PresenceCollection.Name)]
public sealed class HotUpdateTests(PresenceDatabase fixture) : IClassFixture<PresenceDatabase>
{
    [Fact]
    public async Task Flushed_updates_are_hot_and_only_status_flips_touch_an_index()
    {
        var host = await PresenceHost.StartAsync(fixture.Database);
        var runtimes = await host.OnlineRuntimesAsync(10); // 10 flips offline → online: not HOT
        // Where the flips' new row versions landed depends on their order; VACUUM (autovacuum's job in
        // production) leaves each page with its live rows and the room fillfactor reserves for HOT updates.
        await fixture.Database.ExecuteAsync("VACUUM runtimes");
        for (var round = 0; round < 3; round++)
        {
            await Task.Delay(2);
            foreach (var runtime in runtimes)
            {
                await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token);
            }
            Assert.Equal(10, (await host.Flusher.RunOnceAsync(CancellationToken.None)).Flushed);
        }
        // Closing the pool ends its backends, which report their counters as they exit.
        await host.DisposeAsync();

        long updates = 0, hot = 0;
        await Wait.UntilAsync(async () =>
        {
            await using var command = fixture.Database.DataSource.CreateCommand(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'runtimes'");
            await using var reader = await command.ExecuteReaderAsync();
            await reader.ReadAsync();
            (updates, hot) = (reader.GetInt64(0), reader.GetInt64(1));
            return updates >= 40;
        }, "PostgreSQL reported the table's update counters");

        Assert.Equal(40, updates);
        Assert.Equal(30, hot);
    }
}
