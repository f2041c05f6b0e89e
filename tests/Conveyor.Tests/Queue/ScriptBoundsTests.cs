using Conveyor.Queue;
using Conveyor.Tests.Infrastructure;
using StackExchange.Redis;

namespace Conveyor.Tests.Queue;

/// <summary>
/// Every script at 10,000 items per call, beyond the largest batch any option allows (Lua's unpack() fails at about
/// 8,000 values, after a script may already have written), batches cut by bytes, and every maintenance pass going on
/// past a broken queue (on a Redis of its own: other tests' timers must not meet it).
/// </summary>
public sealed class ScriptBoundsTests
{
    private const int Many = 10_000;

    [Fact]
    public async Task Enqueue_claim_ack_and_return_work_with_ten_thousand_jobs_per_call()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        var keys = new QueueKeys(queue);
        await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "0")); // registers the queue
        var args = new List<RedisValue> { keys.Signal.ToString() };
        for (var i = 0; i < Many; i++)
        {
            args.AddRange([$"job-{i}", JobRecord.OpenHeader("probe", 3, null), $"{i}", ""]);
        }
        var enqueued = (RedisResult[])(await LuaScripts.Enqueue.RunAsync(
            host.Db, [keys.Jobs, keys.Ready, keys.Scheduled, keys.Registered, keys.Idle, keys.History], [.. args]))!;
        Assert.Equal(Many, enqueued.Skip(1).Count(r => (long)r == 1));

        var consumer = new FakeConsumer(host.Db, queue);
        await consumer.RegisterAsync();
        var claims = await consumer.ClaimAsync(Many + 1);
        Assert.Equal(Many + 1, claims.Count);
        Assert.Equal(Many + 1, await consumer.ClaimCountAsync());

        var back = (long)await LuaScripts.ReturnUnstarted.RunAsync(
            host.Db, [keys.Inflight(consumer.Id), keys.Ready], [keys.Signal.ToString(), .. claims.SelectMany(c => new RedisValue[] { c.Id, c.Token })]);
        Assert.Equal(Many + 1, back);
        // Handed back in their order, at the head of the list.
        Assert.Equal(claims.Select(c => c.Id), (await host.Db.ListRangeAsync(keys.Ready)).Select(v => v.ToString()));

        claims = await consumer.ClaimAsync(Many + 1);
        Assert.All(await consumer.AckAsync([.. claims]), acked => Assert.Equal(1, acked));
        Assert.Equal(0, await host.Db.HashLengthAsync(keys.Jobs));
        Assert.Equal(0, await host.Db.HashLengthAsync(keys.State));
    }

    [Fact]
    public async Task Recovery_of_ten_thousand_claims_in_one_call_loses_none()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        var keys = new QueueKeys(queue);
        var ids = await EnqueueManyAsync(host, queue);
        var crashed = new FakeConsumer(host.Db, queue);
        await crashed.RegisterAsync();
        Assert.Equal(Many, (await crashed.ClaimAsync(Many)).Count);
        await crashed.BackdateHeartbeatAsync(TimeSpan.FromMinutes(5));

        var reply = (RedisResult[])(await LuaScripts.Recover.RunAsync(
            host.Db, [keys.Consumers, keys.Inflight(crashed.Id), keys.Ready, keys.Jobs, keys.State, keys.Dead, keys.Watch, keys.History],
            [keys.Signal.ToString(), crashed.Id, 30_000, Many]))!;

        Assert.Equal([Many, 0, 0], reply.Select(r => (long)r));
        Assert.Equal(ids.Order(), (await host.Db.ListRangeAsync(keys.Ready)).Select(v => v.ToString()).Order());
        Assert.Equal(0, (await host.Admin.GetStatsAsync(queue)).Consumers);
    }

    [Fact]
    public async Task Retry_kill_promote_requeue_and_trim_work_with_ten_thousand_jobs_per_call()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        var keys = new QueueKeys(queue);
        await EnqueueManyAsync(host, queue);
        var consumer = new FakeConsumer(host.Db, queue);
        await consumer.RegisterAsync();

        // retry, then promote all of them at once
        Assert.All(await consumer.RetryAsync([.. await consumer.ClaimAsync(Many)]), r => Assert.Equal(1, r));
        Assert.Equal(Many, await host.Db.SortedSetLengthAsync(keys.Scheduled));
        Assert.Equal(Many, (long)await LuaScripts.Promote.RunAsync(host.Db, [keys.Scheduled, keys.Ready], [keys.Signal.ToString(), Many]));
        Assert.Equal(Many, await host.Db.ListLengthAsync(keys.Ready));

        // kill, then requeue all of them at once
        Assert.All(await consumer.KillAsync([.. await consumer.ClaimAsync(Many)]), r => Assert.Equal(1, r));
        Assert.Equal(Many, await host.Db.SortedSetLengthAsync(keys.Dead));
        Assert.Equal(Many, (long)await LuaScripts.RequeueDead.RunAsync(
            host.Db, [keys.Dead, keys.Jobs, keys.State, keys.Ready], [keys.Signal.ToString(), Many]));
        Assert.Equal(Many, await host.Db.ListLengthAsync(keys.Ready));

        // kill again, then trim all of them at once
        await consumer.KillAsync([.. await consumer.ClaimAsync(Many)]);
        var trimmed = (RedisResult[])(await LuaScripts.TrimDead.RunAsync(
            host.Db, [keys.Dead, keys.Jobs, keys.State, keys.Payloads], [0, 86_400_000, Many, int.MaxValue]))!;
        Assert.Equal(Many, (long)trimmed[0]);
        Assert.Equal(0, await host.Db.SortedSetLengthAsync(keys.Dead));
        Assert.Equal(0, await host.Db.HashLengthAsync(keys.Jobs));
    }

    [Fact]
    public async Task A_runtimes_claim_extend_and_release_work_with_ten_thousand_claims_per_call()
    {
        // A Redis of its own: another test server's custodian, finding this runtime in no database, would release it.
        using var redis = await TestRedis.StartDedicatedAsync();
        await using var host = await EngineHost.StartOnAsync(redis.Endpoint, timeoutMs: 10_000);
        var queue = TestRedis.UniqueQueue();
        var keys = new QueueKeys(queue);
        var ids = await EnqueueManyAsync(host, queue);
        var runtime = "runtime:" + Guid.NewGuid();

        var claimed = (RedisResult[])(await LuaScripts.Claim.RunAsync(
            host.Db,
            [keys.Consumers, keys.Ready, keys.Inflight(runtime), keys.Jobs, keys.State, keys.Payloads, keys.Seq, keys.Leases(runtime), keys.Expiring, keys.Remote],
            [runtime, Many, 0, int.MaxValue, 256 * 1024, 60_000]))!;
        var token = (long)claimed[1];
        Assert.Equal(Many, (claimed.Length - 2) / 3);
        Assert.Equal(Many, await host.Db.SortedSetLengthAsync(keys.Leases(runtime)));
        Assert.Equal(double.PositiveInfinity, await host.Db.SortedSetScoreAsync(keys.Consumers, runtime));
        Assert.NotNull(await host.Db.SortedSetScoreAsync(keys.Expiring, runtime));

        var extended = (RedisResult[])(await LuaScripts.Extend.RunAsync(
            host.Db, [keys.Inflight(runtime), keys.Leases(runtime)], [120_000, .. ids.SelectMany(id => new RedisValue[] { id, token })]))!;
        Assert.All(extended.Skip(1), r => Assert.Equal(1, (long)r));

        var released = (RedisResult[])(await LuaScripts.Release.RunAsync(
            host.Db,
            [keys.Consumers, keys.Inflight(runtime), keys.Leases(runtime), keys.Expiring, keys.Ready, keys.Jobs, keys.State, keys.Dead, keys.History],
            [keys.Signal.ToString(), runtime, token, Many + 1, "runtime went offline"]))!;
        Assert.Equal([Many, 0, 0], released.Select(r => (long)r));
        Assert.Equal(ids.Order(), (await host.Db.ListRangeAsync(keys.Ready)).Select(v => v.ToString()).Order());
        Assert.Equal(0, await host.Db.SortedSetLengthAsync(keys.Leases(runtime)));
        Assert.Null(await host.Db.SortedSetScoreAsync(keys.Expiring, runtime));
        Assert.Equal(0, (await host.Admin.GetStatsAsync(queue)).Consumers);
        Assert.Equal((1, "runtime went offline"), ((await host.Admin.GetJobAsync(queue, ids[^1]))!.Attempts, (await host.Admin.GetJobAsync(queue, ids[^1]))!.LastError));
    }

    [Fact]
    public void Completion_calls_are_cut_by_count_and_by_the_byte_budget_with_at_least_one_job_each()
    {
        var sizes = new[] { 10, 10, 10, 10, 10 };
        Assert.Equal([2, 2, 1], LuaScripts.Calls(sizes, 2, b => b).Select(c => c.Count));

        var large = LuaScripts.CallBudgetBytes / 2;
        Assert.Equal([2, 2], LuaScripts.Calls(new[] { large, large, large + 1, 1 }, 500, b => b).Select(c => c.Count));
        // One job larger than the whole budget still goes, alone.
        Assert.Equal([1, 1], LuaScripts.Calls(new[] { LuaScripts.CallBudgetBytes * 4, 1 }, 500, b => b).Select(c => c.Count));
    }

    [Fact]
    public async Task A_trim_frees_a_bounded_amount_of_payload_per_call_and_says_when_more_is_due()
    {
        // Its own Redis: a custodian that keeps no dead job would empty other tests' dead sets.
        using var redis = await TestRedis.StartDedicatedAsync();
        await using var host = await EngineHost.StartOnAsync(redis.Endpoint, new() { ["Conveyor:Custodian:DeadMaxCount"] = "0" }, timeoutMs: 5000);
        var queue = TestRedis.UniqueQueue();
        var keys = new QueueKeys(queue);
        var payload = "\"" + new string('x', 100_000) + "\"";
        await host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 5).Select(_ => new JobRequest("probe", payload))]);
        var consumer = new FakeConsumer(host.Db, queue);
        await consumer.RegisterAsync();
        await consumer.KillAsync([.. await consumer.ClaimAsync(5)]);

        // 250 kB per call: two 100 kB jobs fit, the third would not.
        var first = (RedisResult[])(await LuaScripts.TrimDead.RunAsync(host.Db, [keys.Dead, keys.Jobs, keys.State, keys.Payloads], [0, 86_400_000, 500, 250_000]))!;
        Assert.Equal([2, 1], first.Select(r => (long)r));
        Assert.Equal(3, await host.Db.HashLengthAsync(keys.Jobs));

        // The custodian calls again while more is due: all gone in one pass.
        Assert.Equal(3, (await host.Custodian.RunOnceAsync(CancellationToken.None)).Trimmed);
        Assert.Equal(0, await host.Db.SortedSetLengthAsync(keys.Dead));
    }

    [Fact]
    public async Task A_queue_whose_promotion_fails_does_not_stop_the_scheduler_visiting_the_others()
    {
        using var redis = await TestRedis.StartDedicatedAsync();
        await using var host = await EngineHost.StartOnAsync(redis.Endpoint, timeoutMs: 5000);
        var broken = await BrokenQueue.StartAsync(host, "scheduled");
        var queue = TestRedis.UniqueQueue();
        var id = (await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "{}") { Delay = TimeSpan.FromMilliseconds(1) })).Id;
        await Wait.UntilAsync(async () => (await host.Scheduler.RunOnceAsync(CancellationToken.None)).FailedQueues >= 1
            && (await host.Admin.GetJobAsync(queue, id))!.State == JobState.Ready, "the due job is promoted while the broken queue fails");

        Assert.Contains(host.Logs.AtLeast(Microsoft.Extensions.Logging.LogLevel.Error), e => e.Message.Contains(broken.Queue, StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_queue_whose_maintenance_fails_does_not_stop_the_custodian_visiting_the_others()
    {
        using var redis = await TestRedis.StartDedicatedAsync();
        await using var host = await EngineHost.StartOnAsync(redis.Endpoint, timeoutMs: 5000);
        var broken = await BrokenQueue.StartAsync(host, "consumers");
        var queue = TestRedis.UniqueQueue();
        await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "{}"));
        var crashed = new FakeConsumer(host.Db, queue);
        await crashed.RegisterAsync();
        await crashed.ClaimAsync(1);
        await crashed.BackdateHeartbeatAsync(TimeSpan.FromMinutes(5));

        var result = await host.Custodian.RunOnceAsync(CancellationToken.None);

        Assert.True(result.FailedQueues >= 1);
        Assert.Equal(0, await crashed.ClaimCountAsync());
        Assert.Equal(1, await host.Db.ListLengthAsync($"conveyor:{{{queue}}}:ready"));
        Assert.Contains(host.Logs.AtLeast(Microsoft.Extensions.Logging.LogLevel.Error), e => e.Message.Contains(broken.Queue, StringComparison.Ordinal));
    }

    /// <summary>A registered queue whose key <c>conveyor:{q}:&lt;key&gt;</c> holds the wrong type, so every script on it fails.</summary>
    private sealed record BrokenQueue(string Queue)
    {
        public static async Task<BrokenQueue> StartAsync(EngineHost host, string key)
        {
            var queue = TestRedis.UniqueQueue("broken");
            await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "{}"));
            await host.Db.StringSetAsync($"conveyor:{{{queue}}}:{key}", "not a sorted set");
            return new BrokenQueue(queue);
        }
    }

    private static async Task<List<string>> EnqueueManyAsync(EngineHost host, string queue)
    {
        var ids = new List<string>(Many);
        for (var i = 0; i < Many / 1000; i++)
        {
            var results = await host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 1000).Select(n => new JobRequest("probe", $"{n}"))]);
            ids.AddRange(results.Select(r => r.Id));
        }
        return ids;
    }
}
