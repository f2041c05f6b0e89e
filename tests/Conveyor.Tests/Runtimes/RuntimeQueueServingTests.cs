using Conveyor.Client;
using Conveyor.Tests.Infrastructure;
using Conveyor.Tests.Probe;

namespace Conveyor.Tests.Runtimes;

/// <summary>A runtime queue on the self-host, whose processor serves every queue (the default).</summary>
public sealed class RuntimeQueueServingOnSelfHost(EveryQueueSelfHostApp app) : RuntimeQueueServingTests(app), IClassFixture<EveryQueueSelfHostApp>;

#if !FUNCTIONS_STANDIN
/// <summary>A runtime queue on the real Functions worker, whose timer processor serves every queue (the default).</summary>
public sealed class RuntimeQueueServingOnFunctions(EveryQueueFunctionsApp app) : RuntimeQueueServingTests(app), IClassFixture<EveryQueueFunctionsApp>;
#endif

/// <summary>Processors on <c>Conveyor:Processor:Queues</c> = <c>*</c>, the default.</summary>
public sealed class EveryQueueSelfHostApp() : RuntimeSelfHostApp(RuntimeSettings.EveryQueue);

/// <summary>Processors on <c>Conveyor:Processor:Queues</c> = <c>*</c>, the default.</summary>
public sealed class EveryQueueFunctionsApp() : RuntimeFunctionsApp(RuntimeSettings.EveryQueue);

/// <summary>
/// The app's processor serves every queue, and its handlers know only <c>probe</c> jobs: a queue a remote runtime asks
/// for jobs is left to the runtimes from then on, so a job of a type the app cannot run is never claimed by it (and
/// killed for want of a handler). A control queue shows that the processor was looking meanwhile.
/// </summary>
public abstract class RuntimeQueueServingTests(IRuntimeApp app)
{
    [Fact]
    public async Task Once_a_runtime_asked_a_queue_for_jobs_the_app_leaves_that_queue_to_runtimes()
    {
        var client = app.Client;
        var queue = TestRedis.UniqueQueue("remote");
        var control = TestRedis.UniqueQueue("control");

        // Before any runtime asked: the app serves the queue like any other (a probe job runs in-app).
        var first = await client.EnqueueAsync(queue, NewJob.Of(ProbeJobHandler.Type, new { n = 1 }));
        await Wait.UntilAsync(async () => await client.GetJobAsync(queue, first.Id) is null, "the app runs the queue's first probe job");

        // A runtime asks for jobs (none ready): from now on the queue is the runtimes'. An in-app session on it ends.
        var runtime = await app.OnlineRuntimeAsync();
        Assert.Empty((await client.ClaimAsync(runtime, queue, 10, TimeSpan.Zero)).Jobs);
        await Wait.UntilAsync(async () => await app.Db.SortedSetLengthAsync($"conveyor:{{{queue}}}:consumers") == 0,
            "the in-app session on the queue ends");

        // A job only the runtime can run, then one in a control queue: once the control job has run, the processor has
        // listed the queues since the remote job was enqueued.
        var remote = await client.EnqueueAsync(queue, NewJob.Of("transcode", new { video = 7 }) with { MaxAttempts = 1 });
        var controlJob = await client.EnqueueAsync(control, NewJob.Of(ProbeJobHandler.Type, new { n = 2 }));
        await Wait.UntilAsync(async () => await client.GetJobAsync(control, controlJob.Id) is null, "the app runs the control queue's job");

        var waiting = await client.GetJobAsync(queue, remote.Id);
        Assert.NotNull(waiting);
        Assert.Equal((JobState.Ready, 0), (waiting.State, waiting.Attempts));
        Assert.Equal(0, await app.Db.SortedSetLengthAsync($"conveyor:{{{queue}}}:consumers"));

        var claimed = Assert.Single((await client.ClaimAsync(runtime, queue, 10, TimeSpan.Zero)).Jobs);
        Assert.Equal((remote.Id, "transcode", 1), (claimed.Id, claimed.Type, claimed.Attempt));
        Assert.Equal(ClaimOutcome.Acked, Assert.Single(await client.AckAsync(runtime, [claimed.Claim])).Outcome);
    }
}
