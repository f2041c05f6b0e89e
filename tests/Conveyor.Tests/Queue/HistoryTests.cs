using System.Globalization;
using Conveyor.Queue;
using Conveyor.Storage;
using Conveyor.Tests.Infrastructure;
using StackExchange.Redis;

namespace Conveyor.Tests.Queue;

/// <summary>
/// The per-minute history counters (<c>conveyor:{q}:history</c>, <c>count</c> in <c>_lib.lua</c>) written by the scripts
/// that enqueue, ack, retry, kill and recover, and the claim token that carries its claim's time.
/// </summary>
public sealed class HistoryTests
{
    [Fact]
    public async Task Enqueued_processed_and_failed_jobs_are_counted_in_the_minute_they_happened_and_duplicates_are_not()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue("hist");
        var before = await RedisTime.NowMsAsync(host.Db);

        var ids = (await host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 6).Select(i => new JobRequest("probe", $"{i}") { Id = $"job-{i}" })]))
            .Select(r => r.Id).ToList();
        var duplicates = await host.Producer.EnqueueBatchAsync(queue, [new JobRequest("probe", "{}") { Id = "job-0" }, new JobRequest("probe", "{}") { Id = "job-1" }]);
        Assert.All(duplicates, d => Assert.True(d.Duplicate));
        var consumer = new FakeConsumer(host.Db, queue);
        await consumer.RegisterAsync();
        var claims = (await consumer.ClaimAsync(6)).ToArray();
        Assert.Equal(6, claims.Length);
        Assert.Equal(new long[] { 1, 1 }, await consumer.AckAsync(claims[0], claims[1]));
        Assert.Equal(new long[] { 0 }, await consumer.AckAsync(claims[0])); // acked already: not counted again
        Assert.Equal(new long[] { 1 }, await consumer.RetryAsync(claims[2]));
        Assert.Equal(new long[] { 1 }, await consumer.KillAsync(claims[3]));
        // The consumer dies holding two jobs: the custodian gives them back, each a failed attempt.
        await consumer.BackdateHeartbeatAsync(TimeSpan.FromMinutes(5));
        await host.Custodian.RunOnceAsync(CancellationToken.None);
        var after = await RedisTime.NowMsAsync(host.Db);

        var fields = await host.Db.HashGetAllAsync(new QueueKeys(queue).History);
        var totals = new Dictionary<string, long>();
        foreach (var field in fields)
        {
            var (minute, kind) = Split(field.Name!);
            Assert.InRange(minute, before / 60_000, after / 60_000);
            totals[kind] = totals.GetValueOrDefault(kind) + (long)field.Value;
        }
        Assert.Equal(new Dictionary<string, long> { ["e"] = 6, ["p"] = 2, ["f"] = 4 }, totals);

        var history = await host.Admin.GetHistoryAsync(queue);
        Assert.Equal((6L, 2L, 4L), (history.TotalEnqueued, history.TotalProcessed, history.TotalFailed));
        Assert.Equal(QueueHistory.Minutes, history.Enqueued.Count);
        Assert.Equal(after / 60_000 * 60_000, history.From.AddMinutes(QueueHistory.Minutes - 1).ToUnixTimeMilliseconds());
        Assert.Equal(ids.Count, history.Enqueued.Sum());
    }

    [Fact]
    public async Task A_processor_counts_what_its_handlers_finish_and_fail()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue("hist");
        host.Probe.Behavior = (job, _) => job.Payload == "\"fail\"" ? throw new InvalidOperationException("no") : Task.CompletedTask;
        await host.Producer.EnqueueBatchAsync(queue, [
            new JobRequest("probe", "1"), new JobRequest("probe", "2"), new JobRequest("probe", "3"),
            new JobRequest("probe", "\"fail\"") { MaxAttempts = 2 },
        ]);

        await using (var session = RunningSession.Start(host, queue))
        {
            await Wait.UntilAsync(async () =>
            {
                await host.Scheduler.RunOnceAsync(CancellationToken.None); // the retry is due at once: promote it
                var stats = await host.Admin.GetStatsAsync(queue);
                return stats is { Dead: 1, Ready: 0, Running: 0 };
            }, "three jobs acked and the failing one dead after its two attempts");
            await session.StopAsync();
        }

        var history = await host.Admin.GetHistoryAsync(queue);
        Assert.Equal((4L, 3L, 2L), (history.TotalEnqueued, history.TotalProcessed, history.TotalFailed));
    }

    [Fact]
    public async Task The_first_write_of_a_minute_drops_fields_older_than_the_retention_and_sets_an_expiry()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue("hist");
        var key = new QueueKeys(queue).History;
        var minute = await RedisTime.NowMsAsync(host.Db) / 60_000;
        // Three hours of counters, as a queue that was busy and then idle (without an expiry) would have left them.
        var old = Enumerable.Range(QueueHistory.KeptMinutes + 1, 180)
            .SelectMany(ago => new[] { "e", "p", "f" }.Select(kind => new HashEntry(Field(minute - ago, kind), 5))).ToArray();
        await host.Db.HashSetAsync(key, [.. old, new HashEntry(Field(minute - 10, "p"), 7)]);

        await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "{}"));

        var left = (await host.Db.HashGetAllAsync(key)).ToDictionary(e => e.Name.ToString(), e => (long)e.Value);
        Assert.Equal(2, left.Count);
        Assert.Equal(7, left[Field(minute - 10, "p")]);
        Assert.Equal(1, left.Single(e => e.Key.EndsWith(":e", StringComparison.Ordinal)).Value);
        var ttl = await host.Db.KeyTimeToLiveAsync(key);
        Assert.NotNull(ttl);
        Assert.InRange(ttl.Value, TimeSpan.FromMinutes(QueueHistory.KeptMinutes - 1), TimeSpan.FromMinutes(QueueHistory.KeptMinutes));

        // Later writes in the same minute only count: an old field written now stays until the next minute's first write.
        await host.Db.HashSetAsync(key, Field(minute - 500, "e"), 1);
        await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "{}"));
        var now = await RedisTime.NowMsAsync(host.Db) / 60_000;
        Assert.Equal(now == minute ? 3 : 2, (int)await host.Db.HashLengthAsync(key));
    }

    [Fact]
    public async Task A_claim_token_carries_the_claim_time_and_tokens_only_grow_when_the_counter_runs_ahead_or_behind()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue("token");
        var keys = new QueueKeys(queue);
        await host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 4).Select(i => new JobRequest("probe", $"{i}"))]);
        var consumer = new FakeConsumer(host.Db, queue);
        await consumer.RegisterAsync();

        var before = await RedisTime.NowMsAsync(host.Db);
        var first = (await consumer.ClaimAsync(1)).Single().Token;
        var after = await RedisTime.NowMsAsync(host.Db);
        Assert.InRange(ClaimToken.ClaimedAt(first).ToUnixTimeMilliseconds(), before, after);

        // A counter behind the clock (an old queue's, or one set low by hand) jumps to the clock: still above the last token.
        await host.Db.StringSetAsync(keys.Seq, 5);
        before = await RedisTime.NowMsAsync(host.Db);
        var second = (await consumer.ClaimAsync(1)).Single().Token;
        after = await RedisTime.NowMsAsync(host.Db);
        Assert.True(second > first, $"{second} > {first}");
        Assert.InRange(ClaimToken.ClaimedAt(second).ToUnixTimeMilliseconds(), before, after);
        Assert.Equal(second, (long)await host.Db.StringGetAsync(keys.Seq));

        // A counter ahead of the clock (more than 1,000 claims in a millisecond) keeps counting: tokens never go back.
        var ahead = (after + 60_000) * 1000;
        await host.Db.StringSetAsync(keys.Seq, ahead);
        var third = (await consumer.ClaimAsync(1)).Single().Token;
        var fourth = (await consumer.ClaimAsync(1)).Single().Token;
        Assert.Equal((ahead + 1, ahead + 2), (third, fourth));
        var held = await host.Db.SortedSetRangeByRankWithScoresAsync(keys.Inflight(consumer.Id));
        Assert.Equal(new[] { first, second, ahead + 1, ahead + 2 }, held.Select(e => (long)e.Score));
    }

    private static string Field(long minute, string kind) => minute.ToString(CultureInfo.InvariantCulture) + ":" + kind;

    private static (long Minute, string Kind) Split(string field)
    {
        var colon = field.IndexOf(':', StringComparison.Ordinal);
        return (long.Parse(field[..colon], CultureInfo.InvariantCulture), field[(colon + 1)..]);
    }
}
