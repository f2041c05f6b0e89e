using Conveyor.Queue;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.Queue;

public sealed class RoundTripTests
{
    [Fact]
    public async Task Enqueued_job_runs_once_and_leaves_redis_after_ack()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        var result = await host.Producer.EnqueueAsync(queue, new JobRequest("probe", """{"n":1.50,"s":"é"}"""));
        Assert.Equal(JobState.Ready, result.State);
        Assert.False(result.Duplicate);
        Assert.True(Guid.TryParse(result.Id, out var id) && id.Version == 7, "a generated id is a UUIDv7");

        await using (var session = RunningSession.Start(host, queue))
        {
            await Wait.UntilAsync(async () => await host.Admin.GetJobAsync(queue, result.Id) is null, "the job is acked");
            var stopped = await session.StopAsync();
            Assert.Equal(1, stopped.Acked);
            Assert.True(stopped.Deregistered);
        }

        var run = Assert.Single(host.Probe.Runs);
        Assert.Equal(result.Id, run.Id);
        Assert.Equal("""{"n":1.50,"s":"é"}""", run.Payload); // the payload's bytes survive untouched
        Assert.Equal(1, run.Attempt);
        var stats = await host.Admin.GetStatsAsync(queue);
        Assert.Equal(new QueueStats(queue, 0, 0, 0, 0, 0), stats);
        Assert.Contains(queue, await host.Admin.ListQueuesAsync());
    }

    [Fact]
    public async Task Enqueue_with_an_existing_id_adds_nothing_and_reports_the_existing_state()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        var first = await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "1") { Id = "order-42", Delay = TimeSpan.FromHours(1) });
        var second = await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "2") { Id = "order-42" });

        Assert.Equal(new EnqueueResult("order-42", JobState.Scheduled, false), first);
        Assert.Equal(new EnqueueResult("order-42", JobState.Scheduled, true), second);
        var job = await host.Admin.GetJobAsync(queue, "order-42");
        Assert.Equal("1", job!.Payload);
        Assert.Equal(0, await host.Db.ListLengthAsync($"conveyor:{{{queue}}}:ready"));
    }

    [Fact]
    public async Task A_batch_reports_each_job_in_order_and_duplicates_within_redis()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "0") { Id = "a" });
        var results = await host.Producer.EnqueueBatchAsync(queue,
        [
            new JobRequest("probe", "1") { Id = "a" },
            new JobRequest("probe", "2") { Id = "b" },
            new JobRequest("probe", "3") { Delay = TimeSpan.FromMinutes(5) },
        ]);
        Assert.Equal([true, false, false], results.Select(r => r.Duplicate));
        Assert.Equal([JobState.Ready, JobState.Ready, JobState.Scheduled], results.Select(r => r.State));
        Assert.Equal(2, await host.Db.ListLengthAsync($"conveyor:{{{queue}}}:ready"));
    }

    [Fact]
    public async Task The_job_record_keeps_the_producers_trace_and_processing_continues_it()
    {
        using var listener = new System.Diagnostics.ActivityListener
        {
            ShouldListenTo = source => source.Name == ConveyorTelemetry.Name,
            Sample = (ref System.Diagnostics.ActivityCreationOptions<System.Diagnostics.ActivityContext> _) =>
                System.Diagnostics.ActivitySamplingResult.AllDataAndRecorded,
        };
        var processed = new System.Collections.Concurrent.ConcurrentQueue<System.Diagnostics.Activity>();
        listener.ActivityStopped = activity =>
        {
            if (activity.Kind == System.Diagnostics.ActivityKind.Consumer)
            {
                processed.Enqueue(activity);
            }
        };
        System.Diagnostics.ActivitySource.AddActivityListener(listener);

        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        using var request = new System.Diagnostics.Activity("http request").Start();
        var result = await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "{}"));
        request.Stop();

        var stored = await host.Admin.GetJobAsync(queue, result.Id);
        Assert.NotNull(stored!.TraceParent);
        Assert.Contains(request.TraceId.ToString(), stored.TraceParent, StringComparison.Ordinal);

        await using var session = RunningSession.Start(host, queue);
        await Wait.UntilAsync(() => processed.Any(a => (string?)a.GetTagItem("conveyor.job.id") == result.Id), "the job is processed");
        var activity = processed.First(a => (string?)a.GetTagItem("conveyor.job.id") == result.Id);
        Assert.Equal(request.TraceId, activity.TraceId);
    }
}
