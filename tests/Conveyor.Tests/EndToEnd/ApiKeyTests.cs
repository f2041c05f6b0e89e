using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.EndToEnd;

/// <summary>
/// API keys, on the self-host only: there Conveyor checks <c>Conveyor:Api:Keys</c> itself. In Azure Functions the host
/// checks its function keys (every route but health and the OpenAPI document is <c>AuthorizationLevel.Function</c>)
/// before the worker sees the request, so a test host that plays the host cannot test them; WorkerIndexingTests checks
/// that the worker asks the host for a key on every route but those two.
/// </summary>
public sealed class ApiKeyTests
{
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

    [Fact]
    public async Task A_heartbeat_with_the_right_token_but_no_key_gets_401_and_changes_nothing()
    {
        await using var server = await SelfHostServer.StartAsync(TestRedis.UniqueQueue("rt"));
        var (id, token) = await server.Client.RegisterRuntimeAsync("""{"name":"agent-2"}""");

        var keyless = await server.Anonymous.BeatAsync(id, token);

        Assert.Equal(HttpStatusCode.Unauthorized, keyless.StatusCode);
        var runtime = await server.Client.GetFromJsonAsync<JsonElement>($"/api/runtimes/{id}");
        Assert.Equal("offline", runtime.GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.Null, runtime.GetProperty("lastSeenAt").ValueKind);
    }
}
