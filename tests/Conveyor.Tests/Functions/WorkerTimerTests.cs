#if !FUNCTIONS_STANDIN
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Conveyor.Presence;
using Conveyor.Storage;
using Conveyor.Tests.FunctionsHost;
using Conveyor.Tests.FunctionsHost.Rpc;
using Conveyor.Tests.Infrastructure;
using StackExchange.Redis;

namespace Conveyor.Tests.Functions;

/// <summary>
/// The timer tests need to know that the invocation they make did the work, so nothing may run a scheduler, custodian,
/// flush or sweep beside them (every one of those visits every queue, or the shared presence keys): xunit runs this
/// collection alone, after the parallel ones.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class WorkerTimersCollection : ICollectionFixture<TimerWorkerApp>
{
    public const string Name = "Functions worker timers";
}

/// <summary>
/// The real worker with no timer on a schedule: each runs only when a test invokes it. Processor sessions last 3 s. Its
/// processor serves <see cref="ConveyorApp.Queue"/> and <see cref="WokenQueue"/>.
/// </summary>
public sealed class TimerWorkerApp : FunctionsWorkerApp
{
    public TimerWorkerApp()
    {
        RunTimersOnSchedule = false;
        Settings = new Dictionary<string, string?>
        {
            ["Conveyor:Processor:SessionDuration"] = "00:00:03",
            // Every beat reaches the flush (the write window is the presence tests' subject, not the timer's).
            ["Conveyor:Presence:WriteWindow"] = "00:00:00",
            ["Conveyor:Processor:Queues:1"] = WokenQueue,
        };
    }

    /// <summary>A queue the processor serves that only the wake-up test enqueues to, so its wake slot is free.</summary>
    public string WokenQueue { get; } = TestRedis.UniqueQueue("woken");

    protected override bool PresenceTimers => true;
}

/// <summary>Every timer function, invoked through the real worker the way the host invokes it, doing its one job.</summary>
[Collection(WorkerTimersCollection.Name)]
public sealed class WorkerTimerTests(TimerWorkerApp app)
{
    [Fact]
    public async Task Scheduler_promotes_a_due_job()
    {
        var queue = TestRedis.UniqueQueue("timer");
        var id = await EnqueueAsync(queue, """{"type":"probe","payload":1,"delaySeconds":1}""");
        var dueAt = (await JobAsync(queue, id)).GetProperty("dueAt").GetDateTimeOffset();
        var db = (await TestRedis.GetAsync()).GetDatabase();
        await Wait.UntilAsync(async () => RedisTime.ToUtc(await RedisTime.NowMsAsync(db)) >= dueAt.UtcDateTime, "the job is due on Redis time");
        Assert.Equal("scheduled", (await JobAsync(queue, id)).GetProperty("state").GetString());

        AssertSucceeded(await app.Host.InvokeTimerAsync("Scheduler"));

        Assert.Equal("ready", (await JobAsync(queue, id)).GetProperty("state").GetString());
    }

    [Fact]
    public async Task Custodian_recovers_the_claim_of_a_dead_consumer_counting_an_attempt()
    {
        var queue = TestRedis.UniqueQueue("timer");
        var id = await EnqueueAsync(queue, """{"type":"probe","payload":1}""");
        var crashed = new FakeConsumer((await TestRedis.GetAsync()).GetDatabase(), queue);
        await crashed.RegisterAsync();
        Assert.Single(await crashed.ClaimAsync(1));
        await crashed.BackdateHeartbeatAsync(TimeSpan.FromHours(1)); // it died an hour ago
        Assert.Equal("running", (await JobAsync(queue, id)).GetProperty("state").GetString());

        AssertSucceeded(await app.Host.InvokeTimerAsync("Custodian"));

        var job = await JobAsync(queue, id);
        Assert.Equal("ready", job.GetProperty("state").GetString());
        Assert.Equal(1, job.GetProperty("attempts").GetInt32());
        Assert.Equal(0, await crashed.ClaimCountAsync());
    }

    [Fact]
    public async Task HeartbeatFlush_writes_a_buffered_beat_to_PostgreSQL()
    {
        var (id, token) = await RegisterAsync("flushed");
        Assert.Equal(HttpStatusCode.OK, (await BeatAsync(id, token)).StatusCode); // online, synchronously
        await app.Database.ExecuteAsync("UPDATE runtimes SET last_seen_at = now() - interval '1 minute' WHERE id = $1", Guid.Parse(id));
        var before = await LastSeenAsync(id);
        Assert.Equal(HttpStatusCode.Accepted, (await BeatAsync(id, token)).StatusCode); // buffered in Redis

        AssertSucceeded(await app.Host.InvokeTimerAsync("HeartbeatFlush"));

        Assert.True(await LastSeenAsync(id) > before, "the flush moved last_seen_at forward");
        Assert.Null((await PresenceKeys.BufferedBeatsAsync((await TestRedis.GetAsync()).GetDatabase(), [id]))[0]);
    }

    [Fact]
    public async Task StaleSweeper_marks_a_silent_runtime_offline()
    {
        var (id, token) = await RegisterAsync("silent");
        Assert.Equal(HttpStatusCode.OK, (await BeatAsync(id, token)).StatusCode);
        await app.Database.ExecuteAsync("UPDATE runtimes SET last_seen_at = now() - interval '1 hour' WHERE id = $1", Guid.Parse(id));
        // No flush runs on a schedule here: stamp the beat intake as a service long up leaves it, or the sweeper holds
        // every silent runtime back (disruption mode).
        await PresenceHost.StampIntakeUnbrokenAsync((await TestRedis.GetAsync()).GetDatabase());

        AssertSucceeded(await app.Host.InvokeTimerAsync("StaleSweeper"));

        Assert.Equal("offline", (await app.Client.GetFromJsonAsync<JsonElement>($"/api/runtimes/{id}")).GetProperty("status").GetString());
    }

    [Fact]
    public async Task Processor_runs_one_bounded_session_that_executes_a_job_and_deregisters()
    {
        var id = await EnqueueAsync(app.Queue, """{"type":"probe","payload":{"n":1}}""");

        AssertSucceeded(await app.Host.InvokeTimerAsync("Processor")); // returns when its session has ended (idle after 1 s, at most 3 s)

        Assert.Single(await app.ProbeRunsAsync(id));
        Assert.Equal(HttpStatusCode.NotFound, (await app.Client.GetAsync($"/api/queues/{app.Queue}/jobs/{id}")).StatusCode);
        Assert.Equal(0, await (await TestRedis.GetAsync()).GetDatabase().SortedSetLengthAsync($"conveyor:{{{app.Queue}}}:consumers"));
    }

    [Fact]
    public async Task An_enqueue_posts_a_wake_up_to_the_wake_queue_and_its_message_runs_one_session_on_that_queue()
    {
        var queue = app.WokenQueue; // no timer runs: only the wake-up can start a session on it
        var id = await EnqueueAsync(queue, """{"type":"probe","payload":{"n":2}}""");
        // The enqueue posted to the app's wake queue in Azurite; the host's extension reads it raw and decodes it per host.json.
        var raw = await TestAzurite.RawClientAsync(app.WakeQueue);
        var message = Assert.Single((await raw.ReceiveMessagesAsync(maxMessages: 32)).Value, m =>
            StorageWakeSenderTests.Decode(m.Body.ToString(), StorageWakeSenderTests.HostJsonQueueEncoding()) == queue);

        AssertSucceeded(await app.Host.InvokeQueueAsync(
            "Wake", StorageWakeSenderTests.Decode(message.Body.ToString(), StorageWakeSenderTests.HostJsonQueueEncoding()), message.DequeueCount));

        Assert.Single(await app.ProbeRunsAsync(id, queue));
        Assert.Equal(HttpStatusCode.NotFound, (await app.Client.GetAsync($"/api/queues/{queue}/jobs/{id}")).StatusCode);
        Assert.Equal(0, await (await TestRedis.GetAsync()).GetDatabase().SortedSetLengthAsync($"conveyor:{{{queue}}}:consumers"));
    }

    [Fact]
    public async Task A_wake_up_message_that_names_no_valid_queue_fails_its_invocation_and_changes_nothing()
    {
        var response = await app.Host.InvokeQueueAsync("Wake", "not a queue!");

        Assert.Equal(StatusResult.Types.Status.Failure, response.Result.Status);
        Assert.Contains("queue", response.Result.Exception.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task InvocationCancel_ends_a_processor_session_gracefully()
    {
        // A ten-minute session, one handler at a time: the first job runs for 1.5 s, the other two wait claimed.
        var worker = new FunctionsWorkerApp
        {
            RunTimersOnSchedule = false,
            Settings = new Dictionary<string, string?>
            {
                ["Conveyor:Processor:SessionDuration"] = "00:10:00",
                ["Conveyor:Processor:Concurrency"] = "1",
                ["Conveyor:Processor:Prefetch"] = "4",
                ["Conveyor:Processor:ShutdownGrace"] = "00:00:30",
            },
        };
        await worker.InitializeAsync();
        try
        {
            var batch = await worker.Client.PostAsync($"/api/queues/{worker.Queue}/jobs/batch", ConveyorApp.Json(
                """{"jobs":[{"type":"probe","payload":{"holdMs":1500}},{"type":"probe","payload":2},{"type":"probe","payload":3}]}"""));
            var ids = (await batch.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("results").EnumerateArray().Select(r => r.GetProperty("id").GetString()!).ToList();
            var db = (await TestRedis.GetAsync()).GetDatabase();
            using var cancel = new CancellationTokenSource();

            var session = worker.Host.InvokeTimerAsync("Processor", cancel.Token);
            await Wait.UntilAsync(async () => (await worker.ProbeRunsAsync(ids[0])).Count == 1, "the session started the first job");
            var consumer = Assert.Single(await db.SortedSetRangeByRankAsync($"conveyor:{{{worker.Queue}}}:consumers")).ToString();
            Assert.Equal(3, await db.SortedSetLengthAsync($"conveyor:{{{worker.Queue}}}:inflight:{consumer}"));
            await cancel.CancelAsync(); // the host sends InvocationCancel

            AssertSucceeded(await session);
            Assert.Single(await worker.ProbeRunsAsync(ids[0])); // the running job finished within the grace period
            Assert.Equal(HttpStatusCode.NotFound, (await worker.Client.GetAsync($"/api/queues/{worker.Queue}/jobs/{ids[0]}")).StatusCode);
            foreach (var unstarted in ids[1..])
            {
                var job = await worker.Client.GetFromJsonAsync<JsonElement>($"/api/queues/{worker.Queue}/jobs/{unstarted}");
                Assert.Equal("ready", job.GetProperty("state").GetString());
                Assert.Equal(0, job.GetProperty("attempts").GetInt32());
                Assert.Empty(await worker.ProbeRunsAsync(unstarted));
            }
            Assert.Equal(0, await db.SortedSetLengthAsync($"conveyor:{{{worker.Queue}}}:consumers"));
            Assert.Equal(0, await db.SortedSetLengthAsync($"conveyor:{{{worker.Queue}}}:inflight:{consumer}"));
        }
        finally
        {
            await worker.DisposeAsync();
        }
    }

    private static void AssertSucceeded(InvocationResponse response) =>
        Assert.True(response.Result.Status == StatusResult.Types.Status.Success,
            $"the invocation ended {response.Result.Status}: {response.Result.Exception?.Message}");

    private async Task<string> EnqueueAsync(string queue, string job)
    {
        var response = await app.Client.PostAsync($"/api/queues/{queue}/jobs", ConveyorApp.Json(job));
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        return (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
    }

    private Task<JsonElement> JobAsync(string queue, string id) => app.Client.GetFromJsonAsync<JsonElement>($"/api/queues/{queue}/jobs/{id}");

    private Task<(string Id, string Token)> RegisterAsync(string name) => app.Client.RegisterRuntimeAsync($$"""{"name":"{{name}}"}""");

    private Task<HttpResponseMessage> BeatAsync(string id, string token) => app.Client.BeatAsync(id, token);

    private Task<DateTime> LastSeenAsync(string id) => app.Database.ScalarAsync<DateTime>("SELECT last_seen_at FROM runtimes WHERE id = $1", Guid.Parse(id));
}

/// <summary>What the worker tells the host when it indexes itself (worker indexing), checked against the self-host.</summary>
[Collection(WorkerTimersCollection.Name)]
public sealed class WorkerIndexingTests(TimerWorkerApp app)
{
    [Fact]
    public async Task The_worker_indexes_the_self_hosts_routes_the_five_timers_and_the_wake_queue_trigger_and_asks_the_host_for_a_key_on_all_but_health_and_the_openapi_document()
    {
        var routes = new List<string>();
        var anonymous = new List<string>();
        var timers = new List<string>();
        var queues = new List<string>();
        foreach (var function in app.Host.Functions.Values)
        {
            foreach (var binding in function.RawBindings.Select(raw => JsonDocument.Parse(raw).RootElement))
            {
                switch (binding.GetProperty("type").GetString())
                {
                    case "httpTrigger":
                        var methods = binding.GetProperty("methods").EnumerateArray().Select(m => $"{m.GetString()!.ToUpperInvariant()} /api/{binding.GetProperty("route").GetString()}").ToList();
                        routes.AddRange(methods);
                        if (!string.Equals(binding.GetProperty("authLevel").GetString(), "Function", StringComparison.OrdinalIgnoreCase))
                        {
                            anonymous.AddRange(methods);
                        }
                        break;
                    case "timerTrigger":
                        timers.Add(function.Name);
                        break;
                    case "queueTrigger":
                        queues.Add($"{function.Name} {binding.GetProperty("queueName").GetString()} {binding.GetProperty("connection").GetString()}");
                        break;
                }
            }
        }

        await using var server = await SelfHostServer.StartAsync(TestRedis.UniqueQueue("routes"));
        Assert.Equal(server.Routes(), routes.Order());
        // Every other route: the host checks the function key. The dashboard's are anonymous to the host: App Service
        // authentication guards them and the handlers check its principal (a browser carries no function key).
        Assert.Equal(["GET /api/health", "GET /api/openapi.json"], anonymous.Where(r => !r.Contains(" /api/dashboard", StringComparison.Ordinal)).Order());
        Assert.Equal(routes.Where(r => r.Contains(" /api/dashboard", StringComparison.Ordinal)).Order(), anonymous.Where(r => r.Contains(" /api/dashboard", StringComparison.Ordinal)).Order());
        Assert.Equal(["Custodian", "HeartbeatFlush", "Processor", "Scheduler", "StaleSweeper"], timers.Order());
        Assert.Equal(["Wake %ConveyorWakeQueue% AzureWebJobsStorage"], queues); // the one function scaled by the wake queue's length
    }
}
#endif
