using Conveyor.Queue;
using Conveyor.Testing;
using Conveyor.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Conveyor.Tests.Queue;

/// <summary>
/// Processor sessions against a Redis that stalls, answers too late or goes away: each test runs the engine on a
/// redis-server of its own (or a <see cref="FaultProxy"/> in front of one) with 500 ms client timeouts.
/// </summary>
public sealed class SessionFaultTests
{
    /// <summary>Heartbeat 200 ms, consumer timeout 3 s: a stall of 1.5 s times calls out but must not cost a job anything.</summary>
    private static Dictionary<string, string?> FastSettings(Dictionary<string, string?>? more = null)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Conveyor:Processor:HeartbeatInterval"] = "00:00:00.2",
            ["Conveyor:Custodian:ConsumerTimeout"] = "00:00:03",
            [Conveyor.Hosting.Schedules.Custodian] = "* * * * * *", // a visit every second: within 3 s − 200 ms
            ["Conveyor:Processor:Concurrency"] = "4",
            ["Conveyor:Processor:Prefetch"] = "4",
        };
        foreach (var (key, value) in more ?? [])
        {
            settings[key] = value;
        }
        return settings;
    }

    [Fact]
    public async Task A_redis_stall_that_times_out_heartbeats_does_not_stop_them_and_no_job_runs_twice()
    {
        using var redis = await TestRedis.StartDedicatedAsync();
        await using var admin = await AdminAsync(redis.Endpoint);
        await using var host = await EngineHost.StartOnAsync(redis.Endpoint, FastSettings());
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        host.Probe.Behavior = (_, _) => release.Task;
        var queue = TestRedis.UniqueQueue();
        var ids = (await host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 20).Select(i => new JobRequest("probe", $"{i}"))]))
            .Select(r => r.Id).ToList();
        await using var session = RunningSession.Start(host, queue);
        await Wait.UntilAsync(() => host.Probe.Running == 4, "four handlers run");
        var consumer = (await host.Db.SortedSetRangeByRankAsync($"conveyor:{{{queue}}}:consumers")).Single();

        await PauseAsync(admin, TimeSpan.FromMilliseconds(1500));
        await Wait.UntilAsync(() => host.Logs.Entries.Any(e => e.Message.Contains("heartbeat failed", StringComparison.Ordinal)), "a heartbeat times out");
        var afterStall = await ServerNowAsync(admin.GetDatabase()); // answered once the pause ends
        // Beats go on after the stall: the consumer's score passes the time the stall ended.
        await Wait.UntilAsync(async () => await admin.GetDatabase().SortedSetScoreAsync($"conveyor:{{{queue}}}:consumers", consumer) > afterStall, "a heartbeat lands after the stall");
        // Past the consumer timeout, the custodian still finds a live consumer: nothing is recovered behind its handlers.
        var timedOut = afterStall + 3500;
        await Wait.UntilAsync(async () => await ServerNowAsync(admin.GetDatabase()) > timedOut, "the consumer timeout passes", seconds: 30);
        Assert.Equal(0, (await host.Custodian.RunOnceAsync(CancellationToken.None)).DeadConsumers);

        release.SetResult();
        await Wait.UntilAsync(async () => (await host.Admin.GetStatsAsync(queue)) is { Ready: 0, Running: 0 }, "the queue drains");
        var result = await session.StopAsync();
        Assert.Equal(ids.Order(), host.Probe.Runs.Select(r => r.Id).Order()); // each exactly once
        Assert.Equal(20, result.Acked);
        Assert.Equal(SessionEnd.Stopped, result.End);
        Assert.True(result.Deregistered);
    }

    [Fact]
    public async Task After_a_gap_in_the_custodians_visits_every_consumer_gets_a_full_timeout_before_it_is_taken_for_dead()
    {
        // A Redis stall stops beats and custodian visits alike. Here the processor's connection is cut off (a proxy holds
        // its bytes) while the custodian, on its own connection, does not visit: when it comes back, the consumer's
        // heartbeat is older than the timeout, but so is the custodian's last visit, so it may not take it for dead.
        using var redis = await TestRedis.StartDedicatedAsync();
        await using var proxy = FaultProxy.To(redis.Endpoint);
        await using var host = await EngineHost.StartOnAsync(proxy.Endpoint, FastSettings());
        await using var custodian = await EngineHost.StartOnAsync(redis.Endpoint, FastSettings(), timeoutMs: 5000);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        host.Probe.Behavior = (_, _) => release.Task;
        var queue = TestRedis.UniqueQueue();
        var ids = (await host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 4).Select(i => new JobRequest("probe", $"{i}"))]))
            .Select(r => r.Id).ToList();
        await using var session = RunningSession.Start(host, queue);
        await Wait.UntilAsync(() => host.Probe.Running == 4, "four handlers run");
        Assert.Equal(0, (await custodian.Custodian.RunOnceAsync(CancellationToken.None)).DeadConsumers);

        proxy.Stall();
        var stalled = await ServerNowAsync(custodian.Db);
        await Wait.UntilAsync(async () => await ServerNowAsync(custodian.Db) > stalled + 4000, "4 s pass without beats or visits");
        Assert.Equal(0, (await custodian.Custodian.RunOnceAsync(CancellationToken.None)).DeadConsumers);
        proxy.Resume();
        var back = await ServerNowAsync(custodian.Db);
        await Wait.UntilAsync(async () =>
        {
            Assert.Equal(0, (await custodian.Custodian.RunOnceAsync(CancellationToken.None)).DeadConsumers);
            return await ServerNowAsync(custodian.Db) > back + 4000;
        }, "the custodian watches for longer than the timeout again");

        release.SetResult();
        await Wait.UntilAsync(async () => (await host.Admin.GetStatsAsync(queue)) is { Ready: 0, Running: 0 }, "the queue drains");
        var result = await session.StopAsync();
        Assert.Equal(ids.Order(), host.Probe.Runs.Select(r => r.Id).Order()); // each exactly once
        Assert.Equal(4, result.Acked);
    }

    [Fact]
    public async Task A_consumer_silent_for_the_timeout_while_the_custodian_watches_is_taken_for_dead()
    {
        using var redis = await TestRedis.StartDedicatedAsync();
        await using var proxy = FaultProxy.To(redis.Endpoint);
        await using var host = await EngineHost.StartOnAsync(proxy.Endpoint, FastSettings());
        await using var custodian = await EngineHost.StartOnAsync(redis.Endpoint, FastSettings(), timeoutMs: 5000);
        host.Probe.Behavior = (_, ct) => Task.Delay(Timeout.Infinite, ct);
        var queue = TestRedis.UniqueQueue();
        await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "0"));
        var session = RunningSession.Start(host, queue);
        await Wait.UntilAsync(() => host.Probe.Running == 1, "the handler runs");

        proxy.Stall(); // this processor alone is cut off; the custodian keeps watching
        await Wait.UntilAsync(async () => (await custodian.Custodian.RunOnceAsync(CancellationToken.None)).DeadConsumers == 1, "the custodian takes it for dead");
        Assert.Equal(1, await custodian.Db.ListLengthAsync($"conveyor:{{{queue}}}:ready"));
        proxy.Resume();
        // It had stopped claiming by itself at half the timeout, before the custodian took it for dead.
        Assert.Equal(SessionEnd.HeartbeatLost, (await session.Task.WaitAsync(TimeSpan.FromSeconds(30))).End);
    }

    [Fact]
    public async Task A_session_silent_past_the_timeout_starts_none_of_the_jobs_it_holds_claimed_until_a_beat_lands()
    {
        // What a frozen (SIGSTOP) or starved process lives through: its beats stop landing without failing (the proxy holds
        // them, the client waits 20 s), the custodian takes it for dead and gives its claims to others, then its handlers
        // return. Its workers must not start the claimed jobs still in its buffer: the next beat finds it dead and it ends.
        using var redis = await TestRedis.StartDedicatedAsync();
        await using var proxy = FaultProxy.To(redis.Endpoint);
        await using var host = await EngineHost.StartOnAsync(proxy.Endpoint, FastSettings(), timeoutMs: 20_000);
        await using var custodian = await EngineHost.StartOnAsync(redis.Endpoint, FastSettings(), timeoutMs: 5000);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        host.Probe.Behavior = (_, _) => release.Task;
        var queue = TestRedis.UniqueQueue();
        await host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 8).Select(i => new JobRequest("probe", $"{i}"))]);
        var session = RunningSession.Start(host, queue);
        await Wait.UntilAsync(async () => host.Probe.Running == 4 && (await custodian.Admin.GetStatsAsync(queue)).Running == 8, "4 run and 4 wait claimed");

        proxy.Stall();
        await Wait.UntilAsync(async () => (await custodian.Custodian.RunOnceAsync(CancellationToken.None)).DeadConsumers == 1, "the custodian takes it for dead");
        release.SetResult(); // the four handlers return; their workers take the claimed jobs waiting in the buffer
        await Wait.UntilAsync(() => host.Logs.Entries.Any(e => e.Message.Contains("wait for one before they start", StringComparison.Ordinal)), "the workers hold the claimed jobs");
        Assert.Equal(4, host.Probe.Runs.Count);

        proxy.Resume();
        var result = await session.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(SessionEnd.TakenForDead, result.End);
        Assert.Equal(4, host.Probe.Runs.Count);
        Assert.Equal(4, result.LostClaims); // the acks of the four that ran came too late: fenced, they changed nothing
        Assert.Equal(8, (await custodian.Admin.GetStatsAsync(queue)).Ready); // all eight wait for another consumer
    }

    [Fact]
    public async Task Acks_that_time_out_are_sent_again_and_the_session_ends_deregistered()
    {
        using var redis = await TestRedis.StartDedicatedAsync();
        await using var admin = await AdminAsync(redis.Endpoint);
        await using var host = await EngineHost.StartOnAsync(redis.Endpoint, FastSettings());
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        host.Probe.Behavior = (_, _) => release.Task;
        var queue = TestRedis.UniqueQueue();
        await host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 4).Select(i => new JobRequest("probe", $"{i}"))]);
        var session = RunningSession.Start(host, queue);
        await Wait.UntilAsync(() => host.Probe.Running == 4, "four handlers run");

        // The handlers finish while Redis is paused: their acks time out.
        await PauseAsync(admin, TimeSpan.FromMilliseconds(1500));
        release.SetResult();
        await Wait.UntilAsync(() => host.Logs.Entries.Any(e => e.Message.Contains("could not record", StringComparison.Ordinal)), "an ack times out");
        // Read on the admin connection (default timeout 5 s): the host's 500 ms one would time out while Redis is paused.
        await Wait.UntilAsync(async () => await admin.GetDatabase().HashLengthAsync($"conveyor:{{{queue}}}:jobs") == 0, "the acks land after the stall");

        var result = await session.StopAsync();
        Assert.Equal(4, result.Acked);
        Assert.Equal(0, result.LostClaims);
        Assert.True(result.Deregistered);
        // Nothing beats for it any more.
        Assert.Equal(0, await host.Db.SortedSetLengthAsync($"conveyor:{{{queue}}}:consumers"));
    }

    [Fact]
    public async Task A_claim_whose_reply_is_lost_is_reconciled_and_its_job_runs_once()
    {
        using var redis = await TestRedis.StartDedicatedAsync();
        await using var proxy = FaultProxy.To(redis.Endpoint);
        await using var host = await EngineHost.StartOnAsync(proxy.Endpoint, FastSettings(new() { ["Conveyor:Processor:IdlePollInterval"] = "00:00:00.05" }));
        using var direct = await ConnectionMultiplexer.ConnectAsync(redis.Endpoint);
        var queue = TestRedis.UniqueQueue();
        await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "0")); // registers the queue
        await using var session = RunningSession.Start(host, queue);
        await Wait.UntilAsync(() => host.Probe.Runs.Count == 1, "the first job runs");

        // Replies stop coming back; a job enqueued behind the proxy's back is claimed by the next poll, whose reply is lost.
        proxy.HoldReplies();
        var producer = new Producer(new Conveyor.Storage.RedisConnection(direct), host.Services.GetRequiredService<IOptions<QueueOptions>>(), host.Admin);
        var id = (await producer.EnqueueAsync(queue, new JobRequest("probe", "1"))).Id;
        await Wait.UntilAsync(async () => (await direct.GetDatabase().SortedSetScoreAsync(await InflightKeyAsync(direct, queue), id)).HasValue, "the job is claimed on the server");
        await Wait.UntilAsync(() => host.Logs.Entries.Any(e => e.Message.Contains("claim failed", StringComparison.Ordinal)), "the claim times out on the client");
        proxy.Resume();

        await Wait.UntilAsync(() => host.Probe.RunsOf(id) == 1, "the job whose claim reply was lost runs");
        await Wait.UntilAsync(async () => await host.Admin.GetJobAsync(queue, id) is null, "it is acked");
        var result = await session.StopAsync();
        Assert.Equal(1, host.Probe.RunsOf(id));
        Assert.Equal(1, result.Reconciled);
        Assert.True(result.Deregistered);
    }

    [Fact]
    public async Task A_session_that_cannot_heartbeat_stops_claiming_and_ends()
    {
        using var redis = await TestRedis.StartDedicatedAsync();
        await using var proxy = FaultProxy.To(redis.Endpoint);
        await using var host = await EngineHost.StartOnAsync(proxy.Endpoint, FastSettings());
        var queue = TestRedis.UniqueQueue();
        await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "0"));
        var session = RunningSession.Start(host, queue);
        await Wait.UntilAsync(() => host.Probe.Runs.Count == 1, "a job runs");

        // Redis goes silent for good: after half the consumer timeout without a beat the session stops, runs its end
        // steps until it gives up (the consumer timeout) and returns; it neither hangs nor throws for an unsubscribe.
        proxy.HoldReplies();
        var result = await session.Task.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(SessionEnd.HeartbeatLost, result.End);
        Assert.False(result.Deregistered);
        Assert.Contains(host.Logs.Entries, e => e.Message.Contains("no heartbeat recorded", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_session_taken_for_dead_ends_and_leaves_its_unstarted_jobs_to_others()
    {
        await using var host = await EngineHost.StartAsync(FastSettings(new() { ["Conveyor:Processor:Prefetch"] = "8" }));
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        host.Probe.Behavior = (_, _) => release.Task;
        var queue = TestRedis.UniqueQueue();
        var ids = (await host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 12).Select(i => new JobRequest("probe", $"{i}"))]))
            .Select(r => r.Id).ToList();
        var first = RunningSession.Start(host, queue);
        await Wait.UntilAsync(async () => host.Probe.Running == 4 && (await host.Admin.GetStatsAsync(queue)).Running == 12, "4 run and 8 wait claimed");
        var running = host.Probe.Runs.Select(r => r.Id).ToHashSet();

        // The custodian takes it for dead (as if its beats had stopped reaching Redis), in bounded calls.
        var consumer = (await host.Db.SortedSetRangeByRankAsync($"conveyor:{{{queue}}}:consumers")).Single();
        var keys = new QueueKeys(queue);
        var reply = (RedisResult[])(await LuaScripts.Recover.RunAsync(
            host.Db, [keys.Consumers, keys.Inflight(consumer!), keys.Ready, keys.Jobs, keys.State, keys.Dead, keys.Watch, keys.History],
            [keys.Signal.ToString(), consumer, -60_000, 5]))!;
        Assert.Equal(7, (long)reply[2]); // 5 of 12 recovered so far
        await Wait.UntilAsync(() => host.Logs.Entries.Any(e => e.Message.Contains("was taken for dead", StringComparison.Ordinal)), "its next beat finds it taken for dead");

        release.SetResult();
        var result = await first.Task.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(SessionEnd.TakenForDead, result.End);
        Assert.Equal(4, host.Probe.Runs.Count); // it ran nothing it had not started before

        // A new session (and the custodian, for the rest) runs everything else; only the four that were running when
        // their consumer was taken for dead may run twice.
        await host.Custodian.RunOnceAsync(CancellationToken.None);
        await using var second = RunningSession.Start(host, queue);
        await Wait.UntilAsync(async () => (await host.Admin.GetStatsAsync(queue)) is { Ready: 0, Running: 0 }, "the queue drains");
        Assert.Equal(ids.Order(), host.Probe.Runs.Select(r => r.Id).Distinct().Order());
        Assert.All(host.Probe.Runs.GroupBy(r => r.Id).Where(g => g.Count() > 1), g => Assert.Contains(g.Key, running));
    }

    /// <summary>Pauses every client of the server for <paramref name="length"/>; it resumes by itself.</summary>
    private static Task<RedisResult> PauseAsync(ConnectionMultiplexer admin, TimeSpan length) =>
        admin.GetDatabase().ExecuteAsync("CLIENT", "PAUSE", (long)length.TotalMilliseconds, "ALL");

    private static Task<ConnectionMultiplexer> AdminAsync(string endpoint) => ConnectionMultiplexer.ConnectAsync(endpoint + ",allowAdmin=true");

    private static async Task<long> ServerNowAsync(IDatabase db)
    {
        var reply = (RedisResult[])(await db.ExecuteAsync("TIME"))!;
        return (long)reply[0] * 1000 + (long)reply[1] / 1000;
    }

    private static async Task<RedisKey> InflightKeyAsync(ConnectionMultiplexer direct, string queue)
    {
        var consumer = (await direct.GetDatabase().SortedSetRangeByRankAsync($"conveyor:{{{queue}}}:consumers")).Single();
        return $"conveyor:{{{queue}}}:inflight:{consumer}";
    }
}
