using Conveyor.Queue;
using Conveyor.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Tests.Queue;

/// <summary>The wake gate on real Redis: backlog against live consumers × concurrency, one post per slot, failures forgotten.</summary>
public sealed class WakeGateTests
{
    /// <summary>Concurrency 4, so a few jobs make a backlog; a slot far longer than any test.</summary>
    private static readonly Dictionary<string, string?> Settings = new()
    {
        ["Conveyor:Processor:Concurrency"] = "4",
        ["Conveyor:Wake:Interval"] = "00:10:00",
        ["Conveyor:Wake:MaxMessages"] = "4",
    };

    [Fact]
    public async Task A_backlog_without_consumers_posts_one_wake_up_per_concurrency_worth_of_jobs_up_to_the_most_per_post()
    {
        var wake = new RecordingWakeSender();
        await using var host = await EngineHost.StartAsync(Settings, wake: wake);
        var gate = host.Services.GetRequiredService<WakeGate>();
        var small = TestRedis.UniqueQueue("wake");
        var large = TestRedis.UniqueQueue("wake");
        await EnqueueAsync(host, small, 9);
        await EnqueueAsync(host, large, 100);

        Assert.Equal(3, await gate.WakeAsync(small, CancellationToken.None)); // ceil(9 / 4)
        Assert.Equal(4, await gate.WakeAsync(large, CancellationToken.None)); // ceil(100 / 4), at most 4
        Assert.Equal(3, wake.CountFor(small));
        Assert.Equal(4, wake.CountFor(large));
    }

    [Fact]
    public async Task A_second_call_within_the_interval_posts_nothing()
    {
        var wake = new RecordingWakeSender();
        await using var host = await EngineHost.StartAsync(Settings, wake: wake);
        var gate = host.Services.GetRequiredService<WakeGate>();
        var queue = TestRedis.UniqueQueue("wake");
        await EnqueueAsync(host, queue, 10);

        Assert.Equal(3, await gate.WakeAsync(queue, CancellationToken.None));
        await EnqueueAsync(host, queue, 10);
        Assert.Equal(0, await gate.WakeAsync(queue, CancellationToken.None));
        Assert.Equal(3, wake.CountFor(queue));
        Assert.True(await host.Db.KeyExistsAsync($"conveyor:{{{queue}}}:wake"));
    }

    [Fact]
    public async Task Live_consumers_that_absorb_the_backlog_get_no_wake_up_and_leave_the_slot_free()
    {
        var wake = new RecordingWakeSender();
        await using var host = await EngineHost.StartAsync(Settings, wake: wake);
        var gate = host.Services.GetRequiredService<WakeGate>();
        var queue = TestRedis.UniqueQueue("wake");
        var consumers = new[] { new FakeConsumer(host.Db, queue), new FakeConsumer(host.Db, queue) };
        foreach (var consumer in consumers)
        {
            await consumer.RegisterAsync();
        }
        await EnqueueAsync(host, queue, 8); // 2 consumers × 4

        Assert.Equal(0, await gate.WakeAsync(queue, CancellationToken.None));
        Assert.False(await host.Db.KeyExistsAsync($"conveyor:{{{queue}}}:wake"));

        // A consumer whose heartbeat is older than the consumer timeout no longer counts: 8 jobs > 1 × 4.
        await consumers[0].BackdateHeartbeatAsync(TimeSpan.FromMinutes(5));
        Assert.Equal(1, await gate.WakeAsync(queue, CancellationToken.None));
        Assert.Equal(1, wake.CountFor(queue));
    }

    [Fact]
    public async Task An_empty_queue_posts_nothing()
    {
        var wake = new RecordingWakeSender();
        await using var host = await EngineHost.StartAsync(Settings, wake: wake);
        var gate = host.Services.GetRequiredService<WakeGate>();

        Assert.Equal(0, await gate.WakeAsync(TestRedis.UniqueQueue("wake"), CancellationToken.None));
        Assert.Empty(wake.Messages);
    }

    [Fact]
    public async Task A_failed_post_is_logged_and_frees_the_slot_for_the_next_caller()
    {
        var wake = new RecordingWakeSender { Failing = true };
        await using var host = await EngineHost.StartAsync(Settings, wake: wake);
        var gate = host.Services.GetRequiredService<WakeGate>();
        var queue = TestRedis.UniqueQueue("wake");
        await EnqueueAsync(host, queue, 5);

        Assert.Equal(0, await gate.WakeAsync(queue, CancellationToken.None));
        Assert.Contains(host.Logs.Entries, e => e.Message.Contains("failed", StringComparison.Ordinal) && e.Message.Contains(queue, StringComparison.Ordinal));
        Assert.False(await host.Db.KeyExistsAsync($"conveyor:{{{queue}}}:wake"));

        wake.Failing = false;
        Assert.Equal(2, await gate.WakeAsync(queue, CancellationToken.None));
    }

    /// <summary>Ready ids straight into the list: the gate reads only its length (enqueue posts wake-ups of its own).</summary>
    private static Task<long> EnqueueAsync(EngineHost host, string queue, int count) =>
        host.Db.ListLeftPushAsync($"conveyor:{{{queue}}}:ready", [.. Enumerable.Range(0, count).Select(i => (StackExchange.Redis.RedisValue)$"job-{i}")]);
}
