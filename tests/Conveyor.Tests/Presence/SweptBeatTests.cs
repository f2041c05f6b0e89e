using Conveyor.Hosting;
using Conveyor.Presence;
using Conveyor.Storage;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.Presence;

/// <summary>
/// A runtime that stopped beating while PostgreSQL was away: its last beat was acknowledged (202) and waits in Redis,
/// older than the stale window by the time PostgreSQL is back. The sweeper rightly takes it offline, and the flush then
/// skips the row (it writes online rows only). The beat must still reach last_seen_at: the sweeper writes it.
/// </summary>
[Collection(PresenceCollection.Name)]
public sealed class SweptBeatTests(PresenceDatabase fixture) : IClassFixture<PresenceDatabase>
{
    /// <summary>The shortest stale window the start-up validation allows with the timers firing every second.</summary>
    private static readonly TimeSpan Window = TimeSpan.FromSeconds(2.5);

    private static readonly Dictionary<string, string?> ShortWindow = new()
    {
        [Schedules.HeartbeatFlush] = "* * * * * *",
        [Schedules.StaleSweeper] = "* * * * * *",
        ["Conveyor:Presence:StaleWindow"] = $"{Window}",
        ["Conveyor:Presence:BeatInterval"] = "00:00:00.1",
        ["Conveyor:Presence:FlushInterval"] = "00:00:01",
        ["Conveyor:Presence:SweepInterval"] = "00:00:01",
    };

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_buffered_beat_older_than_the_stale_window_ends_in_last_seen_at_when_the_sweeper_takes_its_runtime_offline(bool frozenByAFlush)
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, ShortWindow);
        var runtime = await host.OnlineRuntimeAsync();
        var last = await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token);
        Assert.Equal(BeatOutcome.Buffered, last.Outcome);
        Assert.True(await host.LastSeenAtAsync(runtime.Id) < last.SeenAt!.Value.UtcDateTime, "the buffered beat is newer than PostgreSQL's last_seen_at");
        if (frozenByAFlush)
        {
            // A flush froze it and then failed to write it (PostgreSQL away): it waits in the flushing set.
            await PresenceScripts.Take.RunAsync(host.Db, PresenceKeys.ForTake, [(long)new PresenceOptions().IntakeGap.TotalMilliseconds]);
        }
        await WaitUntilOlderThanTheWindowAsync(host, last.SeenAt!.Value);
        // The flush timer ran on meanwhile (failing to write), stamping Conveyor's beat intake.
        await PresenceHost.StampIntakeUnbrokenAsync(host.Db);

        var sweep = await host.Sweeper.RunOnceAsync(CancellationToken.None);
        await host.Flusher.RunOnceAsync(CancellationToken.None);

        Assert.Equal(1, sweep.Swept);
        Assert.Equal("offline", await host.StatusAsync(runtime.Id));
        Assert.Equal(0, await host.BufferedCountAsync());
        Assert.Equal(last.SeenAt.Value.UtcDateTime, await host.LastSeenAtAsync(runtime.Id));
    }

    [Fact]
    public async Task A_runtime_swept_without_a_buffered_beat_keeps_its_last_seen_at()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, ShortWindow);
        var runtime = await host.OnlineRuntimeAsync();
        var seen = await host.LastSeenAtAsync(runtime.Id);
        await WaitUntilOlderThanTheWindowAsync(host, new DateTimeOffset(seen!.Value));
        await PresenceHost.StampIntakeUnbrokenAsync(host.Db);

        Assert.Equal(1, (await host.Sweeper.RunOnceAsync(CancellationToken.None)).Swept);

        Assert.Equal("offline", await host.StatusAsync(runtime.Id));
        Assert.Equal(seen, await host.LastSeenAtAsync(runtime.Id));
    }

    /// <summary>Until Redis time is more than the stale window past <paramref name="beat"/>.</summary>
    private static async Task WaitUntilOlderThanTheWindowAsync(PresenceHost host, DateTimeOffset beat)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (RedisTime.ToUtc(await RedisTime.NowMsAsync(host.Db)) <= beat.UtcDateTime + Window + TimeSpan.FromMilliseconds(200))
        {
            Assert.True(DateTime.UtcNow < deadline, $"Timed out after 30 s waiting for Redis time to pass the {Window.TotalSeconds} s stale window after the beat");
            await Task.Delay(100);
        }
    }
}
