using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.EndToEnd;

/// <summary>The self-host over real HTTP on loopback, against real Redis.</summary>
public sealed class JobsApiTests
{
    [Fact]
    public async Task An_enqueued_job_runs_and_then_disappears()
    {
        var queue = TestRedis.UniqueQueue("e2e");
        await using var server = await SelfHostServer.StartAsync(queue);

        var response = await server.Client.PostAsync($"/api/queues/{queue}/jobs", SelfHostServer.Json("""{"type":"probe","payload":{"hello":"world"}}"""));

        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        var id = body.GetProperty("id").GetString()!;
        Assert.Equal("ready", body.GetProperty("state").GetString());
        await Wait.UntilAsync(async () => (await server.Client.GetAsync($"/api/queues/{queue}/jobs/{id}")).StatusCode == HttpStatusCode.NotFound, "the job is gone");
        Assert.Equal("""{"hello":"world"}""", Assert.Single(server.Probe.Runs).Payload);
    }

    [Fact]
    public async Task A_duplicate_id_answers_200_with_the_existing_state()
    {
        var queue = TestRedis.UniqueQueue("e2e");
        await using var server = await SelfHostServer.StartAsync(queue);
        var job = """{"type":"probe","payload":1,"id":"invoice-7","delaySeconds":3600}""";

        var first = await server.Client.PostAsync($"/api/queues/{queue}/jobs", SelfHostServer.Json(job));
        var second = await server.Client.PostAsync($"/api/queues/{queue}/jobs", SelfHostServer.Json(job));

        Assert.Equal(HttpStatusCode.Accepted, first.StatusCode);
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        var body = await second.Content.ReadFromJsonAsync<JsonElement>();
        Assert.True(body.GetProperty("duplicate").GetBoolean());
        Assert.Equal("scheduled", body.GetProperty("state").GetString());
        var stored = await server.Client.GetFromJsonAsync<JsonElement>($"/api/queues/{queue}/jobs/invoice-7");
        Assert.Equal("scheduled", stored.GetProperty("state").GetString());
        Assert.Equal(1, stored.GetProperty("payload").GetInt32());
    }

    [Fact]
    public async Task A_scheduled_job_runs_after_its_delay()
    {
        var queue = TestRedis.UniqueQueue("e2e");
        await using var server = await SelfHostServer.StartAsync(queue);

        var response = await server.Client.PostAsync($"/api/queues/{queue}/jobs", SelfHostServer.Json("""{"type":"probe","payload":null,"delaySeconds":1}"""));
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        var id = body.GetProperty("id").GetString()!;

        Assert.Equal("scheduled", body.GetProperty("state").GetString());
        Assert.Empty(server.Probe.Runs);
        await Wait.UntilAsync(() => server.Probe.Runs.Any(r => r.Id == id), "the scheduler promoted it and it ran");
    }

    [Fact]
    public async Task A_failing_job_lands_in_the_dead_set_and_runs_again_when_requeued()
    {
        var queue = TestRedis.UniqueQueue("e2e");
        await using var server = await SelfHostServer.StartAsync(queue);
        var fail = true;
        server.Probe.Behavior = (_, _) => Volatile.Read(ref fail) ? throw new InvalidOperationException("kaput") : Task.CompletedTask;

        var batch = await server.Client.PostAsync($"/api/queues/{queue}/jobs/batch",
            SelfHostServer.Json("""{"jobs":[{"type":"probe","payload":{},"maxAttempts":2},{"type":"probe","payload":{},"maxAttempts":2}]}"""));
        Assert.Equal(HttpStatusCode.OK, batch.StatusCode);
        var ids = (await batch.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("results").EnumerateArray().Select(r => r.GetProperty("id").GetString()!).ToList();
        Assert.Equal(2, ids.Count);

        await Wait.UntilAsync(async () =>
            (await server.Client.GetFromJsonAsync<JsonElement>($"/api/queues/{queue}")).GetProperty("dead").GetInt64() == 2, "both are dead");
        var dead = await server.Client.GetFromJsonAsync<JsonElement>($"/api/queues/{queue}/dead?page=1&pageSize=10");
        var first = dead.GetProperty("jobs")[0];
        Assert.Equal("System.InvalidOperationException: kaput", first.GetProperty("lastError").GetString());
        Assert.Equal(2, first.GetProperty("attempts").GetInt32());

        Volatile.Write(ref fail, false);
        Assert.Equal(HttpStatusCode.OK, (await server.Client.PostAsync($"/api/queues/{queue}/dead/{ids[0]}/requeue", null)).StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await server.Client.DeleteAsync($"/api/queues/{queue}/dead/{ids[1]}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await server.Client.DeleteAsync($"/api/queues/{queue}/dead/{ids[1]}")).StatusCode);
        await Wait.UntilAsync(async () => (await server.Client.GetAsync($"/api/queues/{queue}/jobs/{ids[0]}")).StatusCode == HttpStatusCode.NotFound, "the requeued job ran");
        Assert.Equal(3, server.Probe.RunsOf(ids[0]));
        var stats = await server.Client.GetFromJsonAsync<JsonElement>("/api/queues");
        Assert.Contains(stats.GetProperty("queues").EnumerateArray(), q => q.GetProperty("queue").GetString() == queue);
    }

    [Fact]
    public async Task Requests_without_a_valid_key_get_401_and_health_is_anonymous()
    {
        var queue = TestRedis.UniqueQueue("e2e");
        await using var server = await SelfHostServer.StartAsync(queue);

        var noKey = await server.Anonymous.PostAsync($"/api/queues/{queue}/jobs", SelfHostServer.Json("""{"type":"probe","payload":1}"""));
        var wrongKey = await server.Anonymous.GetAsync($"/api/queues?code=wrong");
        var queryKey = await server.Anonymous.GetAsync($"/api/queues/{queue}?code={SelfHostServer.Key}");
        var health = await server.Anonymous.GetAsync("/api/health");

        Assert.Equal(HttpStatusCode.Unauthorized, noKey.StatusCode);
        Assert.Equal("application/problem+json", noKey.Content.Headers.ContentType?.MediaType);
        Assert.Equal(HttpStatusCode.Unauthorized, wrongKey.StatusCode);
        Assert.Equal(HttpStatusCode.OK, queryKey.StatusCode);
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        Assert.Equal("ok", (await health.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("checks").GetProperty("redis").GetString());
        Assert.False(await (await TestRedis.GetAsync()).GetDatabase().KeyExistsAsync($"conveyor:{{{queue}}}:jobs"));
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
        await using var server = await SelfHostServer.StartAsync(queue);
        using var content = new StringContent(body, System.Text.Encoding.UTF8, contentType);

        var response = await server.Client.PostAsync($"/api/queues/{queue}/{route}", content);

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
        await using var server = await SelfHostServer.StartAsync(TestRedis.UniqueQueue("e2e"));

        var response = await server.Client.PostAsync("/api/queues/bad!queue/jobs", SelfHostServer.Json("""{"type":"probe","payload":1}"""));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("queue", problem.GetProperty("field").GetString());
        Assert.False(await (await TestRedis.GetAsync()).GetDatabase().SetContainsAsync("conveyor:queues", "bad!queue"));
    }
}
