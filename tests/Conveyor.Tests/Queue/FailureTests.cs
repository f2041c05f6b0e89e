using Conveyor.Queue;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.Queue;

public sealed class FailureTests
{
    [Fact]
    public async Task A_failing_job_is_retried_within_its_backoff_bounds_with_the_attempt_rising()
    {
        // Base 10 s, so the first retry is due within [now, now + 10 s] and the second within [now, now + 20 s].
        await using var host = await EngineHost.StartAsync(new()
        {
            ["Conveyor:Queue:RetryBaseDelay"] = "00:00:10",
            ["Conveyor:Queue:MaxBackoff"] = "00:00:15",
        });
        host.Probe.Behavior = (_, _) => throw new InvalidOperationException("boom");
        var queue = TestRedis.UniqueQueue();
        var id = (await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "{}"))).Id;

        var caps = new[] { 10.0, 15.0, 15.0 }; // capped by MaxBackoff from the second retry on
        for (var attempt = 1; attempt <= 3; attempt++)
        {
            await using (var session = RunningSession.Start(host, queue))
            {
                var expected = attempt;
                await Wait.UntilAsync(async () => (await host.Admin.GetJobAsync(queue, id))!.Attempts == expected, $"attempt {attempt} failed");
                await session.StopAsync();
            }
            var job = (await host.Admin.GetJobAsync(queue, id))!;
            Assert.Equal(JobState.Scheduled, job.State);
            Assert.Equal("System.InvalidOperationException: boom", job.LastError);
            var server = await ServerNowAsync(host);
            Assert.InRange((job.DueAt - server).TotalSeconds, -1, caps[attempt - 1]);
            // Make it due now so the next session picks it up.
            await host.Db.SortedSetAddAsync($"conveyor:{{{queue}}}:scheduled", id, 0);
            await host.Scheduler.RunOnceAsync(CancellationToken.None);
        }
        Assert.Equal([1, 2, 3], host.Probe.Runs.Select(r => r.Attempt));
    }

    [Fact]
    public async Task After_max_attempts_the_job_is_dead_with_its_last_error()
    {
        await using var host = await EngineHost.StartAsync();
        var calls = 0;
        host.Probe.Behavior = (_, _) => throw new InvalidOperationException($"failure {Interlocked.Increment(ref calls)}");
        var queue = TestRedis.UniqueQueue();
        var id = (await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "{}") { MaxAttempts = 3 })).Id;

        await using var session = RunningSession.Start(host, queue);
        await Wait.UntilAsync(async () =>
        {
            await host.Scheduler.RunOnceAsync(CancellationToken.None);
            return (await host.Admin.GetJobAsync(queue, id))?.State == JobState.Dead;
        }, "the job is dead");
        var result = await session.StopAsync();

        var dead = (await host.Admin.GetJobAsync(queue, id))!;
        Assert.Equal(3, dead.Attempts);
        Assert.Equal("System.InvalidOperationException: failure 3", dead.LastError);
        Assert.NotNull(dead.DiedAt);
        Assert.Equal(3, host.Probe.RunsOf(id));
        Assert.Equal(2, result.Retried);
        Assert.Equal(1, result.Killed);
        Assert.Equal(id, Assert.Single(await host.Admin.ListDeadAsync(queue, 0, 10)).Id);
    }

    [Fact]
    public async Task A_job_without_a_handler_goes_straight_to_the_dead_set()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        var id = (await host.Producer.EnqueueAsync(queue, new JobRequest("nobody-handles-this", "{}"))).Id;

        await using var session = RunningSession.Start(host, queue);
        await Wait.UntilAsync(async () => (await host.Admin.GetJobAsync(queue, id))?.State == JobState.Dead, "the job is dead");

        var dead = (await host.Admin.GetJobAsync(queue, id))!;
        Assert.Equal("no handler is registered for job type 'nobody-handles-this'", dead.LastError);
        Assert.Equal(0, dead.Attempts);
    }

    [Fact]
    public async Task A_handler_that_outlives_the_job_timeout_has_its_token_cancelled_and_is_retried()
    {
        await using var host = await EngineHost.StartAsync(new() { ["Conveyor:Processor:JobTimeout"] = "00:00:00.2" });
        host.Probe.Behavior = (_, ct) => Task.Delay(Timeout.Infinite, ct);
        var queue = TestRedis.UniqueQueue();
        var id = (await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "{}") { MaxAttempts = 2 })).Id;

        await using var session = RunningSession.Start(host, queue);
        await Wait.UntilAsync(async () => (await host.Admin.GetJobAsync(queue, id))?.Attempts == 1, "the first attempt timed out");

        var job = (await host.Admin.GetJobAsync(queue, id))!;
        Assert.Equal("timed out after 00:00:00.2000000", job.LastError);
    }

    [Fact]
    public async Task A_dead_job_requeued_runs_again_with_fresh_attempts()
    {
        await using var host = await EngineHost.StartAsync();
        var fail = true;
        host.Probe.Behavior = (_, _) => Volatile.Read(ref fail) ? throw new InvalidOperationException("not yet") : Task.CompletedTask;
        var queue = TestRedis.UniqueQueue();
        var id = (await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "{}") { MaxAttempts = 1 })).Id;
        await using var session = RunningSession.Start(host, queue);
        await Wait.UntilAsync(async () => (await host.Admin.GetJobAsync(queue, id))?.State == JobState.Dead, "the job is dead");

        Volatile.Write(ref fail, false);
        Assert.True(await host.Admin.RequeueDeadAsync(queue, id));
        Assert.False(await host.Admin.RequeueDeadAsync(queue, id)); // no longer dead

        await Wait.UntilAsync(async () => await host.Admin.GetJobAsync(queue, id) is null, "the requeued job is acked");
        Assert.Equal([1, 1], host.Probe.Runs.Select(r => r.Attempt));
    }

    [Fact]
    public async Task Requeue_all_and_delete_act_only_on_dead_jobs()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        var ids = (await host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 5).Select(i => new JobRequest("none", "{}"))]))
            .Select(r => r.Id).ToList();
        await using (var session = RunningSession.Start(host, queue))
        {
            await Wait.UntilAsync(async () => (await host.Admin.GetStatsAsync(queue)).Dead == 5, "all five are dead");
        }

        Assert.True(await host.Admin.DeleteDeadAsync(queue, ids[0]));
        Assert.False(await host.Admin.DeleteDeadAsync(queue, ids[0]));
        Assert.Null(await host.Admin.GetJobAsync(queue, ids[0]));
        Assert.Equal(4, (await host.Admin.ListDeadAsync(queue, 0, 100)).Count);
        Assert.Equal(2, (await host.Admin.ListDeadAsync(queue, 2, 100)).Count);

        Assert.Equal(4, await host.Admin.RequeueAllDeadAsync(queue));
        var stats = await host.Admin.GetStatsAsync(queue);
        Assert.Equal(0, stats.Dead);
        Assert.Equal(4, stats.Ready);
        foreach (var id in ids.Skip(1))
        {
            Assert.Equal(JobState.Ready, (await host.Admin.GetJobAsync(queue, id))!.State);
        }
    }

    [Fact]
    public async Task The_custodian_trims_the_dead_set_to_its_count_limit_oldest_first()
    {
        await using var host = await EngineHost.StartAsync(new() { ["Conveyor:Custodian:DeadMaxCount"] = "3" });
        var queue = TestRedis.UniqueQueue();
        var ids = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            ids.Add((await host.Producer.EnqueueAsync(queue, new JobRequest("none", "{}"))).Id);
        }
        await using (var session = RunningSession.Start(host, queue))
        {
            await Wait.UntilAsync(async () => (await host.Admin.GetStatsAsync(queue)).Dead == 5, "all five are dead");
        }
        // Distinct, recent death times (well inside DeadMaxAge), so only the count rule bites.
        for (var i = 0; i < 5; i++)
        {
            await host.Db.SortedSetAddAsync($"conveyor:{{{queue}}}:dead", ids[i], (await ServerNowAsync(host)).ToUnixTimeMilliseconds() - 10_000 + i);
        }

        var result = await host.Custodian.RunOnceAsync(CancellationToken.None);

        Assert.True(result.Trimmed >= 2);
        var left = (await host.Admin.ListDeadAsync(queue, 0, 10)).Select(j => j.Id).ToHashSet();
        Assert.Equal(ids.Skip(2).ToHashSet(), left);
        Assert.False(await host.Db.HashExistsAsync($"conveyor:{{{queue}}}:jobs", ids[0]));
    }

    [Fact]
    public async Task The_custodian_drops_dead_jobs_older_than_the_age_limit()
    {
        await using var host = await EngineHost.StartAsync(new() { ["Conveyor:Custodian:DeadMaxAge"] = "00:10:00" });
        var queue = TestRedis.UniqueQueue();
        var old = (await host.Producer.EnqueueAsync(queue, new JobRequest("none", "{}"))).Id;
        var fresh = (await host.Producer.EnqueueAsync(queue, new JobRequest("none", "{}"))).Id;
        await using (var session = RunningSession.Start(host, queue))
        {
            await Wait.UntilAsync(async () => (await host.Admin.GetStatsAsync(queue)).Dead == 2, "both are dead");
        }
        var now = (await ServerNowAsync(host)).ToUnixTimeMilliseconds();
        await host.Db.SortedSetAddAsync($"conveyor:{{{queue}}}:dead", old, now - (long)TimeSpan.FromMinutes(11).TotalMilliseconds);

        await host.Custodian.RunOnceAsync(CancellationToken.None);

        Assert.Null(await host.Admin.GetJobAsync(queue, old));
        Assert.Equal(JobState.Dead, (await host.Admin.GetJobAsync(queue, fresh))!.State);
    }

    internal static async Task<DateTimeOffset> ServerNowAsync(EngineHost host)
    {
        var reply = (StackExchange.Redis.RedisResult[])(await host.Db.ExecuteAsync("TIME"))!;
        return DateTimeOffset.FromUnixTimeMilliseconds((long)reply[0] * 1000 + (long)reply[1] / 1000);
    }
}
