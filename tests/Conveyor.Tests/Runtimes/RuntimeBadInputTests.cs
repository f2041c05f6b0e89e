using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Conveyor.Client;
using Conveyor.Tests.Infrastructure;
using StackExchange.Redis;

namespace Conveyor.Tests.Runtimes;

/// <summary>Bad input to the runtime routes gets a 4xx problem and changes nothing in Redis (on both hosts).</summary>
public abstract partial class RuntimeClaimsTests
{
    /// <summary>(route after /api/runtimes/{id}/, body, status, problem type suffix, field or null).</summary>
    private static readonly (string Route, string Body, HttpStatusCode Status, string Type, string? Field)[] BadInputCases =
    [
        ("claims", """{"queue":"{q}","max":0}""", HttpStatusCode.BadRequest, "validation", "max"),
        ("claims", """{"queue":"{q}","max":1001}""", HttpStatusCode.BadRequest, "validation", "max"),
        ("claims", """{"queue":"{q}","waitSeconds":-1}""", HttpStatusCode.BadRequest, "validation", "waitSeconds"),
        ("claims", """{"queue":"{q}","waitSeconds":61}""", HttpStatusCode.BadRequest, "validation", "waitSeconds"),
        ("claims", """{"queue":"{q}","waitSeconds":1e308}""", HttpStatusCode.BadRequest, "validation", "waitSeconds"),
        ("claims", """{"queue":"bad name!"}""", HttpStatusCode.BadRequest, "validation", "queue"),
        ("claims", """{"queue":"-starts-with-a-dash"}""", HttpStatusCode.BadRequest, "validation", "queue"),
        ("claims", """{"queue":"{q}","max":"5"}""", HttpStatusCode.BadRequest, "malformed-json", null),
        ("claims", """{"queue":"{q}","color":"red"}""", HttpStatusCode.BadRequest, "malformed-json", null),
        ("claims", """{"max":1}""", HttpStatusCode.BadRequest, "malformed-json", null),
        ("claims/ack", """{"claims":[]}""", HttpStatusCode.BadRequest, "validation", "claims"),
        ("claims/ack", """{"claims":["nonsense"]}""", HttpStatusCode.BadRequest, "validation", "claims[0]"),
        ("claims/ack", """{"claims":["{q}:abc:job-1"]}""", HttpStatusCode.BadRequest, "validation", "claims[0]"),
        ("claims/ack", """{"claims":["{q}:0:job-1"]}""", HttpStatusCode.BadRequest, "validation", "claims[0]"),
        ("claims/ack", """{"claims":["{q}:-1:job-1"]}""", HttpStatusCode.BadRequest, "validation", "claims[0]"),
        ("claims/ack", """{"claims":["{q}:1:"]}""", HttpStatusCode.BadRequest, "validation", "claims[0]"),
        ("claims/ack", """{"claims":["bad name!:1:job-1"]}""", HttpStatusCode.BadRequest, "validation", "claims[0]"),
        ("claims/ack", """{"claims":["{q}:1:has space"]}""", HttpStatusCode.BadRequest, "validation", "claims[0]"),
        ("claims/ack", """{"claims":[null]}""", HttpStatusCode.BadRequest, "validation", "claims[0]"),
        ("claims/ack", """{"claims":["{CLAIM}","{CLAIM}"]}""", HttpStatusCode.BadRequest, "validation", "claims[1]"),
        ("claims/ack", """{"claims":["{CLAIM}","nonsense"]}""", HttpStatusCode.BadRequest, "validation", "claims[1]"),
        ("claims/ack", """{"claims":"{CLAIM}"}""", HttpStatusCode.BadRequest, "malformed-json", null),
        ("claims/fail", """{"failures":[{"claim":"{CLAIM}"}]}""", HttpStatusCode.BadRequest, "malformed-json", null),
        ("claims/fail", """{"failures":[null]}""", HttpStatusCode.BadRequest, "validation", "failures[0]"),
        ("claims/fail", """{"failures":[{"claim":"{CLAIM}","error":"x","retry":"no"}]}""", HttpStatusCode.BadRequest, "malformed-json", null),
        ("claims/fail", """{"failures":[{"claim":"{CLAIM}","error":"x"},{"claim":"oops","error":"y"}]}""", HttpStatusCode.BadRequest, "validation", "failures[1].claim"),
        ("claims/extend", """{"claims":["{q}"]}""", HttpStatusCode.BadRequest, "validation", "claims[0]"),
        ("claims/extend", """{"claims":["{CLAIM}"],"claims":["{CLAIM}"]}""", HttpStatusCode.BadRequest, "malformed-json", null),
    ];

    [Fact]
    public async Task Bad_claims_acks_fails_and_extends_get_a_4xx_problem_and_change_nothing()
    {
        var queue = TestRedis.UniqueQueue("bad");
        await app.Client.EnqueueBatchAsync(queue, [NewJob.Of("work", 1) with { Id = "held" }, NewJob.Of("work", 2) with { Id = "ready" }]);
        var runtime = await app.OnlineRuntimeAsync();
        var claim = Assert.Single((await app.Client.ClaimAsync(runtime, queue, 1, TimeSpan.Zero)).Jobs).Claim;
        var before = await SnapshotAsync(app.Db, queue);
        var failures = new List<string>();

        foreach (var (route, template, status, type, field) in BadInputCases)
        {
            var body = template.Replace("{CLAIM}", claim, StringComparison.Ordinal).Replace("{q}", queue, StringComparison.Ordinal);
            using var response = await SendAsync(runtime, route, new StringContent(body, Encoding.UTF8, "application/json"));
            var problem = await ProblemAsync(response);
            var (gotType, gotField) = (problem.GetProperty("type").GetString(), problem.TryGetProperty("field", out var f) ? f.GetString() : null);
            if (response.StatusCode != status || gotType != "urn:conveyor:problem:" + type || gotField != field)
            {
                failures.Add($"{route} {body}: {(int)response.StatusCode} {gotType} {gotField}, expected {(int)status} {type} {field}");
            }
        }
        using (var wrongMedia = await SendAsync(runtime, "claims/ack", new StringContent(claim, Encoding.UTF8, "text/plain")))
        {
            Assert.Equal(HttpStatusCode.UnsupportedMediaType, wrongMedia.StatusCode);
            Assert.Equal("urn:conveyor:problem:unsupported-media-type", (await ProblemAsync(wrongMedia)).GetProperty("type").GetString());
        }
        using (var noBearer = await app.Http.PostAsync($"/api/runtimes/{runtime.Id}/claims/ack", SelfHostServer.Json($$"""{"claims":["{{claim}}"]}""")))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, noBearer.StatusCode);
        }
        using (var badId = await SendAsync(runtime with { Id = Guid.Empty }, "claims", SelfHostServer.Json($$"""{"queue":"{{queue}}"}""")))
        {
            Assert.Equal(HttpStatusCode.NotFound, badId.StatusCode);
        }
        using (var notUuid = await app.Http.SendAsync(BearerRequest("/api/runtimes/not-a-uuid/claims", runtime.Token, SelfHostServer.Json($$"""{"queue":"{{queue}}"}"""))))
        {
            Assert.Equal(HttpStatusCode.BadRequest, notUuid.StatusCode);
        }

        Assert.Empty(failures);
        Assert.Equal(before, await SnapshotAsync(app.Db, queue));
        Assert.Equal(ClaimOutcome.Acked, Assert.Single(await app.Client.AckAsync(runtime, [claim])).Outcome); // the claim still held
    }

    private Task<HttpResponseMessage> SendAsync(RuntimeCredentials runtime, string route, HttpContent content) =>
        app.Http.SendAsync(BearerRequest($"/api/runtimes/{runtime.Id}/{route}", runtime.Token, content));

    private static HttpRequestMessage BearerRequest(string path, string token, HttpContent content)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = content };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return request;
    }

    private static async Task<JsonElement> ProblemAsync(HttpResponseMessage response)
    {
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        return await response.Content.ReadFromJsonAsync<JsonElement>();
    }

    /// <summary>Every key of the queue with its value, except the custodian's visit record (it changes every pass).</summary>
    private static async Task<string> SnapshotAsync(IDatabase db, string queue)
    {
        var server = db.Multiplexer.GetServers()[0];
        var lines = new List<string>();
        await foreach (var key in server.KeysAsync(pattern: $"conveyor:{{{queue}}}:*"))
        {
            // Not the custodian's watch, the wake-up slot (the enqueue above sets it for 5 s on the Functions host, which posts
            // wake-ups) nor the scheduler's unserved marker: timers and clocks change them during the requests, and none
            // is state a bad request could change.
            if (!key.ToString().EndsWith(":watch", StringComparison.Ordinal) && !key.ToString().EndsWith(":wake", StringComparison.Ordinal)
                && !key.ToString().EndsWith(":unserved", StringComparison.Ordinal))
            {
                lines.Add($"{key} {Convert.ToHexString((byte[])(await db.KeyDumpAsync(key))!)}");
            }
        }
        lines.Sort(StringComparer.Ordinal);
        return string.Join('\n', lines);
    }
}
