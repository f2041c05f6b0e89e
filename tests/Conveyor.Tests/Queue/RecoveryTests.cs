using Conveyor.Queue;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.Queue;

public sealed class RecoveryTests
{
    [Fact]
    public async Task Jobs_of_a_crashed_consumer_are_recovered_exactly_once_with_the_attempt_counted()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        var ids = (await host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 10).Select(i => new JobRequest("probe", $"{i}"))]))
            .Select(r => r.Id).ToList();
        var crashed = new FakeConsumer(host.Db, queue);
        await crashed.RegisterAsync();
        Assert.Equal(10, (await crashed.ClaimAsync(10)).Count);
        await crashed.BackdateHeartbeatAsync(TimeSpan.FromMinutes(5)); // it died five minutes ago

        var first = await host.Custodian.RunOnceAsync(CancellationToken.None);
        await host.Custodian.RunOnceAsync(CancellationToken.None); // a second pass finds nothing more to do

        Assert.True(first.Requeued >= 10);
        Assert.Equal(0, await crashed.ClaimCountAsync());
        var ready = (await host.Db.ListRangeAsync($"conveyor:{{{queue}}}:ready")).Select(v => v.ToString()).ToList();
        Assert.Equal(ids.Order(), ready.Order()); // each exactly once
        foreach (var id in ids)
        {
            var job = (await host.Admin.GetJobAsync(queue, id))!;
            Assert.Equal(1, job.Attempts);
            Assert.Contains(crashed.Id, job.LastError, StringComparison.Ordinal);
        }
        Assert.Equal(0, (await host.Admin.GetStatsAsync(queue)).Consumers);
    }

    [Fact]
    public async Task The_custodian_leaves_a_live_consumer_alone()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "{}"));
        var alive = new FakeConsumer(host.Db, queue);
        await alive.RegisterAsync();
        var claims = await alive.ClaimAsync(1);

        await host.Custodian.RunOnceAsync(CancellationToken.None);

        Assert.Equal(1, await alive.ClaimCountAsync());
        Assert.Equal(new long[] { 1L }, await alive.AckAsync([.. claims]));
    }

    [Fact]
    public async Task A_late_ack_retry_or_kill_after_recovery_changes_nothing()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        var id = (await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "{}"))).Id;
        var slow = new FakeConsumer(host.Db, queue);
        await slow.RegisterAsync();
        var claims = (await slow.ClaimAsync(1)).ToArray();
        await slow.BackdateHeartbeatAsync(TimeSpan.FromMinutes(5));
        await host.Custodian.RunOnceAsync(CancellationToken.None);
        var before = await host.Admin.GetJobAsync(queue, id);

        // The consumer was only slow: it comes back and finishes its (lost) claim.
        await slow.RegisterAsync();
        Assert.Equal(new long[] { 0L }, await slow.AckAsync(claims));
        Assert.Equal(new long[] { 0L }, await slow.RetryAsync(claims));
        Assert.Equal(new long[] { 0L }, await slow.KillAsync(claims));

        var after = await host.Admin.GetJobAsync(queue, id);
        Assert.Equal(before, after);
        Assert.Equal(JobState.Ready, after!.State);

        // A new claim of the same job by the same consumer gets a new token: the old one stays useless.
        var reclaimed = (await slow.ClaimAsync(1)).ToArray();
        Assert.NotEqual(claims[0].Token, reclaimed[0].Token);
        Assert.Equal(new long[] { 0L }, await slow.AckAsync(claims));
        Assert.Equal(new long[] { 1L }, await slow.AckAsync(reclaimed));
    }

    [Fact]
    public async Task A_job_that_keeps_crashing_its_consumer_ends_dead()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        var id = (await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "{}") { MaxAttempts = 3 })).Id;

        for (var crash = 1; crash <= 3; crash++)
        {
            var victim = new FakeConsumer(host.Db, queue);
            await victim.RegisterAsync();
            Assert.Single(await victim.ClaimAsync(1));
            await victim.BackdateHeartbeatAsync(TimeSpan.FromMinutes(5));
            await host.Custodian.RunOnceAsync(CancellationToken.None);
        }

        var job = (await host.Admin.GetJobAsync(queue, id))!;
        Assert.Equal(JobState.Dead, job.State);
        Assert.Equal(3, job.Attempts);
        Assert.Equal(0, await host.Db.ListLengthAsync($"conveyor:{{{queue}}}:ready"));
    }

    [Fact]
    public async Task Recovery_is_bounded_per_call_and_finishes_over_several_calls()
    {
        await using var host = await EngineHost.StartAsync(new() { ["Conveyor:Custodian:BatchSize"] = "7" });
        var queue = TestRedis.UniqueQueue();
        await host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 30).Select(i => new JobRequest("probe", $"{i}"))]);
        var crashed = new FakeConsumer(host.Db, queue);
        await crashed.RegisterAsync();
        await crashed.ClaimAsync(30);
        await crashed.BackdateHeartbeatAsync(TimeSpan.FromMinutes(5));

        await host.Custodian.RunOnceAsync(CancellationToken.None);

        Assert.Equal(30, await host.Db.ListLengthAsync($"conveyor:{{{queue}}}:ready"));
        Assert.Equal(0, (await host.Admin.GetStatsAsync(queue)).Consumers);
    }
}
