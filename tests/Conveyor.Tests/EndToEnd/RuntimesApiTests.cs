using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Conveyor.Tests.Infrastructure;
using Conveyor.Tests.Presence;

namespace Conveyor.Tests.EndToEnd;

/// <summary>Runtimes over real HTTP: the self-host on loopback, real Redis and PostgreSQL, its timers on short settings.</summary>
[Collection(PresenceCollection.Name)]
public sealed class RuntimesApiTests
{
    private static readonly Dictionary<string, string?> ShortPresence = new()
    {
        ["Conveyor:Presence:BeatInterval"] = "00:00:00.2",
        ["Conveyor:Presence:FlushInterval"] = "00:00:01",
        ["Conveyor:Presence:SweepInterval"] = "00:00:01",
        ["Conveyor:Presence:StaleWindow"] = "00:00:03",
    };

    private static async Task<(string Id, string Token)> RegisterAsync(SelfHostServer server, string name)
    {
        var response = await server.Client.PostAsync("/api/runtimes", SelfHostServer.Json($$$"""{"name":"{{{name}}}","metadata":{"zone":"eu-1"}}"""));
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        return (body.GetProperty("id").GetString()!, body.GetProperty("token").GetString()!);
    }

    private static Task<HttpResponseMessage> BeatAsync(SelfHostServer server, string id, string token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"/api/runtimes/{id}/heartbeat");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return server.Client.SendAsync(request);
    }

    [Fact]
    public async Task A_runtime_goes_online_with_its_first_beat_advances_with_flushes_and_goes_offline_when_silent()
    {
        await using var server = await SelfHostServer.StartAsync(TestRedis.UniqueQueue("rt"), ShortPresence, presenceTimers: true);
        var (id, token) = await RegisterAsync(server, "agent-1");
        var registered = await server.Client.GetFromJsonAsync<JsonElement>($"/api/runtimes/{id}");
        Assert.Equal("offline", registered.GetProperty("status").GetString());
        Assert.Equal("eu-1", registered.GetProperty("metadata").GetProperty("zone").GetString());

        var first = await BeatAsync(server, id, token);
        Assert.Equal(HttpStatusCode.OK, first.StatusCode); // flipped online synchronously
        var firstBody = await first.Content.ReadFromJsonAsync<JsonElement>();
        Assert.True(firstBody.GetProperty("flippedOnline").GetBoolean());
        Assert.Equal(0.2, firstBody.GetProperty("beatIntervalSeconds").GetDouble()); // Conveyor:Presence:BeatInterval, told to the runtime
        var firstSeen = await LastSeenInPostgresAsync(server, id);

        await Task.Delay(50);
        var second = await BeatAsync(server, id, token);
        Assert.Equal(HttpStatusCode.Accepted, second.StatusCode); // buffered in Redis
        await Wait.UntilAsync(async () => await LastSeenInPostgresAsync(server, id) > firstSeen, "a flush wrote the buffered beat");
        Assert.Equal("online", (await server.Client.GetFromJsonAsync<JsonElement>($"/api/runtimes/{id}")).GetProperty("status").GetString());
        var online = await server.Client.GetFromJsonAsync<JsonElement>("/api/runtimes?status=online");
        Assert.Contains(online.GetProperty("runtimes").EnumerateArray(), r => r.GetProperty("id").GetString() == id);

        // Silence: the sweeper marks it offline once the 3 s window has passed.
        await Wait.UntilAsync(async () =>
            (await server.Client.GetFromJsonAsync<JsonElement>($"/api/runtimes/{id}")).GetProperty("status").GetString() == "offline",
            "the sweeper marked the silent runtime offline", seconds: 30);
        var back = await BeatAsync(server, id, token);
        Assert.Equal(HttpStatusCode.OK, back.StatusCode); // and it comes back at once

        Assert.Equal(HttpStatusCode.NoContent, (await server.Client.DeleteAsync($"/api/runtimes/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await server.Client.GetAsync($"/api/runtimes/{id}")).StatusCode);
    }

    [Fact]
    public async Task A_wrong_token_gets_401_an_unknown_id_404_and_neither_changes_anything()
    {
        await using var server = await SelfHostServer.StartAsync(TestRedis.UniqueQueue("rt"));
        var (id, token) = await RegisterAsync(server, "agent-2");

        var wrong = await BeatAsync(server, id, token + "x");
        var none = await BeatAsync(server, Guid.NewGuid().ToString(), token);
        var malformed = await BeatAsync(server, "not-a-uuid", token);
        using var noBearer = new HttpRequestMessage(HttpMethod.Post, $"/api/runtimes/{id}/heartbeat");
        var missing = await server.Client.SendAsync(noBearer);
        using var noKey = new HttpRequestMessage(HttpMethod.Post, $"/api/runtimes/{id}/heartbeat");
        noKey.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        var keyless = await server.Anonymous.SendAsync(noKey);

        Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, none.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, malformed.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, missing.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, keyless.StatusCode);
        Assert.Equal("urn:conveyor:problem:unauthorized", (await wrong.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("type").GetString());
        var runtime = await server.Client.GetFromJsonAsync<JsonElement>($"/api/runtimes/{id}");
        Assert.Equal("offline", runtime.GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.Null, runtime.GetProperty("lastSeenAt").ValueKind);
        Assert.Null(await LastSeenInPostgresAsync(server, id));
    }

    public static TheoryData<string, string, string, HttpStatusCode> BadRegistrations => new()
    {
        { "malformed JSON", "application/json", """{"name":""", HttpStatusCode.BadRequest },
        { "wrong content type", "text/plain", """{"name":"a"}""", HttpStatusCode.UnsupportedMediaType },
        { "unknown field", "application/json", """{"name":"a","color":"red"}""", HttpStatusCode.BadRequest },
        { "empty name", "application/json", """{"name":""}""", HttpStatusCode.BadRequest },
        { "metadata not an object", "application/json", """{"name":"a","metadata":[1]}""", HttpStatusCode.BadRequest },
        { "name of the wrong type", "application/json", """{"name":5}""", HttpStatusCode.BadRequest },
    };

    [Theory]
    [MemberData(nameof(BadRegistrations))]
    public async Task A_bad_registration_gets_a_problem_and_writes_no_row(string what, string contentType, string body, HttpStatusCode status)
    {
        await using var server = await SelfHostServer.StartAsync(TestRedis.UniqueQueue("rt"));
        using var content = new StringContent(body, System.Text.Encoding.UTF8, contentType);

        var response = await server.Client.PostAsync("/api/runtimes", content);

        Assert.True(status == response.StatusCode, $"{what}: {response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        await using var count = server.Database.DataSource.CreateCommand("SELECT count(*) FROM runtimes");
        Assert.Equal(0L, (long)(await count.ExecuteScalarAsync())!);
    }

    [Fact]
    public async Task Health_reports_redis_and_postgres()
    {
        await using var server = await SelfHostServer.StartAsync(TestRedis.UniqueQueue("rt"));
        var health = await server.Anonymous.GetFromJsonAsync<JsonElement>("/api/health");
        Assert.Equal("healthy", health.GetProperty("status").GetString());
        Assert.Equal("ok", health.GetProperty("checks").GetProperty("postgres").GetString());
    }

    private static async Task<DateTime?> LastSeenInPostgresAsync(SelfHostServer server, string id)
    {
        await using var command = server.Database.DataSource.CreateCommand("SELECT last_seen_at FROM runtimes WHERE id = $1");
        command.Parameters.AddWithValue(Guid.Parse(id));
        var value = await command.ExecuteScalarAsync();
        return value is DateTime seen ? seen : null;
    }
}
