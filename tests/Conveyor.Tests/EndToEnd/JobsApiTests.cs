using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.EndToEnd;

/// <summary>The jobs API on the self-host.</summary>
public sealed class JobsApiOnSelfHost(SelfHostApp app) : JobsApiTests(app), IClassFixture<SelfHostApp>;

#if !FUNCTIONS_STANDIN
/// <summary>The jobs API on the real Functions worker.</summary>
public sealed class JobsApiOnFunctions(FunctionsWorkerApp app) : JobsApiTests(app), IClassFixture<FunctionsWorkerApp>;
#endif

/// <summary>
/// The jobs API over real HTTP, against real Redis, on both hosts (a subclass per host above): enqueue, the job runs
/// through the host's processor and disappears, dead-set routes, and a problem for every bad request. API keys are
/// tested on the self-host only (<see cref="ApiKeyTests"/>).
/// </summary>
public abstract class JobsApiTests(ConveyorApp app)
{
    [Fact]
    public async Task An_enqueued_job_runs_and_then_disappears()
    {
        var response = await app.Client.PostAsync($"/api/queues/{app.Queue}/jobs", ConveyorApp.Json("""{"type":"probe","payload":{"hello":"world"}}"""));

        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        var id = body.GetProperty("id").GetString()!;
        Assert.Equal("ready", body.GetProperty("state").GetString());
        Assert.Equal($"/api/queues/{app.Queue}/jobs/{id}", response.Headers.Location?.OriginalString);
        await Wait.UntilAsync(async () => (await app.Client.GetAsync($"/api/queues/{app.Queue}/jobs/{id}")).StatusCode == HttpStatusCode.NotFound, "the job is gone");
        Assert.Equal("""{"hello":"world"}""", Assert.Single(await app.ProbeRunsAsync(id)).Payload);
    }

    [Fact]
    public async Task A_duplicate_id_answers_200_with_the_existing_state()
    {
        var queue = TestRedis.UniqueQueue("e2e");
        var job = """{"type":"probe","payload":1,"id":"invoice-7","delaySeconds":3600}""";

        var first = await app.Client.PostAsync($"/api/queues/{queue}/jobs", ConveyorApp.Json(job));
        var second = await app.Client.PostAsync($"/api/queues/{queue}/jobs", ConveyorApp.Json(job));

        Assert.Equal(HttpStatusCode.Accepted, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        var body = await second.Content.ReadFromJsonAsync<JsonElement>();
        Assert.True(body.GetProperty("duplicate").GetBoolean());
        Assert.Equal("scheduled", body.GetProperty("state").GetString());
        var stored = await app.Client.GetFromJsonAsync<JsonElement>($"/api/queues/{queue}/jobs/invoice-7");
        Assert.Equal("scheduled", stored.GetProperty("state").GetString());
        Assert.Equal(1, stored.GetProperty("payload").GetInt32());
    }

    [Fact]
    public async Task A_scheduled_job_runs_after_its_delay()
    {
        var response = await app.Client.PostAsync($"/api/queues/{app.Queue}/jobs", ConveyorApp.Json("""{"type":"probe","payload":null,"delaySeconds":1}"""));
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        var id = body.GetProperty("id").GetString()!;

        Assert.Equal("scheduled", body.GetProperty("state").GetString());
        Assert.Empty(await app.ProbeRunsAsync(id));
        await Wait.UntilAsync(async () => (await app.ProbeRunsAsync(id)).Count == 1, "the scheduler promoted it and it ran");
    }

    [Fact]
    public async Task A_failing_job_lands_in_the_dead_set_and_runs_again_when_requeued()
    {
        // Each job fails its first two runs: with two attempts it dies; requeued, its third run succeeds.
        var batch = await app.Client.PostAsync($"/api/queues/{app.Queue}/jobs/batch", ConveyorApp.Json("""
            {"jobs":[{"type":"probe","payload":{"failTimes":2,"error":"kaput"},"maxAttempts":2},
                     {"type":"probe","payload":{"failTimes":2,"error":"kaput"},"maxAttempts":2}]}
            """));
        Assert.Equal(HttpStatusCode.OK, batch.StatusCode);
        var ids = (await batch.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("results").EnumerateArray().Select(r => r.GetProperty("id").GetString()!).ToList();
        Assert.Equal(2, ids.Count);

        foreach (var id in ids)
        {
            await Wait.UntilAsync(async () => await StateAsync(id) == "dead", $"job {id} is dead");
        }
        var dead = (await app.Client.GetFromJsonAsync<JsonElement>($"/api/queues/{app.Queue}/dead?page=1&pageSize=1000")).GetProperty("jobs").EnumerateArray()
            .Where(j => ids.Contains(j.GetProperty("id").GetString()!)).ToList();
        Assert.Equal(2, dead.Count);
        Assert.All(dead, job =>
        {
            Assert.Equal("System.InvalidOperationException: kaput", job.GetProperty("lastError").GetString());
            Assert.Equal(2, job.GetProperty("attempts").GetInt32());
        });

        Assert.Equal(HttpStatusCode.OK, (await app.Client.PostAsync($"/api/queues/{app.Queue}/dead/{ids[0]}/requeue", null)).StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await app.Client.DeleteAsync($"/api/queues/{app.Queue}/dead/{ids[1]}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await app.Client.DeleteAsync($"/api/queues/{app.Queue}/dead/{ids[1]}")).StatusCode);
        await Wait.UntilAsync(async () => (await app.Client.GetAsync($"/api/queues/{app.Queue}/jobs/{ids[0]}")).StatusCode == HttpStatusCode.NotFound, "the requeued job ran");
        Assert.Equal(3, (await app.ProbeRunsAsync(ids[0])).Count);
        Assert.Equal(2, (await app.ProbeRunsAsync(ids[1])).Count);
        var stats = await app.Client.GetFromJsonAsync<JsonElement>("/api/queues");
        Assert.Contains(stats.GetProperty("queues").EnumerateArray(), q => q.GetProperty("queue").GetString() == app.Queue);
    }

    [Fact]
    public async Task An_enqueued_job_continues_the_callers_sampled_trace_into_its_run()
    {
        var caller = ActivityTraceId.CreateRandom();
        using var request = new HttpRequestMessage(HttpMethod.Post, $"/api/queues/{app.Queue}/jobs")
        {
            // Delayed, so the stored record can be read before the job runs and is deleted.
            Content = ConveyorApp.Json("""{"type":"probe","payload":{"traced":true},"delaySeconds":2}"""),
        };
        request.Headers.Add("traceparent", $"00-{caller}-{ActivitySpanId.CreateRandom()}-01");

        var response = await app.Client.SendAsync(request);

        var id = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        var stored = (await app.Client.GetFromJsonAsync<JsonElement>($"/api/queues/{app.Queue}/jobs/{id}")).GetProperty("traceParent").GetString();
        AssertSampledIn(caller, stored, "the job record's traceParent");
        await Wait.UntilAsync(async () => (await app.ProbeRunsAsync(id)).Count == 1, "the job ran");
        AssertSampledIn(caller, (await app.ProbeRunsAsync(id))[0].TraceParent, "the activity the job ran under");
    }

    public static TheoryData<string, string, string, string, HttpStatusCode, string> BadRequests => new()
    {
        { "malformed JSON", "jobs", "application/json", """{"type":"probe","payload":""", HttpStatusCode.BadRequest, "malformed-json" },
        { "wrong content type", "jobs", "text/plain", """{"type":"probe","payload":1}""", HttpStatusCode.UnsupportedMediaType, "unsupported-media-type" },
        { "body over the cap", "jobs", "application/json", """{"type":"probe","payload":" """ + new string('x', 1024 * 1024) + "\"}", HttpStatusCode.RequestEntityTooLarge, "payload-too-large" },
        { "unknown field", "jobs", "application/json", """{"type":"probe","payload":1,"priority":5}""", HttpStatusCode.BadRequest, "malformed-json" },
        { "wrong field type", "jobs", "application/json", """{"type":"probe","payload":1,"maxAttempts":"5"}""", HttpStatusCode.BadRequest, "malformed-json" },
        { "missing type", "jobs", "application/json", """{"payload":1}""", HttpStatusCode.BadRequest, "malformed-json" },
        { "invalid job type", "jobs", "application/json", """{"type":"no spaces","payload":1}""", HttpStatusCode.BadRequest, "validation" },
        { "negative delay", "jobs", "application/json", """{"type":"probe","payload":1,"delaySeconds":-5}""", HttpStatusCode.BadRequest, "validation" },
        { "max attempts out of range", "jobs", "application/json", """{"type":"probe","payload":1,"maxAttempts":0}""", HttpStatusCode.BadRequest, "validation" },
        { "1,001-item batch", "jobs/batch", "application/json", "{\"jobs\":[" + string.Join(',', Enumerable.Repeat("""{"type":"probe","payload":1}""", 1001)) + "]}", HttpStatusCode.BadRequest, "validation" },
        { "empty batch", "jobs/batch", "application/json", """{"jobs":[]}""", HttpStatusCode.BadRequest, "validation" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task A_bad_request_gets_a_problem_and_changes_nothing(string what, string route, string contentType, string body, HttpStatusCode status, string type)
    {
        var queue = TestRedis.UniqueQueue("e2e");
        using var content = new StringContent(body, System.Text.Encoding.UTF8, contentType);

        var response = await app.Client.PostAsync($"/api/queues/{queue}/{route}", content);

        Assert.True(status == response.StatusCode, $"{what}: {response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal($"urn:conveyor:problem:{type}", problem.GetProperty("type").GetString());
        Assert.Equal((int)status, problem.GetProperty("status").GetInt32());
        var db = (await TestRedis.GetAsync()).GetDatabase();
        Assert.False(await db.KeyExistsAsync($"conveyor:{{{queue}}}:jobs"), what);
        Assert.False(await db.SetContainsAsync("conveyor:queues", queue), what);
    }

    [Fact]
    public async Task An_invalid_queue_name_is_a_validation_problem()
    {
        var response = await app.Client.PostAsync("/api/queues/bad!queue/jobs", ConveyorApp.Json("""{"type":"probe","payload":1}"""));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("queue", problem.GetProperty("field").GetString());
        Assert.False(await (await TestRedis.GetAsync()).GetDatabase().SetContainsAsync("conveyor:queues", "bad!queue"));
    }

    private async Task<string?> StateAsync(string id)
    {
        var response = await app.Client.GetAsync($"/api/queues/{app.Queue}/jobs/{id}");
        return response.IsSuccessStatusCode ? (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("state").GetString() : null;
    }

    /// <summary>A W3C trace parent in the caller's trace, with the sampled flag (so exporters keep it).</summary>
    private static void AssertSampledIn(ActivityTraceId caller, string? traceParent, string what)
    {
        Assert.True(ActivityContext.TryParse(traceParent, null, out var context), $"{what} is not a W3C trace parent: '{traceParent}'");
        Assert.True(caller == context.TraceId, $"{what} ({traceParent}) is not in the caller's trace {caller}");
        Assert.True(context.TraceFlags.HasFlag(ActivityTraceFlags.Recorded), $"{what} ({traceParent}) is not sampled");
    }
}
