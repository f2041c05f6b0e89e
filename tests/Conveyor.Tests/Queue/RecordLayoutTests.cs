using System.Buffers;
using System.Text;
using System.Text.Json;
using Conveyor.Queue;
using Conveyor.Tests.Infrastructure;
using StackExchange.Redis;

namespace Conveyor.Tests.Queue;

/// <summary>
/// The record layout: header, state and payload apart, so no transition touches payload bytes; and jobs stored by the
/// first layout (one JSON record with the payload escaped inside) still run, retry, die and are reported.
/// </summary>
public sealed class RecordLayoutTests
{
    /// <summary>A payload every byte of which a JSON re-encoding would change: quotes, '&lt;', non-ASCII, escapes.</summary>
    private static readonly string Awkward = JsonSerializer.Serialize(new
    {
        html = "<a href=\"x\">é ü 漢字 \\ </a>",
        nested = new[] { 1.5e300, -0.0 },
        text = new string('"', 1000),
    });

    [Fact]
    public async Task Retry_kill_and_recovery_leave_the_payload_and_header_bytes_as_they_were()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        var keys = new QueueKeys(queue);
        var ids = (await host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 3).Select(_ => new JobRequest("probe", Awkward) { MaxAttempts = 5 })]))
            .Select(r => r.Id).ToArray();
        var headers = await host.Db.HashGetAsync(keys.Jobs, [.. ids.Select(i => (RedisValue)i)]);
        // Stored raw, not as a JSON string inside another JSON document.
        Assert.All(await host.Db.HashGetAsync(keys.Payloads, [.. ids.Select(i => (RedisValue)i)]), payload => Assert.Equal(Awkward, (string?)payload));

        var consumer = new FakeConsumer(host.Db, queue);
        await consumer.RegisterAsync();
        var claims = await consumer.ClaimAsync(3);
        Assert.Equal(1, (await consumer.RetryAsync(claims[0]))[0]);
        Assert.Equal(1, (await consumer.KillAsync(claims[1]))[0]);
        await consumer.BackdateHeartbeatAsync(TimeSpan.FromMinutes(5));
        Assert.Equal(1, (await host.Custodian.RunOnceAsync(CancellationToken.None)).DeadConsumers);

        Assert.Equal(headers, await host.Db.HashGetAsync(keys.Jobs, [.. ids.Select(i => (RedisValue)i)]));
        foreach (var id in ids)
        {
            Assert.Equal(Awkward, (string?)await host.Db.HashGetAsync(keys.Payloads, id));
            Assert.Equal(Awkward, (await host.Admin.GetJobAsync(queue, id))!.Payload);
        }
        Assert.Equal("late", (await host.Admin.GetJobAsync(queue, ids[0]))!.LastError);
        Assert.Equal(JobState.Dead, (await host.Admin.GetJobAsync(queue, ids[1]))!.State);
        Assert.Contains(consumer.Id, (await host.Admin.GetJobAsync(queue, ids[2]))!.LastError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_job_of_the_first_layout_runs_with_its_payload_and_is_then_stored_in_the_new_one()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        var id = await StoreFirstLayoutJobAsync(host, queue, Awkward, attempt: 2, maxAttempts: 5, lastError: "earlier failure");

        var before = (await host.Admin.GetJobAsync(queue, id))!;
        Assert.Equal((JobState.Ready, Awkward, 2, 5, "earlier failure"), (before.State, before.Payload, before.Attempts, before.MaxAttempts, before.LastError));

        await using var session = RunningSession.Start(host, queue);
        await Wait.UntilAsync(() => host.Probe.RunsOf(id) == 1, "the job runs");
        var run = host.Probe.Runs.Single(r => r.Id == id);
        Assert.Equal((Awkward, 3, 5), (run.Payload, run.Attempt, run.MaxAttempts));
        await Wait.UntilAsync(async () => await host.Admin.GetJobAsync(queue, id) is null, "it is acked");
        Assert.False(await host.Db.HashExistsAsync($"conveyor:{{{queue}}}:payloads", id));
    }

    [Fact]
    public async Task A_job_of_the_first_layout_is_retried_killed_reported_and_requeued()
    {
        await using var host = await EngineHost.StartAsync();
        var fail = true;
        host.Probe.Behavior = (_, _) => Volatile.Read(ref fail) ? throw new InvalidOperationException("still failing") : Task.CompletedTask;
        var queue = TestRedis.UniqueQueue();
        var id = await StoreFirstLayoutJobAsync(host, queue, Awkward, attempt: 0, maxAttempts: 2, lastError: null);

        await using (var session = RunningSession.Start(host, queue))
        {
            await Wait.UntilAsync(async () =>
            {
                await host.Scheduler.RunOnceAsync(CancellationToken.None);
                return (await host.Admin.GetJobAsync(queue, id))?.State == JobState.Dead;
            }, "the job dies after two attempts");
        }
        var dead = Assert.Single(await host.Admin.ListDeadAsync(queue, 0, 10));
        Assert.Equal((id, Awkward, 2, "System.InvalidOperationException: still failing"), (dead.Id, dead.Payload, dead.Attempts, dead.LastError));
        Assert.NotNull(dead.DiedAt);

        Volatile.Write(ref fail, false);
        Assert.True(await host.Admin.RequeueDeadAsync(queue, id));
        await using (var session = RunningSession.Start(host, queue))
        {
            await Wait.UntilAsync(async () => await host.Admin.GetJobAsync(queue, id) is null, "the requeued job is acked");
        }
        Assert.Equal([Awkward, Awkward, Awkward], host.Probe.Runs.Select(r => r.Payload));
    }

    [Fact]
    public async Task Jobs_of_the_first_layout_held_by_a_dead_consumer_or_dead_are_recovered_and_requeued()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        var keys = new QueueKeys(queue);
        var held = await StoreFirstLayoutJobAsync(host, queue, "{\"held\":true}", attempt: 0, maxAttempts: 3, lastError: null);
        // Claimed under the first layout by a consumer that then died: the id sits in its inflight set, nothing else changed.
        var crashed = new FakeConsumer(host.Db, queue);
        await crashed.RegisterAsync();
        await host.Db.ListRemoveAsync(keys.Ready, held);
        await host.Db.SortedSetAddAsync(keys.Inflight(crashed.Id), held, 1);
        await crashed.BackdateHeartbeatAsync(TimeSpan.FromMinutes(5));
        var dead = await StoreFirstLayoutJobAsync(host, queue, "[1,2]", attempt: 3, maxAttempts: 3, lastError: "died under the first layout");
        await host.Db.ListRemoveAsync(keys.Ready, dead);
        await host.Db.SortedSetAddAsync(keys.Dead, dead, (await FailureTests.ServerNowAsync(host)).ToUnixTimeMilliseconds() - 1000);

        Assert.Equal("died under the first layout", (await host.Admin.ListDeadAsync(queue, 0, 10)).Single().LastError);
        await host.Custodian.RunOnceAsync(CancellationToken.None);
        var recovered = (await host.Admin.GetJobAsync(queue, held))!;
        Assert.Equal((JobState.Ready, "{\"held\":true}", 1), (recovered.State, recovered.Payload, recovered.Attempts));

        Assert.True(await host.Admin.RequeueDeadAsync(queue, dead));
        var requeued = (await host.Admin.GetJobAsync(queue, dead))!;
        Assert.Equal((JobState.Ready, "[1,2]", 0, "died under the first layout"), (requeued.State, requeued.Payload, requeued.Attempts, requeued.LastError));
    }

    [Fact]
    public void A_process_of_the_first_layout_refuses_a_new_header_instead_of_running_it_without_its_payload()
    {
        var header = JobRecord.OpenHeader("probe", 3, null) + ",\"enqueuedAt\":1}";
        Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<FirstLayoutRecord>(header));
    }

    /// <summary>The first layout's record type, as processes before the split parsed it (payload a string).</summary>
    private sealed class FirstLayoutRecord
    {
        [System.Text.Json.Serialization.JsonPropertyName("type")] public string Type { get; set; } = "";
        [System.Text.Json.Serialization.JsonPropertyName("payload")] public string Payload { get; set; } = "null";
    }

    /// <summary>Writes a ready job exactly as the first layout stored it: one JSON record, the payload an escaped string.</summary>
    private static async Task<string> StoreFirstLayoutJobAsync(EngineHost host, string queue, string payload, int attempt, int maxAttempts, string? lastError)
    {
        var keys = new QueueKeys(queue);
        var id = Guid.CreateVersion7().ToString();
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("type", "probe");
            writer.WriteString("payload", payload);
            writer.WriteNumber("attempt", attempt);
            writer.WriteNumber("maxAttempts", maxAttempts);
            writer.WriteNumber("enqueuedAt", 1_700_000_000_000);
            writer.WriteNumber("dueAt", 1_700_000_000_000);
            if (lastError is not null)
            {
                writer.WriteString("lastError", lastError);
            }
            writer.WriteEndObject();
        }
        await host.Db.HashSetAsync(keys.Jobs, id, Encoding.UTF8.GetString(buffer.WrittenSpan));
        await host.Db.ListRightPushAsync(keys.Ready, id);
        await host.Db.SetAddAsync(QueueKeys.Queues, queue);
        return id;
    }
}
