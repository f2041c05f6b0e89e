using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.EndToEnd;

/// <summary>The runtimes API on the self-host.</summary>
[Collection(PresenceCollection.Name)]
public sealed class RuntimesApiOnSelfHost(PresenceSelfHostApp app) : RuntimesApiTests(app), IClassFixture<PresenceSelfHostApp>;

#if !FUNCTIONS_STANDIN
/// <summary>The runtimes API on the real Functions worker.</summary>
[Collection(PresenceCollection.Name)]
public sealed class RuntimesApiOnFunctions(PresenceFunctionsWorkerApp app) : RuntimesApiTests(app), IClassFixture<PresenceFunctionsWorkerApp>;
#endif

/// <summary>An app whose presence timers run on short settings (the presence collection only: they touch the shared presence keys).</summary>
public sealed class PresenceSelfHostApp : SelfHostApp
{
    public PresenceSelfHostApp() => Settings = RuntimesApiTests.ShortPresence;

    protected override bool PresenceTimers => true;
}

/// <inheritdoc cref="PresenceSelfHostApp"/>
public sealed class PresenceFunctionsWorkerApp : FunctionsWorkerApp
{
    public PresenceFunctionsWorkerApp() => Settings = RuntimesApiTests.ShortPresence;

    protected override bool PresenceTimers => true;
}

/// <summary>
/// Runtimes over real HTTP, real Redis and PostgreSQL, on both hosts (a subclass per host above), with the heartbeat
/// flush and stale sweep running on short settings.
/// </summary>
public abstract class RuntimesApiTests(ConveyorApp app)
{
    public static readonly Dictionary<string, string?> ShortPresence = new()
    {
        ["Conveyor:Presence:BeatInterval"] = "00:00:00.2",
        ["Conveyor:Presence:FlushInterval"] = "00:00:01",
        ["Conveyor:Presence:SweepInterval"] = "00:00:01",
        ["Conveyor:Presence:StaleWindow"] = "00:00:03",
    };

    private Task<(string Id, string Token)> RegisterAsync(string name) =>
        app.Client.RegisterRuntimeAsync($$$"""{"name":"{{{name}}}","metadata":{"zone":"eu-1"}}""");

    private Task<HttpResponseMessage> BeatAsync(string id, string token) => app.Client.BeatAsync(id, token);

    [Fact]
    public async Task A_runtime_goes_online_with_its_first_beat_advances_with_flushes_and_goes_offline_when_silent()
    {
        var (id, token) = await RegisterAsync("agent-1");
        var registered = await app.Client.GetFromJsonAsync<JsonElement>($"/api/runtimes/{id}");
        Assert.Equal("offline", registered.GetProperty("status").GetString());
        Assert.Equal("eu-1", registered.GetProperty("metadata").GetProperty("zone").GetString());

        var first = await BeatAsync(id, token);
        Assert.Equal(HttpStatusCode.OK, first.StatusCode); // flipped online synchronously
        var firstBody = await first.Content.ReadFromJsonAsync<JsonElement>();
        Assert.True(firstBody.GetProperty("flippedOnline").GetBoolean());
        Assert.Equal(0.2, firstBody.GetProperty("beatIntervalSeconds").GetDouble()); // Conveyor:Presence:BeatInterval, told to the runtime
        var firstSeen = await LastSeenInPostgresAsync(id);

        await Task.Delay(50);
        var second = await BeatAsync(id, token);
        Assert.Equal(HttpStatusCode.Accepted, second.StatusCode); // buffered in Redis
        // It goes on beating, as a runtime does, until the silence below: on a loaded machine the flush can take longer
        // than the 3 s stale window, and a runtime that stopped after one buffered beat may rightly be swept meanwhile.
        using var stopBeating = new CancellationTokenSource();
        var beating = KeepBeatingAsync(id, token, stopBeating.Token);
        await Wait.UntilAsync(async () => await LastSeenInPostgresAsync(id) > firstSeen, "a flush wrote the buffered beat");
        Assert.Equal("online", (await app.Client.GetFromJsonAsync<JsonElement>($"/api/runtimes/{id}")).GetProperty("status").GetString());
        var online = await app.Client.GetFromJsonAsync<JsonElement>("/api/runtimes?status=online");
        Assert.Contains(online.GetProperty("runtimes").EnumerateArray(), r => r.GetProperty("id").GetString() == id);
        await stopBeating.CancelAsync();
        await beating;

        // Silence: the sweeper marks it offline once the 3 s window has passed.
        await Wait.UntilAsync(async () =>
            (await app.Client.GetFromJsonAsync<JsonElement>($"/api/runtimes/{id}")).GetProperty("status").GetString() == "offline",
            "the sweeper marked the silent runtime offline", seconds: 30);
        var back = await BeatAsync(id, token);
        Assert.Equal(HttpStatusCode.OK, back.StatusCode); // and it comes back at once

        Assert.Equal(HttpStatusCode.NoContent, (await app.Client.DeleteAsync($"/api/runtimes/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await app.Client.GetAsync($"/api/runtimes/{id}")).StatusCode);
    }

    [Fact]
    public async Task A_wrong_token_gets_401_an_unknown_id_404_and_neither_changes_anything()
    {
        var (id, token) = await RegisterAsync("agent-2");

        var wrong = await BeatAsync(id, token + "x");
        var none = await BeatAsync(Guid.NewGuid().ToString(), token);
        var malformed = await BeatAsync("not-a-uuid", token);
        using var noBearer = new HttpRequestMessage(HttpMethod.Post, $"/api/runtimes/{id}/heartbeat");
        var missing = await app.Client.SendAsync(noBearer);

        Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, none.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, malformed.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, missing.StatusCode);
        Assert.Equal("urn:conveyor:problem:unauthorized", (await wrong.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("type").GetString());
        var runtime = await app.Client.GetFromJsonAsync<JsonElement>($"/api/runtimes/{id}");
        Assert.Equal("offline", runtime.GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.Null, runtime.GetProperty("lastSeenAt").ValueKind);
        Assert.Null(await LastSeenInPostgresAsync(id));
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
        var before = await app.Database.ScalarAsync<long>("SELECT count(*) FROM runtimes");
        using var content = new StringContent(body, System.Text.Encoding.UTF8, contentType);

        var response = await app.Client.PostAsync("/api/runtimes", content);

        Assert.True(status == response.StatusCode, $"{what}: {response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal(before, await app.Database.ScalarAsync<long>("SELECT count(*) FROM runtimes"));
    }

    [Fact]
    public async Task Health_reports_redis_and_postgres()
    {
        var health = await app.Client.GetFromJsonAsync<JsonElement>("/api/health");
        Assert.Equal("healthy", health.GetProperty("status").GetString());
        Assert.Equal("ok", health.GetProperty("checks").GetProperty("postgres").GetString());

        // The app's own timers flush and sweep: health shows the sweeper's verdict and Conveyor's beat intake.
        await Wait.UntilAsync(
            async () => (await app.Client.GetFromJsonAsync<JsonElement>("/api/health")).GetProperty("presence") is { ValueKind: JsonValueKind.Object } p
                && p.GetProperty("lastSweepAt").ValueKind == JsonValueKind.String && p.GetProperty("lastFlushAt").ValueKind == JsonValueKind.String,
            "the app's flush and sweep ran and health shows them");
        var presence = (await app.Client.GetFromJsonAsync<JsonElement>("/api/health")).GetProperty("presence");
        Assert.Contains(presence.GetProperty("disruption").GetString(), (string[])["none", "intakeInterrupted", "fleetSilent", "massSilence"]);
        Assert.Equal(JsonValueKind.String, presence.GetProperty("beatIntakeSince").ValueKind);
        Assert.Equal(JsonValueKind.Number, presence.GetProperty("heldBack").ValueKind);
    }

    /// <summary>Beats every 200 ms (the fixture's beat interval) until <paramref name="stop"/>; each beat must be accepted.</summary>
    private async Task KeepBeatingAsync(string id, string token, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            var beat = await BeatAsync(id, token);
            Assert.True(beat.IsSuccessStatusCode, $"a beat got {(int)beat.StatusCode}");
            try
            {
                await Task.Delay(200, stop);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task<DateTime?> LastSeenInPostgresAsync(string id)
    {
        await using var command = app.Database.DataSource.CreateCommand("SELECT last_seen_at FROM runtimes WHERE id = $1");
        command.Parameters.AddWithValue(Guid.Parse(id));
        var value = await command.ExecuteScalarAsync();
        return value is DateTime seen ? seen : null;
    }
}
