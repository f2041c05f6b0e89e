using Conveyor.Presence;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.Presence;

/// <summary>
/// The write window: PostgreSQL's last_seen_at is written only once the value it holds is a window old; every beat is
/// still recorded exactly in Redis, where the sweeper and the API read it.
/// </summary>
[Collection(PresenceCollection.Name)]
public sealed class WriteWindowTests(PresenceDatabase fixture) : IClassFixture<PresenceDatabase>
{
    private static readonly TimeSpan Window = TimeSpan.FromMinutes(1);

    private static readonly Dictionary<string, string?> OneMinute = new() { ["Conveyor:Presence:WriteWindow"] = "00:01:00" };

    [Fact]
    public async Task Beats_inside_the_window_cost_no_write_and_the_first_beat_after_it_is_written_by_the_flush()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, OneMinute);
        var runtime = await host.OnlineRuntimeAsync();
        var id = runtime.Id.ToString();
        var flipped = await host.LastSeenAtAsync(runtime.Id);
        var commands = host.Commands.Count;

        BeatResult last = null!;
        for (var i = 0; i < 3; i++)
        {
            await Task.Delay(2);
            last = await host.Heartbeats.BeatAsync(id, runtime.Token);
            Assert.Equal(BeatOutcome.Buffered, last.Outcome);
        }
        var flush = await host.Flusher.RunOnceAsync(CancellationToken.None);

        Assert.Equal(new FlushResult(0, 0, 0), flush);
        Assert.Equal(commands, host.Commands.Count);
        Assert.Equal(flipped, await host.LastSeenAtAsync(runtime.Id));
        Assert.Null(await host.BufferedAsync(runtime.Id));
        // Exact where it is read: the API shows the latest beat, not what PostgreSQL holds.
        Assert.Equal(last.SeenAt, (await host.Registry.GetAsync(id))!.LastSeenAt);

        // A window later, PostgreSQL's value is a window old: the next beat is due, and written.
        await host.SilenceAsync(Window, runtime.Id);
        var due = await host.Heartbeats.BeatAsync(id, runtime.Token);
        Assert.Equal(due.SeenAt!.Value.ToUnixTimeMilliseconds(), (long)(await host.BufferedAsync(runtime.Id))!);
        flush = await host.Flusher.RunOnceAsync(CancellationToken.None);

        Assert.Equal(new FlushResult(1, 0, 1), flush);
        Assert.Equal(due.SeenAt.Value.UtcDateTime, await host.LastSeenAtAsync(runtime.Id));
        // And the window starts again from what PostgreSQL now holds.
        await Task.Delay(2);
        Assert.Equal(BeatOutcome.Buffered, (await host.Heartbeats.BeatAsync(id, runtime.Token)).Outcome);
        Assert.Null(await host.BufferedAsync(runtime.Id));
    }

    [Fact]
    public async Task A_fleet_beating_within_the_window_writes_no_rows_however_often_it_beats()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, OneMinute);
        var runtimes = await host.OnlineRuntimesAsync(10);
        var before = await host.SnapshotAsync();

        for (var round = 0; round < 5; round++)
        {
            foreach (var runtime in runtimes)
            {
                Assert.Equal(BeatOutcome.Buffered, (await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token)).Outcome);
            }
            Assert.Equal(new FlushResult(0, 0, 0), await host.Flusher.RunOnceAsync(CancellationToken.None));
        }

        Assert.Equal(before, await host.SnapshotAsync());
        Assert.Equal(10, await host.Db.HashLengthAsync(PresenceKeys.Seen));
    }

    [Fact]
    public async Task Runtimes_written_together_fall_due_each_at_its_own_time_in_the_last_quarter_of_the_window()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, OneMinute);
        // Written together: each flip wrote its row just now.
        var runtimes = await host.OnlineRuntimesAsync(40);
        async Task<int> DueAfterAsync(TimeSpan age)
        {
            await host.SilenceAsync(age);
            foreach (var runtime in runtimes)
            {
                Assert.Equal(BeatOutcome.Buffered, (await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token)).Outcome);
            }
            return await host.BufferedCountAsync();
        }

        // Each runtime's window is more than 45 s and at most 60 s, fixed by its id. (40 s, not 45: registering and
        // flipping the 40 took real time too.)
        Assert.Equal(0, await DueAfterAsync(TimeSpan.FromSeconds(40)));
        var halfway = await DueAfterAsync(TimeSpan.FromSeconds(12.5));
        Assert.InRange(halfway, 1, 39);
        Assert.Equal(40, await DueAfterAsync(TimeSpan.FromSeconds(7.5)));
    }

    [Fact]
    public async Task The_sweeper_keeps_online_a_runtime_whose_postgres_value_is_stale_but_whose_latest_beat_is_not()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, OneMinute);
        var alive = await host.OnlineRuntimeAsync("alive");
        var silent = await host.OnlineRuntimeAsync("silent");
        // Both rows look stale in PostgreSQL (flushes failed for an hour, say); only alive beat since, inside its window.
        await host.SilenceAsync(TimeSpan.FromHours(1));
        var beat = await host.Heartbeats.BeatAsync(alive.Id.ToString(), alive.Token);
        Assert.Equal(BeatOutcome.Buffered, beat.Outcome);

        var sweep = await host.Sweeper.RunOnceAsync(CancellationToken.None);

        Assert.Equal([silent.Id], sweep.Offline);
        Assert.Equal("online", await host.StatusAsync(alive.Id));
        Assert.True(await host.KnownOnlineAsync(alive.Id));
        Assert.Equal("offline", await host.StatusAsync(silent.Id));
        Assert.False(await host.KnownOnlineAsync(silent.Id));
        Assert.Equal(beat.SeenAt!.Value.ToUnixTimeMilliseconds(), (long)await host.Db.HashGetAsync(PresenceKeys.Seen, alive.Id.ToString()));
    }

    [Fact]
    public async Task A_beat_while_the_runtimes_due_write_is_frozen_is_not_queued_for_another_write()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, OneMinute);
        var runtime = await host.OnlineRuntimeAsync();
        var id = runtime.Id.ToString();
        await host.SilenceAsync(Window, runtime.Id);
        var due = await host.Heartbeats.BeatAsync(id, runtime.Token);
        // A flush froze the due beat and is writing it.
        await PresenceScripts.Take.RunAsync(host.Db, PresenceKeys.ForTake, [(long)new PresenceOptions().IntakeGap.TotalMilliseconds]);
        await Task.Delay(2);

        var during = await host.Heartbeats.BeatAsync(id, runtime.Token);

        Assert.False(await host.Db.KeyExistsAsync(PresenceKeys.Beats));
        Assert.Equal(during.SeenAt!.Value.ToUnixTimeMilliseconds(), (long)(await host.Db.HashGetAsync(PresenceKeys.Seen, id)));
        Assert.Equal(new FlushResult(1, 0, 1), await host.Flusher.RunOnceAsync(CancellationToken.None));
        Assert.Equal(due.SeenAt!.Value.UtcDateTime, await host.LastSeenAtAsync(runtime.Id));
        Assert.Equal(during.SeenAt, (await host.Registry.GetAsync(id))!.LastSeenAt);
        Assert.EndsWith(":" + due.SeenAt.Value.ToUnixTimeMilliseconds(), (string)(await host.Db.HashGetAsync(PresenceKeys.Online, id))!, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_runtime_known_online_by_a_version_without_the_window_has_its_next_beat_written()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, OneMinute);
        var runtime = await host.OnlineRuntimeAsync();
        // What an older version wrote: the token hash alone, nothing about PostgreSQL's value.
        var entry = (string)(await host.Db.HashGetAsync(PresenceKeys.Online, runtime.Id.ToString()))!;
        await host.Db.HashSetAsync(PresenceKeys.Online, runtime.Id.ToString(), entry[..64]);

        var beat = await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token);

        Assert.Equal(BeatOutcome.Buffered, beat.Outcome);
        Assert.Equal(new FlushResult(1, 0, 1), await host.Flusher.RunOnceAsync(CancellationToken.None));
        Assert.Equal(beat.SeenAt!.Value.UtcDateTime, await host.LastSeenAtAsync(runtime.Id));
    }

    [Fact]
    public async Task A_flush_that_finds_a_runtime_no_longer_online_forgets_its_latest_beat_too()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, OneMinute);
        var runtime = await host.OnlineRuntimeAsync();
        await host.SilenceAsync(Window, runtime.Id);
        await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token);
        await host.Database.ExecuteAsync("UPDATE runtimes SET status = 'offline' WHERE id = $1", runtime.Id);

        Assert.Equal(new FlushResult(0, 1, 1), await host.Flusher.RunOnceAsync(CancellationToken.None));

        Assert.False(await host.KnownOnlineAsync(runtime.Id));
        Assert.False(await host.Db.HashExistsAsync(PresenceKeys.Seen, runtime.Id.ToString()));
        Assert.True((await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token)).FlippedOnline);
    }
}
