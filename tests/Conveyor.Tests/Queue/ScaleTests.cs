using System.Diagnostics;
using Conveyor.Hosting;
using Conveyor.Queue;
using Conveyor.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Conveyor.Tests.Queue;

/// <summary>
/// Scaling on real Redis: bounded sessions end when idle, an idle app starts none, enqueues, promotions and recoveries
/// post rate-limited wake-ups, and <c>*</c> serves every known queue.
/// </summary>
public sealed class ScaleTests
{
    private static readonly TimeSpan SessionEnds = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task A_woken_session_drains_its_queue_then_ends_idle_long_before_its_duration()
    {
        await using var host = await EngineHost.StartAsync(new()
        {
            ["Conveyor:Processor:SessionDuration"] = "00:10:00",
            ["Conveyor:Processor:IdleTimeout"] = "00:00:00.5",
        });
        var queue = TestRedis.UniqueQueue("idle");
        await host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 5).Select(i => new JobRequest("probe", $"{i}"))]);

        var result = await host.Processor.RunWokenSessionAsync(queue, CancellationToken.None)
            .WaitAsync(SessionEnds); // a ten-minute session that must end once idle

        Assert.Equal(SessionEnd.Idle, result.End);
        Assert.Equal(5, result.Acked);
        Assert.True(result.Deregistered);
        Assert.Equal(0, await host.Db.SortedSetLengthAsync($"conveyor:{{{queue}}}:consumers"));
    }

    [Fact]
    public async Task A_wake_up_for_a_queue_with_nothing_ready_runs_no_session_instead_of_idling()
    {
        // An idle timeout far beyond the wait below: a session that registered and waited for work would not end in time.
        await using var host = await EngineHost.StartAsync(new()
        {
            ["Conveyor:Processor:SessionDuration"] = "00:10:00",
            ["Conveyor:Processor:IdleTimeout"] = "00:05:00",
        });
        var queue = TestRedis.UniqueQueue("stale");
        var done = (await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "1"))).Id;
        await using (RunningSession.Start(host, queue))
        {
            await Wait.UntilAsync(() => host.Probe.RunsOf(done) == 1, "the backlog the wake-up was posted for ran elsewhere");
        }
        var later = (await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "2") { Delay = TimeSpan.FromMinutes(5) })).Id;

        var result = await host.Processor.RunWokenSessionAsync(queue, CancellationToken.None)
            .WaitAsync(SessionEnds); // nothing ready (one job scheduled for later): ends at once, not after five idle minutes

        Assert.Equal((SessionEnd.Idle, "", 0L, false), (result.End, result.ConsumerId, result.Claimed, result.Deregistered));
        Assert.Equal(0, await host.Db.SortedSetLengthAsync($"conveyor:{{{queue}}}:consumers"));
        Assert.Equal(0, host.Probe.RunsOf(later));
    }

    [Fact]
    public async Task A_session_with_a_job_in_hand_is_not_idle_however_long_the_job_runs()
    {
        await using var host = await EngineHost.StartAsync(new()
        {
            ["Conveyor:Processor:SessionDuration"] = "00:10:00",
            ["Conveyor:Processor:IdleTimeout"] = "00:00:00.2",
        });
        var queue = TestRedis.UniqueQueue("idle");
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        host.Probe.Behavior = (_, _) => release.Task;
        await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "1"));

        var session = host.Processor.RunWokenSessionAsync(queue, CancellationToken.None);
        await Wait.UntilAsync(() => host.Probe.Running == 1, "the job runs");
        // Ten idle timeouts with the job in hand: the session must still be there to ack it.
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(2))
        {
            Assert.False(session.IsCompleted, "the session ended while its job was running");
            await Task.Delay(50);
        }
        release.SetResult();

        var result = await session.WaitAsync(SessionEnds);
        Assert.Equal(SessionEnd.Idle, result.End);
        Assert.Equal(1, result.Acked);
    }

    [Fact]
    public async Task An_idle_app_serving_every_queue_starts_no_bounded_session_and_a_backlog_gets_one()
    {
        using var redis = await TestRedis.StartDedicatedAsync();
        await using var host = await EngineHost.StartOnAsync(redis.Endpoint, new()
        {
            ["Conveyor:Processor:SessionDuration"] = "00:10:00",
            ["Conveyor:Processor:IdleTimeout"] = "00:00:00.3",
        }, timeoutMs: 5000);
        var idle = TestRedis.UniqueQueue("idle");
        var busy = TestRedis.UniqueQueue("busy");
        var id = (await host.Producer.EnqueueAsync(idle, new JobRequest("probe", "1"))).Id;
        await using (RunningSession.Start(host, idle))
        {
            await Wait.UntilAsync(() => host.Probe.RunsOf(id) == 1, "the job ran");
        }

        Assert.Empty(await host.Processor.RunBoundedAsync(CancellationToken.None)); // both queues known, neither has work

        await host.Producer.EnqueueAsync(busy, new JobRequest("probe", "2"));
        var results = await host.Processor.RunBoundedAsync(CancellationToken.None).WaitAsync(SessionEnds);
        var result = Assert.Single(results);
        Assert.Equal((busy, SessionEnd.Idle, 1L), (result.Queue, result.End, result.Acked));
    }

    [Fact]
    public async Task One_hundred_thousand_enqueues_post_a_handful_of_wake_ups()
    {
        var wake = new RecordingWakeSender();
        await using var host = await EngineHost.StartAsync(new()
        {
            ["Conveyor:Wake:Interval"] = "00:00:05",
            ["Conveyor:Wake:MaxMessages"] = "4",
        }, wake: wake);
        var queue = TestRedis.UniqueQueue("burst");
        var clock = Stopwatch.StartNew();
        for (var batch = 0; batch < 100; batch++)
        {
            await host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 1000).Select(i => new JobRequest("probe", $"{i}"))]);
        }
        var slots = (int)(clock.Elapsed / TimeSpan.FromSeconds(5)) + 1;

        var posted = wake.CountFor(queue);
        Assert.InRange(posted, 4, 4 * slots); // the first enqueue wakes 4 sessions at once; then at most 4 per 5 s slot
        Assert.Equal(100_000, await host.Db.ListLengthAsync($"conveyor:{{{queue}}}:ready"));
    }

    [Fact]
    public async Task Enqueues_that_live_consumers_absorb_post_no_wake_up()
    {
        var wake = new RecordingWakeSender();
        await using var host = await EngineHost.StartAsync(new() { ["Conveyor:Processor:Concurrency"] = "4" }, wake: wake);
        var queue = TestRedis.UniqueQueue("served");
        var consumer = new FakeConsumer(host.Db, queue);
        await consumer.RegisterAsync();

        await host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 4).Select(i => new JobRequest("probe", $"{i}"))]);
        await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "\"later\"") { Delay = TimeSpan.FromMinutes(5) });

        Assert.Equal(0, wake.CountFor(queue));
    }

    [Fact]
    public async Task Scheduler_promotions_and_custodian_recoveries_post_wake_ups()
    {
        var wake = new RecordingWakeSender();
        // A Redis of its own: on the shared one, another test's processor serving every queue can claim the promoted job
        // (woken by the promotion's publish) before the scheduler looks at the backlog, leaving nothing to wake for.
        using var redis = await TestRedis.StartDedicatedAsync();
        await using var host = await EngineHost.StartOnAsync(redis.Endpoint, new() { ["Conveyor:Wake:Interval"] = "00:00:00.1" }, timeoutMs: 5000, wake: wake);
        var promoted = TestRedis.UniqueQueue("promoted");
        var recovered = TestRedis.UniqueQueue("recovered");
        await host.Producer.EnqueueAsync(promoted, new JobRequest("probe", "1") { Delay = TimeSpan.FromMilliseconds(1) });
        Assert.Equal(0, wake.CountFor(promoted)); // a scheduled job is no backlog yet
        await Task.Delay(20);
        await host.Scheduler.RunOnceAsync(CancellationToken.None);
        Assert.Equal(1, wake.CountFor(promoted));

        var crashed = new FakeConsumer(host.Db, recovered);
        await crashed.RegisterAsync();
        await host.Producer.EnqueueAsync(recovered, new JobRequest("probe", "1"));
        var before = wake.CountFor(recovered);
        await crashed.ClaimAsync(1);
        await crashed.BackdateHeartbeatAsync(TimeSpan.FromMinutes(5));
        await Task.Delay(150); // past the enqueue's wake slot
        await host.Custodian.RunOnceAsync(CancellationToken.None);
        Assert.Equal(before + 1, wake.CountFor(recovered));
    }

    [Fact]
    public async Task A_queue_with_ready_jobs_and_no_consumer_past_the_threshold_is_reported_unserved_until_a_consumer_comes()
    {
        await using var host = await EngineHost.StartAsync(new() { ["Conveyor:Queue:UnservedAfter"] = "00:00:01" });
        var queue = TestRedis.UniqueQueue("unserved");
        await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "1"));

        await host.Scheduler.RunOnceAsync(CancellationToken.None); // marks it
        Assert.Null((await host.Admin.GetStatsAsync(queue)).UnservedSince);
        await Wait.UntilAsync(async () =>
        {
            await host.Scheduler.RunOnceAsync(CancellationToken.None);
            return (await host.Admin.GetStatsAsync(queue)).UnservedSince is not null;
        }, "the queue is reported unserved after 1 s");
        await host.Scheduler.RunOnceAsync(CancellationToken.None);
        Assert.Single(host.Logs.AtLeast(Microsoft.Extensions.Logging.LogLevel.Warning), e => e.Message.Contains(queue, StringComparison.Ordinal)
            && e.Message.Contains("no live consumer", StringComparison.Ordinal));
        await host.Scheduler.RunOnceAsync(CancellationToken.None);
        Assert.Single(host.Logs.AtLeast(Microsoft.Extensions.Logging.LogLevel.Warning), e => e.Message.Contains(queue, StringComparison.Ordinal)); // once, not per pass

        var consumer = new FakeConsumer(host.Db, queue);
        await consumer.RegisterAsync();
        await host.Scheduler.RunOnceAsync(CancellationToken.None);
        Assert.Null((await host.Admin.GetStatsAsync(queue)).UnservedSince);
        Assert.False(await host.Db.KeyExistsAsync($"conveyor:{{{queue}}}:unserved"));
    }

    [Theory]
    [InlineData("00:00:00.05", "Conveyor:Processor:IdlePollInterval")] // below the poll interval
    [InlineData("00:05:00", "Conveyor:Processor:SessionDuration")] // above the session
    public void An_idle_timeout_out_of_step_with_the_other_processor_options_is_refused_at_start_up(string idle, string named)
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddConveyor(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Conveyor:Processor:IdleTimeout"] = idle,
            ["Conveyor:Processor:IdlePollInterval"] = "00:00:00.1",
            ["Conveyor:Processor:SessionDuration"] = "00:01:00",
        }).Build());
        using var provider = services.BuildServiceProvider();

        var error = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IOptions<ProcessorOptions>>().Value);
        Assert.Contains(named, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_processor_serving_every_queue_leaves_runtime_queues_alone_and_posts_them_no_wake_up()
    {
        var wake = new RecordingWakeSender();
        var listed = TestRedis.UniqueQueue("listed");
        var asked = TestRedis.UniqueQueue("asked");
        var own = TestRedis.UniqueQueue("own");
        await using var host = await EngineHost.StartAsync(new() { ["Conveyor:Runtimes:Queues:0"] = listed }, wake: wake);
        // What a runtime's claim leaves behind (claim.lua); the runtime end-to-end tests make it with a real claim.
        await host.Db.StringSetAsync($"conveyor:{{{asked}}}:remote", 1);

        foreach (var queue in new[] { listed, asked, own })
        {
            await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "1"));
        }

        var served = await host.Processor.QueuesToServeAsync(readyOnly: true, CancellationToken.None);
        Assert.Contains(own, served);
        Assert.DoesNotContain(listed, served);
        Assert.DoesNotContain(asked, served);
        Assert.Equal(SessionEnd.NotServed, (await host.Processor.RunWokenSessionAsync(listed, CancellationToken.None)).End);
        Assert.Equal(SessionEnd.NotServed, (await host.Processor.RunWokenSessionAsync(asked, CancellationToken.None)).End);
        Assert.Equal((0, 0, 1), (wake.CountFor(listed), wake.CountFor(asked), wake.CountFor(own)));
        Assert.Equal((1, 1), (await host.Db.ListLengthAsync($"conveyor:{{{listed}}}:ready"), await host.Db.ListLengthAsync($"conveyor:{{{asked}}}:ready")));
    }

    [Fact]
    public async Task A_processor_that_names_a_queue_serves_it_though_a_runtime_asked_it_for_jobs()
    {
        var queue = TestRedis.UniqueQueue("shared");
        await using var host = await EngineHost.StartAsync(new()
        {
            ["Conveyor:Processor:Queues:0"] = queue,
            ["Conveyor:Processor:IdleTimeout"] = "00:00:00.5",
        });
        await host.Db.StringSetAsync($"conveyor:{{{queue}}}:remote", 1);
        await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "1"));

        Assert.Equal([queue], await host.Processor.QueuesToServeAsync(readyOnly: true, CancellationToken.None));
        var result = await host.Processor.RunWokenSessionAsync(queue, CancellationToken.None).WaitAsync(SessionEnds);
        Assert.Equal(1, result.Acked);
    }

    [Theory]
    [InlineData("bad queue!", "Conveyor:Runtimes:Queues:0")] // not a queue name
    [InlineData("mine", "which Conveyor:Processor:Queues names")] // also served in-app
    public void A_runtime_queue_list_that_cannot_hold_is_refused_at_start_up(string queue, string expected)
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddConveyor(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Conveyor:Processor:Queues:0"] = "mine",
            ["Conveyor:Runtimes:Queues:0"] = queue,
        }).Build());
        using var provider = services.BuildServiceProvider();

        var error = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IOptions<RuntimeOptions>>().Value);
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }
}
