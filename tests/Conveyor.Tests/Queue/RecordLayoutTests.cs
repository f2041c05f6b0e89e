using System.Buffers;
using System.Text;
using System.Text.Json;
using Conveyor.Queue;
using Conveyor.Tests.Infrastructure;
using StackExchange.Redis;

namespace Conveyor.Tests.Queue;

/// <summary>
/// The record layout: a record written once (header, newline, raw payload) and a small state apart, written at the
/// first claim, so no transition touches payload bytes; and jobs stored by the three earlier layouts (1: one JSON
/// record with the payload escaped inside; 2: header, state and payload in three hashes; 3: the current record with a
/// state written at enqueue) still run, retry, die and are reported.
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
    public async Task Retry_kill_and_recovery_leave_the_record_bytes_as_they_were()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        var keys = new QueueKeys(queue);
        var ids = (await host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 3).Select(_ => new JobRequest("probe", Awkward) { MaxAttempts = 5 })]))
            .Select(r => r.Id).ToArray();
        var records = await host.Db.HashGetAsync(keys.Jobs, [.. ids.Select(i => (RedisValue)i)]);
        // The payload stored raw after the header, not as a JSON string inside another JSON document.
        Assert.All(records, record =>
        {
            var text = (string)record!;
            var newline = text.IndexOf('\n', StringComparison.Ordinal);
            Assert.Equal("probe", JsonDocument.Parse(text[..newline]).RootElement.GetProperty("type").GetString());
            Assert.Equal(Awkward, text[(newline + 1)..]);
        });
        Assert.False(await host.Db.KeyExistsAsync(keys.Payloads));

        var consumer = new FakeConsumer(host.Db, queue);
        await consumer.RegisterAsync();
        var claims = await consumer.ClaimAsync(3);
        Assert.Equal(1, (await consumer.RetryAsync(claims[0]))[0]);
        Assert.Equal(1, (await consumer.KillAsync(claims[1]))[0]);
        await consumer.BackdateHeartbeatAsync(TimeSpan.FromMinutes(5));
        Assert.Equal(1, (await host.Custodian.RunOnceAsync(CancellationToken.None)).DeadConsumers);

        Assert.Equal(records, await host.Db.HashGetAsync(keys.Jobs, [.. ids.Select(i => (RedisValue)i)]));
        foreach (var id in ids)
        {
            Assert.Equal(Awkward, (await host.Admin.GetJobAsync(queue, id))!.Payload);
        }
        Assert.Equal("late", (await host.Admin.GetJobAsync(queue, ids[0]))!.LastError);
        Assert.Equal(JobState.Dead, (await host.Admin.GetJobAsync(queue, ids[1]))!.State);
        Assert.Contains(consumer.Id, (await host.Admin.GetJobAsync(queue, ids[2]))!.LastError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_job_is_one_entry_until_a_transition_writes_its_state_and_a_large_record_gets_its_state_at_claim()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        var keys = new QueueKeys(queue);
        var runAt = DateTimeOffset.UtcNow.AddHours(1);
        var now = (await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "1") { Id = "now", MaxAttempts = 4 })).Id;
        var later = (await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "2") { Id = "later", MaxAttempts = 2, RunAt = runAt })).Id;
        var large = (await host.Producer.EnqueueAsync(queue, new JobRequest("probe", $"\"{new string('x', 2000)}\"") { Id = "large", MaxAttempts = 3 })).Id;
        Assert.Equal(0, await host.Db.HashLengthAsync(keys.State));

        var ready = (await host.Admin.GetJobAsync(queue, now))!;
        Assert.Equal((JobState.Ready, 0, 4, ready.EnqueuedAt, (string?)null), (ready.State, ready.Attempts, ready.MaxAttempts, ready.DueAt, ready.LastError));
        var scheduled = (await host.Admin.GetJobAsync(queue, later))!;
        Assert.Equal((JobState.Scheduled, 0, 2), (scheduled.State, scheduled.Attempts, scheduled.MaxAttempts));
        Assert.Equal(runAt.ToUnixTimeMilliseconds(), scheduled.DueAt.ToUnixTimeMilliseconds());

        // Claimed: the small record stays one entry; the large one gets its state, so no transition will read it.
        var crashed = new FakeConsumer(host.Db, queue);
        await crashed.RegisterAsync();
        Assert.Equal([now, large], (await crashed.ClaimAsync(2)).Select(c => c.Id));
        Assert.False(await host.Db.HashExistsAsync(keys.State, now));
        var largeInfo = (await host.Admin.GetJobAsync(queue, large))!;
        Assert.Equal($"0|3|{largeInfo.EnqueuedAt.ToUnixTimeMilliseconds()}|", (string)(await host.Db.HashGetAsync(keys.State, large))!);

        // Recovered from a dead consumer: the small one's state read from its header, one attempt counted, written.
        await crashed.BackdateHeartbeatAsync(TimeSpan.FromMinutes(5));
        await host.Custodian.RunOnceAsync(CancellationToken.None);
        Assert.StartsWith("1|4|", (string)(await host.Db.HashGetAsync(keys.State, now))!, StringComparison.Ordinal);
        Assert.StartsWith("1|3|", (string)(await host.Db.HashGetAsync(keys.State, large))!, StringComparison.Ordinal);

        // Run to the end: acked, nothing of it is left.
        await using var session = RunningSession.Start(host, queue);
        await Wait.UntilAsync(async () => await host.Admin.GetJobAsync(queue, now) is null, "the job is acked");
        var run = host.Probe.Runs.Single(r => r.Id == now);
        Assert.Equal((2, 4), (run.Attempt, run.MaxAttempts));
        Assert.False(await host.Db.HashExistsAsync(keys.State, now));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task A_job_of_an_earlier_layout_runs_with_its_payload_and_is_then_stored_in_the_current_one(int layout)
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        var keys = new QueueKeys(queue);
        var id = await StoreEarlierLayoutJobAsync(host, queue, layout, Awkward, attempt: 2, maxAttempts: 5, lastError: "earlier failure");

        var before = (await host.Admin.GetJobAsync(queue, id))!;
        Assert.Equal((JobState.Ready, Awkward, 2, 5, "earlier failure"), (before.State, before.Payload, before.Attempts, before.MaxAttempts, before.LastError));

        // A claim rewrites it in the current layout, once: record and state, no payload entry.
        var consumer = new FakeConsumer(host.Db, queue);
        await consumer.RegisterAsync();
        var claim = Assert.Single(await consumer.ClaimAsync(1));
        Assert.EndsWith("\n" + Awkward, (string)(await host.Db.HashGetAsync(keys.Jobs, id))!, StringComparison.Ordinal);
        Assert.False(await host.Db.KeyExistsAsync(keys.Payloads));
        // Handed back unstarted (no attempt counted), it then runs from its rewritten record.
        Assert.Equal(1, (long)await LuaScripts.ReturnUnstarted.RunAsync(
            host.Db, [keys.Inflight(consumer.Id), keys.Ready], [keys.Signal.ToString(), claim.Id, claim.Token]));

        await using var session = RunningSession.Start(host, queue);
        await Wait.UntilAsync(() => host.Probe.RunsOf(id) == 1, "the job runs");
        var run = host.Probe.Runs.Single(r => r.Id == id);
        Assert.Equal((Awkward, 3, 5), (run.Payload, run.Attempt, run.MaxAttempts));
        await Wait.UntilAsync(async () => await host.Admin.GetJobAsync(queue, id) is null, "it is acked");
        Assert.False(await host.Db.HashExistsAsync(keys.State, id));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task A_job_of_an_earlier_layout_is_retried_killed_reported_and_requeued(int layout)
    {
        await using var host = await EngineHost.StartAsync();
        var fail = true;
        host.Probe.Behavior = (_, _) => Volatile.Read(ref fail) ? throw new InvalidOperationException("still failing") : Task.CompletedTask;
        var queue = TestRedis.UniqueQueue();
        var id = await StoreEarlierLayoutJobAsync(host, queue, layout, Awkward, attempt: 0, maxAttempts: 2, lastError: null);

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

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task Jobs_of_an_earlier_layout_held_by_a_dead_consumer_or_dead_are_recovered_requeued_and_deleted(int layout)
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        var keys = new QueueKeys(queue);
        var held = await StoreEarlierLayoutJobAsync(host, queue, layout, "{\"held\":true}", attempt: 0, maxAttempts: 3, lastError: null);
        // Claimed under the first layout by a consumer that then died: the id sits in its inflight set, nothing else changed.
        var crashed = new FakeConsumer(host.Db, queue);
        await crashed.RegisterAsync();
        await host.Db.ListRemoveAsync(keys.Ready, held);
        await host.Db.SortedSetAddAsync(keys.Inflight(crashed.Id), held, 1);
        await crashed.BackdateHeartbeatAsync(TimeSpan.FromMinutes(5));
        var dead = await StoreEarlierLayoutJobAsync(host, queue, layout, "[1,2]", attempt: 3, maxAttempts: 3, lastError: "died under the first layout");
        await host.Db.ListRemoveAsync(keys.Ready, dead);
        await host.Db.SortedSetAddAsync(keys.Dead, dead, (await FailureTests.ServerNowAsync(host)).ToUnixTimeMilliseconds() - 1000);

        Assert.Equal("died under the first layout", (await host.Admin.ListDeadAsync(queue, 0, 10)).Single().LastError);
        await host.Custodian.RunOnceAsync(CancellationToken.None);
        var recovered = (await host.Admin.GetJobAsync(queue, held))!;
        Assert.Equal((JobState.Ready, "{\"held\":true}", 1), (recovered.State, recovered.Payload, recovered.Attempts));

        Assert.True(await host.Admin.RequeueDeadAsync(queue, dead));
        var requeued = (await host.Admin.GetJobAsync(queue, dead))!;
        Assert.Equal((JobState.Ready, "[1,2]", 0, "died under the first layout"), (requeued.State, requeued.Payload, requeued.Attempts, requeued.LastError));

        // Deleting a dead job of an earlier layout deletes its payload too.
        var doomed = await StoreEarlierLayoutJobAsync(host, queue, layout, "\"doomed\"", attempt: 3, maxAttempts: 3, lastError: "dead");
        await host.Db.ListRemoveAsync(keys.Ready, doomed);
        await host.Db.SortedSetAddAsync(keys.Dead, doomed, 1);
        Assert.Equal("\"doomed\"", (await host.Admin.GetJobAsync(queue, doomed))!.Payload);
        Assert.True(await host.Admin.DeleteDeadAsync(queue, doomed));
        Assert.Null(await host.Admin.GetJobAsync(queue, doomed));
        Assert.False(await host.Db.HashExistsAsync(keys.Payloads, doomed));
    }

    [Fact]
    public async Task A_record_nothing_can_parse_dies_visibly_with_its_bytes_as_they_were()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        var keys = new QueueKeys(queue);
        const string Garbage = "{\"type\":\"probe\", this is not JSON";
        await host.Db.HashSetAsync(keys.Jobs, "garbage", Garbage);
        await host.Db.ListRightPushAsync(keys.Ready, "garbage");
        await host.Db.SetAddAsync(QueueKeys.Queues, queue);

        await using (var session = RunningSession.Start(host, queue))
        {
            await Wait.UntilAsync(async () => await host.Db.SortedSetScoreAsync(keys.Dead, "garbage") is not null, "the job dies");
        }
        Assert.Equal(Garbage, (string)(await host.Db.HashGetAsync(keys.Jobs, "garbage"))!);
        Assert.Contains("the job record is unreadable", (string)(await host.Db.HashGetAsync(keys.State, "garbage"))!, StringComparison.Ordinal);
        Assert.Empty(host.Probe.Runs);
    }

    [Fact]
    public async Task A_process_of_an_earlier_layout_refuses_a_current_record_instead_of_running_it_without_its_payload()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        var id = (await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "{\"a\":1}"))).Id;
        var record = (string)(await host.Db.HashGetAsync(new QueueKeys(queue).Jobs, id))!;
        // Both earlier processes parse the record as one JSON document: the payload after the header is trailing data.
        Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<FirstLayoutRecord>(record));
        Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<SecondLayoutHeader>(record));
    }

    /// <summary>The first layout's record type, as processes before the split parsed it (payload a string).</summary>
    private sealed class FirstLayoutRecord
    {
        [System.Text.Json.Serialization.JsonPropertyName("type")] public string Type { get; set; } = "";
        [System.Text.Json.Serialization.JsonPropertyName("payload")] public string Payload { get; set; } = "null";
    }

    /// <summary>The second layout's header, as processes of that layout parsed it (the payload elsewhere).</summary>
    private sealed class SecondLayoutHeader
    {
        [System.Text.Json.Serialization.JsonPropertyName("type")] public string Type { get; set; } = "";
        [System.Text.Json.Serialization.JsonPropertyName("enqueuedAt")] public long EnqueuedAt { get; set; }
    }

    /// <summary>
    /// Writes a ready job exactly as an earlier layout stored it: 1, one JSON record, the payload an escaped string;
    /// 2, a header JSON marking the payload as elsewhere, the state, and the raw payload in the payloads hash; 3, the
    /// current record and a state (written at enqueue until the state became lazy).
    /// </summary>
    private static async Task<string> StoreEarlierLayoutJobAsync(
        EngineHost host, string queue, int layout, string payload, int attempt, int maxAttempts, string? lastError)
    {
        var keys = new QueueKeys(queue);
        var id = Guid.CreateVersion7().ToString();
        if (layout == 3)
        {
            await host.Db.HashSetAsync(keys.Jobs, id, $"{{\"type\":\"probe\",\"maxAttempts\":{maxAttempts},\"enqueuedAt\":1700000000000}}\n{payload}");
            await host.Db.HashSetAsync(keys.State, id, $"{attempt}|{maxAttempts}|1700000000000|{lastError}");
            await host.Db.ListRightPushAsync(keys.Ready, id);
            await host.Db.SetAddAsync(QueueKeys.Queues, queue);
            return id;
        }
        if (layout == 2)
        {
            var header = $"{{\"type\":\"probe\",\"maxAttempts\":{maxAttempts},\"payload\":{{\"in\":\"payloads\"}},\"enqueuedAt\":1700000000000}}";
            await host.Db.HashSetAsync(keys.Jobs, id, header);
            await host.Db.HashSetAsync(keys.State, id, $"{attempt}|{maxAttempts}|1700000000000|{lastError}");
            await host.Db.HashSetAsync(keys.Payloads, id, payload);
            await host.Db.ListRightPushAsync(keys.Ready, id);
            await host.Db.SetAddAsync(QueueKeys.Queues, queue);
            return id;
        }
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
