using Conveyor.Queue;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.Queue;

public sealed class SchedulingTests
{
    [Fact]
    public async Task Delayed_and_run_at_jobs_wait_until_due_then_the_scheduler_promotes_them()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        var delayed = await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "1") { Delay = TimeSpan.FromSeconds(2) });
        var later = await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "2") { Delay = TimeSpan.FromHours(1) });
        var past = await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "3") { RunAt = DateTimeOffset.UtcNow.AddDays(-1) });
        var runAt = await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "4") { RunAt = DateTimeOffset.UtcNow.AddHours(2) });

        Assert.Equal(JobState.Scheduled, delayed.State);
        Assert.Equal(JobState.Scheduled, later.State);
        Assert.Equal(JobState.Ready, past.State); // a runAt in the past is due now
        Assert.Equal(JobState.Scheduled, runAt.State);
        var stored = await host.Admin.GetJobAsync(queue, runAt.Id);
        Assert.InRange((stored!.DueAt - DateTimeOffset.UtcNow).TotalMinutes, 119, 121);

        // Not due yet: nothing moves.
        await host.Scheduler.RunOnceAsync(CancellationToken.None);
        Assert.Equal(JobState.Scheduled, (await host.Admin.GetJobAsync(queue, delayed.Id))!.State);

        await Wait.UntilAsync(async () =>
        {
            await host.Scheduler.RunOnceAsync(CancellationToken.None);
            return (await host.Admin.GetJobAsync(queue, delayed.Id))!.State == JobState.Ready;
        }, "the delayed job is promoted");
        Assert.Equal(JobState.Scheduled, (await host.Admin.GetJobAsync(queue, later.Id))!.State);
        Assert.Equal(JobState.Scheduled, (await host.Admin.GetJobAsync(queue, runAt.Id))!.State);
        var stats = await host.Admin.GetStatsAsync(queue);
        Assert.Equal(2, stats.Ready);
        Assert.Equal(2, stats.Scheduled);
    }

    [Fact]
    public async Task The_scheduler_promotes_in_batches_until_a_batch_comes_back_short()
    {
        await using var host = await EngineHost.StartAsync(new() { ["Conveyor:Scheduler:BatchSize"] = "10" });
        var queue = TestRedis.UniqueQueue();
        var jobs = Enumerable.Range(0, 25).Select(i => new JobRequest("probe", $"{i}") { Delay = TimeSpan.FromMilliseconds(1) }).ToList();
        await host.Producer.EnqueueBatchAsync(queue, jobs);
        await Task.Delay(20); // due times are 1 ms ahead on Redis time

        var result = await host.Scheduler.RunOnceAsync(CancellationToken.None);

        Assert.True(result.Promoted >= 25);
        Assert.Equal(25, await host.Db.ListLengthAsync($"conveyor:{{{queue}}}:ready"));
        Assert.Equal(0, await host.Db.SortedSetLengthAsync($"conveyor:{{{queue}}}:scheduled"));
    }
}
