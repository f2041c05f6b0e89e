using Conveyor.Presence;
using Conveyor.Storage;
using Conveyor.Tests.Infrastructure;
using StackExchange.Redis;

namespace Conveyor.Tests.Presence;

[Collection(PresenceCollection.Name)]
public sealed class HeartbeatTests(PresenceDatabase fixture) : IClassFixture<PresenceDatabase>
{
    /// <summary>take.lua's intake gap with the default options.</summary>
    private static readonly long IntakeGapMs = (long)new PresenceOptions().IntakeGap.TotalMilliseconds;

    [Fact]
    public async Task Fifty_concurrent_beats_leave_one_buffered_entry_and_the_row_unchanged_until_the_flush()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        var runtime = await host.OnlineRuntimeAsync();
        var before = await host.LastSeenAtAsync(runtime.Id);
        await Task.Delay(5);

        var results = await Task.WhenAll(Enumerable.Range(0, 50).Select(_ =>
            Task.Run(() => host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token))));

        Assert.All(results, r => Assert.Equal(BeatOutcome.Buffered, r.Outcome));
        Assert.Equal(1, await host.Db.SortedSetLengthAsync(PresenceKeys.Beats));
        Assert.Equal(before, await host.LastSeenAtAsync(runtime.Id));
        var buffered = (long)(await host.BufferedAsync(runtime.Id))!;
        Assert.Equal(results.Max(r => r.SeenAt), new DateTimeOffset(RedisTime.ToUtc(buffered)));

        var flush = await host.Flusher.RunOnceAsync(CancellationToken.None);

        Assert.Equal(new FlushResult(1, 0, 1), flush);
        Assert.Equal(RedisTime.ToUtc(buffered), await host.LastSeenAtAsync(runtime.Id));
        Assert.True(await host.LastSeenAtAsync(runtime.Id) > before);
        Assert.Equal(0, await host.Db.SortedSetLengthAsync(PresenceKeys.Beats));
    }

    [Fact]
    public async Task An_offline_runtimes_beat_flips_it_online_synchronously_and_buffers_nothing()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        var runtime = await host.Registry.RegisterAsync("fresh");
        Assert.Equal("offline", await host.StatusAsync(runtime.Id));
        Assert.Null(await host.LastSeenAtAsync(runtime.Id));

        var beat = await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token);

        Assert.Equal(new BeatResult(BeatOutcome.Synchronous, FlippedOnline: true, beat.SeenAt), beat);
        Assert.Equal("online", await host.StatusAsync(runtime.Id));
        Assert.Equal(beat.SeenAt!.Value.UtcDateTime, await host.LastSeenAtAsync(runtime.Id));
        Assert.Null(await host.BufferedAsync(runtime.Id));
        Assert.True(await host.KnownOnlineAsync(runtime.Id));
        // Known online now: the next beat is buffered.
        Assert.Equal(BeatOutcome.Buffered, (await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token)).Outcome);
    }

    [Fact]
    public async Task A_flush_with_nothing_buffered_issues_no_database_command()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        var runtime = await host.OnlineRuntimeAsync();
        var (commands, opens) = (host.Commands.Count, host.Commands.Opens);

        var empty = await host.Flusher.RunOnceAsync(CancellationToken.None);

        Assert.Equal(new FlushResult(0, 0, 0), empty);
        Assert.Equal(commands, host.Commands.Count);
        Assert.Equal(opens, host.Commands.Opens);
        // The counter does see a flush that has work.
        await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token);
        await host.Flusher.RunOnceAsync(CancellationToken.None);
        Assert.Equal(commands + 1, host.Commands.Count);
    }

    [Fact]
    public async Task A_buffered_beat_costs_no_database_command()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        var runtime = await host.OnlineRuntimeAsync();
        var (commands, opens) = (host.Commands.Count, host.Commands.Opens);

        for (var i = 0; i < 20; i++)
        {
            Assert.Equal(BeatOutcome.Buffered, (await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token)).Outcome);
        }

        Assert.Equal(commands, host.Commands.Count);
        Assert.Equal(opens, host.Commands.Opens);
    }

    [Fact]
    public async Task A_race_to_offline_between_beat_and_flush_leaves_the_row_offline_and_the_next_beat_recovers_it()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        var runtime = await host.OnlineRuntimeAsync();
        Assert.Equal(BeatOutcome.Buffered, (await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token)).Outcome);
        var raced = await host.LastSeenAtAsync(runtime.Id);
        // What the sweeper (or an operator) does between the beat and the flush.
        await host.Database.ExecuteAsync("UPDATE runtimes SET status = 'offline' WHERE id = $1", runtime.Id);

        var flush = await host.Flusher.RunOnceAsync(CancellationToken.None);

        Assert.Equal(new FlushResult(0, 1, 1), flush);
        Assert.Equal("offline", await host.StatusAsync(runtime.Id));
        Assert.Equal(raced, await host.LastSeenAtAsync(runtime.Id));
        Assert.False(await host.KnownOnlineAsync(runtime.Id));
        Assert.Null(await host.BufferedAsync(runtime.Id));

        var next = await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token);

        Assert.Equal(BeatOutcome.Synchronous, next.Outcome);
        Assert.True(next.FlippedOnline);
        Assert.Equal("online", await host.StatusAsync(runtime.Id));
        Assert.Equal(next.SeenAt!.Value.UtcDateTime, await host.LastSeenAtAsync(runtime.Id));
    }

    [Fact]
    public async Task A_deleted_runtimes_buffered_beat_is_dropped_by_the_flush()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        var runtime = await host.OnlineRuntimeAsync();
        await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token);
        await host.Database.ExecuteAsync("DELETE FROM runtimes WHERE id = $1", runtime.Id);

        var flush = await host.Flusher.RunOnceAsync(CancellationToken.None);

        Assert.Equal(new FlushResult(0, 1, 1), flush);
        Assert.False(await host.KnownOnlineAsync(runtime.Id));
        Assert.Equal(BeatOutcome.NotFound, (await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token)).Outcome);
    }

    [Fact]
    public async Task A_beat_older_than_the_stored_last_seen_at_never_moves_it_backwards()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        var runtime = await host.OnlineRuntimeAsync();
        var future = DateTime.UtcNow.AddHours(1);
        future = future.AddTicks(-(future.Ticks % TimeSpan.TicksPerMillisecond));
        await host.Database.ExecuteAsync("UPDATE runtimes SET last_seen_at = $2 WHERE id = $1", runtime.Id, future);

        Assert.Equal(BeatOutcome.Buffered, (await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token)).Outcome);
        var flush = await host.Flusher.RunOnceAsync(CancellationToken.None);

        Assert.Equal(1, flush.Flushed);
        Assert.Equal(future, await host.LastSeenAtAsync(runtime.Id));

        // The synchronous path too.
        await host.Database.ExecuteAsync("UPDATE runtimes SET status = 'offline' WHERE id = $1", runtime.Id);
        await host.Db.HashDeleteAsync(PresenceKeys.Online, runtime.Id.ToString());
        Assert.Equal(BeatOutcome.Synchronous, (await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token)).Outcome);
        Assert.Equal(future, await host.LastSeenAtAsync(runtime.Id));
        Assert.Equal("online", await host.StatusAsync(runtime.Id));
    }

    [Fact]
    public async Task A_beat_arriving_while_a_flush_writes_is_kept_and_the_next_flush_finishes_the_frozen_beats_first()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        var runtime = await host.OnlineRuntimeAsync();
        var id = runtime.Id.ToString();
        await Task.Delay(5);
        var first = await host.Heartbeats.BeatAsync(id, runtime.Token);
        // A flush froze the buffered beats, then died before writing them.
        var taken = (RedisResult[])(await PresenceScripts.Take.RunAsync(host.Db, PresenceKeys.ForTake, [IntakeGapMs]))!;
        Assert.Equal([0L, 1L, 1L], taken.Select(r => (long)r));
        await Task.Delay(5);
        var second = await host.Heartbeats.BeatAsync(id, runtime.Token);
        Assert.Equal(BeatOutcome.Buffered, second.Outcome);
        Assert.True(second.SeenAt > first.SeenAt);
        // Both wait; the newest is what readers see.
        Assert.Equal(first.SeenAt!.Value.ToUnixTimeMilliseconds(), (long)(await host.Db.SortedSetScoreAsync(PresenceKeys.Flushing, id))!);
        Assert.Equal(second.SeenAt!.Value.ToUnixTimeMilliseconds(), (long)(await host.Db.SortedSetScoreAsync(PresenceKeys.Beats, id))!);
        Assert.Equal(second.SeenAt, (await host.Registry.GetAsync(id))!.LastSeenAt);

        var flush = await host.Flusher.RunOnceAsync(CancellationToken.None);

        // The frozen beat, then the live one: two batches of one runtime.
        Assert.Equal(new FlushResult(2, 0, 2), flush);
        Assert.Equal(second.SeenAt.Value.UtcDateTime, await host.LastSeenAtAsync(runtime.Id));
        Assert.Equal(0, await host.BufferedCountAsync());
        Assert.True(await host.KnownOnlineAsync(runtime.Id));
    }

    [Fact]
    public async Task Take_does_not_replace_a_frozen_set_and_counts_a_generation_per_freeze()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        async Task<long[]> TakeAsync() =>
            [.. ((RedisResult[])(await PresenceScripts.Take.RunAsync(host.Db, PresenceKeys.ForTake, [IntakeGapMs]))!).Select(r => (long)r)];

        Assert.Equal(new long[] { 0, 0, 0 }, await TakeAsync());
        Assert.False(await host.Db.KeyExistsAsync(PresenceKeys.Flushing));
        Assert.False(await host.Db.KeyExistsAsync(PresenceKeys.Generation));

        await host.Db.SortedSetAddAsync(PresenceKeys.Beats, "a", 1);
        Assert.Equal(new long[] { 0, 1, 1 }, await TakeAsync());
        await host.Db.SortedSetAddAsync(PresenceKeys.Beats, [new("b", 2), new("c", 3)]);
        Assert.Equal(new long[] { 1, 1, 1 }, await TakeAsync());

        Assert.Equal(["a"], (await host.Db.SortedSetRangeByRankAsync(PresenceKeys.Flushing)).Select(v => v.ToString()));
        Assert.Equal(2, await host.Db.SortedSetLengthAsync(PresenceKeys.Beats));

        // Emptied, the next freeze is a new generation.
        await host.Db.SortedSetRemoveAsync(PresenceKeys.Flushing, "a");
        Assert.Equal(new long[] { 0, 2, 2 }, await TakeAsync());

        // A frozen set left by a version without generations gets one, and keeps it.
        await host.Db.KeyDeleteAsync(PresenceKeys.Generation);
        Assert.Equal(new long[] { 1, 2, 1 }, await TakeAsync());
        Assert.Equal(new long[] { 1, 2, 1 }, await TakeAsync());
    }

    [Fact]
    public async Task Forget_removes_written_beats_only_while_their_generation_is_current()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        // Each member as written (a beat time, not 0), so only the frozen set's membership is at stake here.
        async Task<long> ForgetAsync(long generation, params string[] members) =>
            (long)await PresenceScripts.Forget.RunAsync(host.Db, PresenceKeys.ForForget, [generation, .. members.SelectMany(m => (RedisValue[])[m, 1])]);
        await host.Db.SortedSetAddAsync(PresenceKeys.Beats, [new("a", 1), new("b", 1)]);
        await PresenceScripts.Take.RunAsync(host.Db, PresenceKeys.ForTake, [IntakeGapMs]);

        Assert.Equal(1, await ForgetAsync(1, "a", "x"));
        Assert.Equal(["b"], (await host.Db.SortedSetRangeByRankAsync(PresenceKeys.Flushing)).Select(v => v.ToString()));

        // Emptied by another flush, then frozen again with a newer beat of a: generation 1 is over.
        Assert.Equal(1, await ForgetAsync(1, "b"));
        await host.Db.SortedSetAddAsync(PresenceKeys.Beats, "a", 2);
        await PresenceScripts.Take.RunAsync(host.Db, PresenceKeys.ForTake, [IntakeGapMs]);

        Assert.Equal(-1, await ForgetAsync(1, "a", "b"));
        Assert.Equal(2, await host.Db.SortedSetScoreAsync(PresenceKeys.Flushing, "a"));
        Assert.Equal(1, await ForgetAsync(2, "a"));
        Assert.False(await host.Db.KeyExistsAsync(PresenceKeys.Flushing));
    }

    [Fact]
    public async Task A_flush_writes_in_batches_of_the_configured_size()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, new() { ["Conveyor:Presence:FlushBatchSize"] = "2" });
        var runtimes = await host.OnlineRuntimesAsync(5);
        foreach (var runtime in runtimes)
        {
            await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token);
        }
        var commands = host.Commands.Count;

        var flush = await host.Flusher.RunOnceAsync(CancellationToken.None);

        Assert.Equal(new FlushResult(5, 0, 3), flush);
        Assert.Equal(commands + 3, host.Commands.Count);
        Assert.Equal(0, await host.Db.SortedSetLengthAsync(PresenceKeys.Beats));
    }

    [Fact]
    public async Task Passthrough_mode_bumps_on_every_beat_and_recovers_a_raced_row()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, new() { ["Conveyor:Presence:Mode"] = "Passthrough" });
        var runtime = await host.Registry.RegisterAsync("small-install");
        var id = runtime.Id.ToString();

        var first = await host.Heartbeats.BeatAsync(id, runtime.Token);
        Assert.Equal(BeatOutcome.Synchronous, first.Outcome);
        Assert.True(first.FlippedOnline);
        var seen = new List<DateTime?> { await host.LastSeenAtAsync(runtime.Id) };
        var commands = host.Commands.Count;
        for (var i = 0; i < 3; i++)
        {
            await Task.Delay(3);
            var beat = await host.Heartbeats.BeatAsync(id, runtime.Token);
            Assert.Equal(new BeatResult(BeatOutcome.Synchronous, FlippedOnline: false, beat.SeenAt), beat);
            seen.Add(await host.LastSeenAtAsync(runtime.Id));
            Assert.Equal(beat.SeenAt!.Value.UtcDateTime, seen[^1]);
        }
        Assert.Equal(commands + 3, host.Commands.Count); // one statement per beat
        Assert.Equal(seen.Order(), seen);
        Assert.Equal(4, seen.Distinct().Count());
        Assert.Equal(0, await host.Db.SortedSetLengthAsync(PresenceKeys.Beats));

        await host.Database.ExecuteAsync("UPDATE runtimes SET status = 'offline' WHERE id = $1", runtime.Id);
        var recovered = await host.Heartbeats.BeatAsync(id, runtime.Token);

        Assert.True(recovered.FlippedOnline);
        Assert.Equal("online", await host.StatusAsync(runtime.Id));
        Assert.Equal(recovered.SeenAt!.Value.UtcDateTime, await host.LastSeenAtAsync(runtime.Id));
    }

    public static TheoryData<string> Rejections => ["wrong token, known online", "wrong token, offline", "empty token", "unknown id", "malformed id"];

    [Theory]
    [MemberData(nameof(Rejections))]
    public async Task A_rejected_beat_changes_nothing(string rejection)
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        var online = await host.OnlineRuntimeAsync("online");
        await host.Heartbeats.BeatAsync(online.Id.ToString(), online.Token);
        var offline = await host.Registry.RegisterAsync("offline");
        var before = await host.SnapshotAsync();

        Task<BeatResult> Beat(string id, string? token) => host.Heartbeats.BeatAsync(id, token);
        switch (rejection)
        {
            case "wrong token, known online":
                Assert.Equal(BeatOutcome.Unauthorized, (await Beat(online.Id.ToString(), offline.Token)).Outcome);
                break;
            case "wrong token, offline":
                Assert.Equal(BeatOutcome.Unauthorized, (await Beat(offline.Id.ToString(), online.Token)).Outcome);
                break;
            case "empty token":
                Assert.Equal(BeatOutcome.Unauthorized, (await Beat(offline.Id.ToString(), "")).Outcome);
                break;
            case "unknown id":
                Assert.Equal(BeatOutcome.NotFound, (await Beat(Guid.NewGuid().ToString(), online.Token)).Outcome);
                break;
            default:
                var error = await Assert.ThrowsAsync<ConveyorValidationException>(() => Beat("not-a-uuid", online.Token));
                Assert.Equal("id", error.Field);
                break;
        }

        Assert.Equal(before, await host.SnapshotAsync());
        Assert.Equal(new FlushResult(1, 0, 1), await host.Flusher.RunOnceAsync(CancellationToken.None));
        Assert.Equal("offline", await host.StatusAsync(offline.Id));
    }
}
