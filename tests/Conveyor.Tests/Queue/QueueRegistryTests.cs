using Conveyor.Queue;
using Conveyor.Tests.Infrastructure;
using StackExchange.Redis;

namespace Conveyor.Tests.Queue;

/// <summary>
/// The registry every timer pass walks (<c>conveyor:queues</c>): bounded by <c>Conveyor:Queue:MaxQueues</c>, and a queue
/// empty for <c>Conveyor:Custodian:EmptyQueueRetention</c> leaves it. Each test runs on a redis-server of its own, whose
/// registry no other test fills.
/// </summary>
public sealed class QueueRegistryTests
{
    [Fact]
    public async Task A_new_queue_beyond_the_bound_is_refused_and_nothing_is_written()
    {
        using var redis = await TestRedis.StartDedicatedAsync();
        await using var host = await EngineHost.StartOnAsync(redis.Endpoint, new() { ["Conveyor:Queue:MaxQueues"] = "3" });
        foreach (var queue in new[] { "a", "b", "c" })
        {
            await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "{}"));
        }

        var refused = await Assert.ThrowsAsync<ConveyorQueueLimitException>(() => host.Producer.EnqueueAsync("d", new JobRequest("probe", "{}")));

        Assert.Equal(("d", 3), (refused.Queue, refused.MaxQueues));
        Assert.Empty(await KeysAsync(host, "conveyor:{d}:*"));
        Assert.Equal(["a", "b", "c"], await host.Admin.ListQueuesAsync());
        Assert.Equal(JobState.Ready, (await host.Producer.EnqueueAsync("a", new JobRequest("probe", "{}"))).State);
    }

    [Fact]
    public async Task A_queue_empty_for_the_retention_is_dropped_and_its_next_job_lists_it_again()
    {
        using var redis = await TestRedis.StartDedicatedAsync();
        await using var host = await EngineHost.StartOnAsync(redis.Endpoint, new() { ["Conveyor:Custodian:EmptyQueueRetention"] = "00:10:00" });
        var done = await EmptiedQueueAsync(host, "done");
        await host.Producer.EnqueueAsync("busy", new JobRequest("probe", "{}"));

        Assert.Equal(0, (await host.Custodian.RunOnceAsync(CancellationToken.None)).DroppedQueues); // starts the empty clock
        Assert.True(await host.Db.KeyExistsAsync(new QueueKeys(done).History), "the emptied queue's jobs were counted");
        await BackdateIdleAsync(host, done, TimeSpan.FromMinutes(11));
        await BackdateIdleAsync(host, "busy", TimeSpan.FromMinutes(11)); // not empty: its clock does not count
        var result = await host.Custodian.RunOnceAsync(CancellationToken.None);

        Assert.Equal(1, result.DroppedQueues);
        Assert.Equal(["busy"], await host.Admin.ListQueuesAsync());
        Assert.Empty(await KeysAsync(host, $"conveyor:{{{done}}}:*"));

        var id = (await host.Producer.EnqueueAsync(done, new JobRequest("probe", "{}") { Delay = TimeSpan.FromMilliseconds(1) })).Id;
        Assert.Equal(["busy", done], await host.Admin.ListQueuesAsync());
        await Wait.UntilAsync(async () =>
        {
            await host.Scheduler.RunOnceAsync(CancellationToken.None);
            return (await host.Admin.GetJobAsync(done, id))!.State == JobState.Ready;
        }, "the scheduler visits the queue again");
    }

    [Fact]
    public async Task A_queue_with_a_consumer_or_a_dead_job_is_not_dropped()
    {
        using var redis = await TestRedis.StartDedicatedAsync();
        await using var host = await EngineHost.StartOnAsync(redis.Endpoint, new() { ["Conveyor:Custodian:EmptyQueueRetention"] = "00:10:00" });
        var served = await EmptiedQueueAsync(host, "served");
        var consumer = new FakeConsumer(host.Db, served);
        await consumer.RegisterAsync();
        var dead = await EmptiedQueueAsync(host, "dead");
        await host.Producer.EnqueueAsync(dead, new JobRequest("nobody-handles-this", "{}"));
        await using (var session = RunningSession.Start(host, dead))
        {
            await Wait.UntilAsync(async () => (await host.Admin.GetStatsAsync(dead)).Dead == 1, "the job is dead");
        }

        await host.Custodian.RunOnceAsync(CancellationToken.None);
        await BackdateIdleAsync(host, served, TimeSpan.FromMinutes(11));
        await BackdateIdleAsync(host, dead, TimeSpan.FromMinutes(11));

        Assert.Equal(0, (await host.Custodian.RunOnceAsync(CancellationToken.None)).DroppedQueues);
        Assert.Equal([dead, served], await host.Admin.ListQueuesAsync());
    }

    [Fact]
    public async Task A_drop_left_half_done_is_finished_by_the_next_pass_and_never_strands_a_job()
    {
        using var redis = await TestRedis.StartDedicatedAsync();
        await using var host = await EngineHost.StartOnAsync(redis.Endpoint, new() { ["Conveyor:Custodian:EmptyQueueRetention"] = "00:10:00" });
        // Two queues a crashed pass took out of the registry (a marker in their place) before it could drop them.
        var empty = await EmptiedQueueAsync(host, "empty");
        var refilled = await EmptiedQueueAsync(host, "refilled");
        await host.Custodian.RunOnceAsync(CancellationToken.None);
        foreach (var queue in new[] { empty, refilled })
        {
            await BackdateIdleAsync(host, queue, TimeSpan.FromMinutes(11));
            await host.Db.SetRemoveAsync(QueueKeys.Queues, queue);
            await host.Db.SetAddAsync(QueueKeys.Queues, QueueKeys.DropMarker(queue));
        }
        // Meanwhile a producer that had registered "refilled" before the crash enqueues into it: its mark is still there.
        var id = (await host.Producer.EnqueueAsync(refilled, new JobRequest("probe", "{}") { Delay = TimeSpan.FromMilliseconds(1) })).Id;
        Assert.Empty(await host.Admin.ListQueuesAsync());
        // The scheduler already visits a queue behind a marker.
        await Wait.UntilAsync(async () =>
        {
            await host.Scheduler.RunOnceAsync(CancellationToken.None);
            return (await host.Admin.GetJobAsync(refilled, id))!.State == JobState.Ready;
        }, "the scheduler promotes the job of a queue being dropped");

        var result = await host.Custodian.RunOnceAsync(CancellationToken.None);

        Assert.Equal(1, result.DroppedQueues);
        Assert.Equal([refilled], (await host.Db.SetMembersAsync(QueueKeys.Queues)).Select(m => m.ToString()));
    }

    /// <summary>A queue that had a job, now done: registered and empty.</summary>
    private static async Task<string> EmptiedQueueAsync(EngineHost host, string queue)
    {
        await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "{}"));
        await using var session = RunningSession.Start(host, queue);
        await Wait.UntilAsync(async () => (await host.Admin.GetStatsAsync(queue)) is { Ready: 0, Running: 0 }, $"{queue} is empty");
        await session.StopAsync();
        return queue;
    }

    /// <summary>Keys of the test's own Redis matching <paramref name="pattern"/>.</summary>
    private static async Task<List<RedisKey>> KeysAsync(EngineHost host, string pattern)
    {
        var multiplexer = host.Db.Multiplexer;
        return await multiplexer.GetServer(multiplexer.GetEndPoints()[0]).KeysAsync(pattern: pattern).ToListAsync();
    }

    /// <summary>Makes the custodian's empty clock of <paramref name="queue"/> read <paramref name="age"/> (it started it).</summary>
    private static async Task BackdateIdleAsync(EngineHost host, string queue, TimeSpan age)
    {
        var now = (await FailureTests.ServerNowAsync(host)).ToUnixTimeMilliseconds();
        await host.Db.StringSetAsync($"conveyor:{{{queue}}}:idle", now - (long)age.TotalMilliseconds);
    }
}
