using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Conveyor.Api;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.Contract;

/// <summary>The answers of the self-host, which checks keys itself.</summary>
public sealed class OperationAnswersOnSelfHost : OperationAnswersTests
{
    protected override async Task<AnswersHost> StartAsync(string queue, Dictionary<string, string?> settings)
    {
        var server = await SelfHostServer.StartAsync(queue, settings);
        return new AnswersHost(server.Client, server.Anonymous, ChecksKeys: true, server.DisposeAsync);
    }
}

#if !FUNCTIONS_STANDIN
/// <summary>
/// The answers of the real Functions worker. Its host checks the keys before the worker sees a request (the test host
/// does not), so only the anonymous route (health) is called without one; a heartbeat's 401 for a bad bearer token is
/// the worker's own.
/// </summary>
public sealed class OperationAnswersOnFunctions : OperationAnswersTests
{
    protected override async Task<AnswersHost> StartAsync(string queue, Dictionary<string, string?> settings)
    {
        var app = new FunctionsWorkerApp { RunTimersOnSchedule = false, Settings = settings };
        await app.InitializeAsync();
        return new AnswersHost(app.Client, app.Client, ChecksKeys: false, async () => await app.DisposeAsync());
    }
}
#endif

/// <summary>
/// The document and the code agree on what each operation answers, on both hosts (a subclass per host above): every
/// answer the host gives is a response the document lists for that operation (a problem with a <c>type</c> among that
/// response's examples), and every problem type the document lists for an operation is one the test makes it answer
/// (all but <c>internal</c>, which needs a bug, and on Functions the keys' 401, which its host answers).
/// </summary>
public abstract class OperationAnswersTests
{
    private const int MaxRequestBytes = 1024;
    private const string BadQueue = "-bad";

    /// <summary>A running host: a client that sends the key, one that sends none, and whether the host checks keys itself.</summary>
    protected sealed record AnswersHost(HttpClient Client, HttpClient Anonymous, bool ChecksKeys, Func<ValueTask> Stop) : IAsyncDisposable
    {
        public ValueTask DisposeAsync() => Stop();
    }

    /// <summary>Starts the host on its own database with the processor on <paramref name="queue"/>, with <paramref name="settings"/> changed.</summary>
    protected abstract Task<AnswersHost> StartAsync(string queue, Dictionary<string, string?> settings);

    private sealed record Call(string Operation, string Method, string Path, string? Body = null, string ContentType = "application/json",
        bool Key = true, string? Bearer = null);

    private sealed record Answer(string Operation, int Status, string? Type)
    {
        public override string ToString() => $"{Operation} {Status} {Type}";
    }

    [Fact]
    public async Task Every_answer_is_documented_and_every_documented_problem_is_answered()
    {
        var queue = TestRedis.UniqueQueue("answers");
        var runtime = Guid.NewGuid().ToString();
        var answers = new List<Answer>();
        // A registry already at its bound (the shared test Redis lists this run's queues; one more makes sure), so an
        // enqueue to this new queue answers 409.
        await (await TestRedis.GetAsync()).GetDatabase().SetAddAsync("conveyor:queues", "answers-bound-placeholder");
        var checksKeys = false;
        await using (var host = await StartAsync(queue, new()
        {
            ["Conveyor:Api:MaxRequestBytes"] = MaxRequestBytes.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Conveyor:Queue:MaxQueues"] = "1",
        }))
        {
            checksKeys = host.ChecksKeys;
            var offline = await RegisterAsync(host, beat: false);
            foreach (var call in Refused(queue, runtime, offline).Where(c => Sent(c, checksKeys)))
            {
                answers.Add(await SendAsync(host, call));
            }
        }
        using var redis = await TestRedis.StartDedicatedAsync();
        await using (var host = await StartAsync(queue, new()
        {
            ["Conveyor:Redis:ConnectionString"] = $"{redis.Endpoint},connectTimeout=1000,asyncTimeout=1000,syncTimeout=1000",
            ["Conveyor:Postgres:ConnectionString"] = $"Host=127.0.0.1;Port={ClosedPort()};Username=conveyor;Database=conveyor;Timeout=2",
            ["Conveyor:Postgres:MigrateOnStart"] = "false",
        }))
        {
            redis.Dispose();
            foreach (var call in Valid(queue, runtime).Where(c => Sent(c, checksKeys)))
            {
                answers.Add(await SendAsync(host, call));
            }
        }
        var document = await DocumentAsync();
        var declared = Declared(document);
        var bearer = RuntimeTokenOperations(document);

        var undocumented = answers.Where(a => !declared.Contains(a) && !declared.Contains(a with { Type = null })).ToList();
        Assert.True(undocumented.Count == 0, "answers the document does not list:\n" + string.Join('\n', undocumented));
        var unanswered = declared.Where(d => d.Type is not null && d.Type != Problems.Types.Internal && !answers.Contains(d)
            && (checksKeys || d.Type != Problems.Types.Unauthorized || bearer.Contains(d.Operation))).ToList();
        Assert.True(unanswered.Count == 0, "problems the document lists that no call here provoked:\n" + string.Join('\n', unanswered));
    }

    [Fact]
    public async Task Every_request_example_is_accepted_as_the_document_says()
    {
        var queue = TestRedis.UniqueQueue("examples");
        await using var host = await StartAsync(queue, []);
        var document = await DocumentAsync();
        var bearer = RuntimeTokenOperations(document);
        var runtime = await RegisterAsync(host, beat: true);
        // The claim routes' examples name queue "default": here a queue of their own, with a job ready for the claim.
        var claims = TestRedis.UniqueQueue("examples-claims");
        Assert.Equal(202, (await SendAsync(host, new Call("EnqueueJob", "POST", $"/api/queues/{claims}/jobs", """{"type":"echo","payload":1}"""))).Status);

        var examples = 0;
        foreach (var (id, route, operation) in ContractTools.Operations(document))
        {
            if (!operation.TryGetProperty("requestBody", out var body))
            {
                continue;
            }
            examples++;
            var example = body.GetProperty("content").GetProperty("application/json").GetProperty("example").GetRawText()
                .Replace("\"default", "\"" + claims, StringComparison.Ordinal);
            var (method, path) = (route.Split(' ')[0], route.Split(' ')[1].Replace("{queue}", queue, StringComparison.Ordinal).Replace("{id}", runtime.Id, StringComparison.Ordinal));
            var answer = await SendAsync(host, new Call(id, method, path, example, Bearer: bearer.Contains(id) ? runtime.Token : null));

            Assert.True(answer.Type is null && answer.Status is >= 200 and < 300, $"{route} refused its example {example}: {answer}");
            Assert.True(operation.GetProperty("responses").TryGetProperty(answer.Status.ToString(System.Globalization.CultureInfo.InvariantCulture), out _),
                $"{route} answered its example with {answer.Status}, which the document does not list");
        }
        Assert.Equal(7, examples);
    }

    /// <summary>Registers a runtime (and beats once for it, bringing it online, when <paramref name="beat"/>).</summary>
    private static async Task<(string Id, string Token)> RegisterAsync(AnswersHost host, bool beat)
    {
        using var response = await host.Client.PostAsync("/api/runtimes", new StringContent("""{"name":"answers"}""", Encoding.UTF8, "application/json"));
        Assert.Equal(System.Net.HttpStatusCode.Created, response.StatusCode);
        using var registered = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var (id, token) = (registered.RootElement.GetProperty("id").GetString()!, registered.RootElement.GetProperty("token").GetString()!);
        if (beat)
        {
            Assert.Equal(200, (await SendAsync(host, new Call("RuntimeHeartbeat", "POST", $"/api/runtimes/{id}/heartbeat", Bearer: token))).Status);
        }
        return (id, token);
    }

    /// <summary>The operations whose security asks for the runtime's bearer token besides the key.</summary>
    private static HashSet<string> RuntimeTokenOperations(JsonElement document) =>
        [.. ContractTools.Operations(document)
            .Where(o => o.Operation.GetProperty("security").EnumerateArray().Any(r => r.TryGetProperty(OpenApiContract.RuntimeTokenScheme, out _)))
            .Select(o => o.Id)];

    /// <summary>Whether the test sends <paramref name="call"/>: a call without a key to a keyed route only where the host checks keys.</summary>
    private static bool Sent(Call call, bool checksKeys) => call.Key || checksKeys || call.Operation == "GetHealth";

    /// <summary>The document, as this process builds it (both hosts serve these bytes: BothHostsDocumentTests).</summary>
    private static async Task<JsonElement> DocumentAsync()
    {
        using var document = JsonDocument.Parse(await OpenApiContract.GetJsonAsync());
        return document.RootElement.Clone();
    }

    /// <summary>
    /// Calls each operation cannot accept, against a host that is up: small body cap, registry at its bound, and
    /// <paramref name="offline"/> a runtime that never beat.
    /// </summary>
    private static IEnumerable<Call> Refused(string q, string runtime, (string Id, string Token) offline)
    {
        var tooLarge = $$"""{"type":"echo","payload":"{{new string('x', MaxRequestBytes)}}"}""";
        const string Job = """{"type":"echo","payload":1}""";
        const string Batch = """{"jobs":[{"type":"echo","payload":1}]}""";
        foreach (var (operation, method, path) in new[]
        {
            ("ListQueues", "GET", "/api/queues"), ("GetQueue", "GET", $"/api/queues/{q}"), ("GetQueueHistory", "GET", $"/api/queues/{q}/history"),
            ("EnqueueJob", "POST", $"/api/queues/{q}/jobs"), ("EnqueueJobs", "POST", $"/api/queues/{q}/jobs/batch"),
            ("GetJob", "GET", $"/api/queues/{q}/jobs/nope"), ("ListDeadJobs", "GET", $"/api/queues/{q}/dead"),
            ("RequeueAllDeadJobs", "POST", $"/api/queues/{q}/dead/requeue"), ("RequeueDeadJob", "POST", $"/api/queues/{q}/dead/nope/requeue"),
            ("DeleteDeadJob", "DELETE", $"/api/queues/{q}/dead/nope"), ("RegisterRuntime", "POST", "/api/runtimes"),
            ("ListRuntimes", "GET", "/api/runtimes"), ("GetRuntime", "GET", $"/api/runtimes/{runtime}"),
            ("DeleteRuntime", "DELETE", $"/api/runtimes/{runtime}"), ("RuntimeHeartbeat", "POST", $"/api/runtimes/{runtime}/heartbeat"),
            ("ClaimJobs", "POST", $"/api/runtimes/{runtime}/claims"), ("AckClaims", "POST", $"/api/runtimes/{runtime}/claims/ack"),
            ("FailClaims", "POST", $"/api/runtimes/{runtime}/claims/fail"), ("ExtendClaims", "POST", $"/api/runtimes/{runtime}/claims/extend"),
        })
        {
            yield return new Call(operation, method, path, Key: false);
        }
        yield return new Call("GetHealth", "GET", "/api/health", Key: false);
        yield return new Call("GetQueue", "GET", $"/api/queues/{BadQueue}");
        yield return new Call("GetQueueHistory", "GET", $"/api/queues/{BadQueue}/history");
        yield return new Call("EnqueueJob", "POST", $"/api/queues/{BadQueue}/jobs", Job);
        yield return new Call("EnqueueJob", "POST", $"/api/queues/{q}/jobs", "{");
        yield return new Call("EnqueueJob", "POST", $"/api/queues/{q}/jobs", Job, "text/plain");
        yield return new Call("EnqueueJob", "POST", $"/api/queues/{q}/jobs", tooLarge);
        yield return new Call("EnqueueJob", "POST", $"/api/queues/{q}/jobs", Job);
        yield return new Call("EnqueueJobs", "POST", $"/api/queues/{BadQueue}/jobs/batch", Batch);
        yield return new Call("EnqueueJobs", "POST", $"/api/queues/{q}/jobs/batch", "{");
        yield return new Call("EnqueueJobs", "POST", $"/api/queues/{q}/jobs/batch", Batch, "text/plain");
        yield return new Call("EnqueueJobs", "POST", $"/api/queues/{q}/jobs/batch", tooLarge);
        yield return new Call("EnqueueJobs", "POST", $"/api/queues/{q}/jobs/batch", Batch);
        yield return new Call("GetJob", "GET", $"/api/queues/{BadQueue}/jobs/nope");
        yield return new Call("GetJob", "GET", $"/api/queues/{q}/jobs/nope");
        yield return new Call("ListDeadJobs", "GET", $"/api/queues/{q}/dead?pageSize=0");
        yield return new Call("ListDeadJobs", "GET", $"/api/queues/{q}/dead?page=1&pageSize=10");
        yield return new Call("RequeueAllDeadJobs", "POST", $"/api/queues/{BadQueue}/dead/requeue");
        yield return new Call("RequeueAllDeadJobs", "POST", $"/api/queues/{q}/dead/requeue");
        yield return new Call("RequeueDeadJob", "POST", $"/api/queues/{BadQueue}/dead/nope/requeue");
        yield return new Call("RequeueDeadJob", "POST", $"/api/queues/{q}/dead/nope/requeue");
        yield return new Call("DeleteDeadJob", "DELETE", $"/api/queues/{BadQueue}/dead/nope");
        yield return new Call("DeleteDeadJob", "DELETE", $"/api/queues/{q}/dead/nope");
        yield return new Call("RegisterRuntime", "POST", "/api/runtimes", """{"name":""}""");
        yield return new Call("RegisterRuntime", "POST", "/api/runtimes", "{");
        yield return new Call("RegisterRuntime", "POST", "/api/runtimes", """{"name":"agent"}""", "text/plain");
        yield return new Call("RegisterRuntime", "POST", "/api/runtimes", $$"""{"name":"{{new string('x', MaxRequestBytes)}}"}""");
        yield return new Call("ListRuntimes", "GET", "/api/runtimes?status=sleeping");
        yield return new Call("ListRuntimes", "GET", "/api/runtimes?status=online&pageSize=5");
        yield return new Call("GetRuntime", "GET", "/api/runtimes/not-a-uuid");
        yield return new Call("GetRuntime", "GET", $"/api/runtimes/{runtime}");
        yield return new Call("DeleteRuntime", "DELETE", "/api/runtimes/not-a-uuid");
        yield return new Call("DeleteRuntime", "DELETE", $"/api/runtimes/{runtime}");
        yield return new Call("RuntimeHeartbeat", "POST", "/api/runtimes/not-a-uuid/heartbeat", Bearer: "some-token");
        yield return new Call("RuntimeHeartbeat", "POST", $"/api/runtimes/{runtime}/heartbeat", Bearer: "some-token");
        yield return new Call("RuntimeHeartbeat", "POST", $"/api/runtimes/{runtime}/heartbeat");
        var claim = $$"""{"queue":"{{q}}"}""";
        foreach (var (operation, route, valid, invalid) in new[]
        {
            ("ClaimJobs", "claims", claim, """{"queue":"-bad"}"""),
            ("AckClaims", "claims/ack", $$"""{"claims":["{{q}}:1:job-1"]}""", """{"claims":["nonsense"]}"""),
            ("FailClaims", "claims/fail", $$"""{"failures":[{"claim":"{{q}}:1:job-1","error":"x"}]}""", """{"failures":[{"claim":"nonsense","error":"x"}]}"""),
            ("ExtendClaims", "claims/extend", $$"""{"claims":["{{q}}:1:job-1"]}""", """{"claims":["nonsense"]}"""),
        })
        {
            var path = $"/api/runtimes/{runtime}/{route}";
            yield return new Call(operation, "POST", path, invalid, Bearer: "some-token");
            yield return new Call(operation, "POST", path, "{", Bearer: "some-token");
            yield return new Call(operation, "POST", path, valid, "text/plain", Bearer: "some-token");
            yield return new Call(operation, "POST", path, $$"""{"queue":"{{new string('x', MaxRequestBytes)}}"}""", Bearer: "some-token");
            yield return new Call(operation, "POST", path, valid);
            yield return new Call(operation, "POST", path, valid, Bearer: "some-token");
        }
        yield return new Call("ClaimJobs", "POST", $"/api/runtimes/{offline.Id}/claims", claim, Bearer: offline.Token);
    }

    /// <summary>A valid call of each operation, against a host whose Redis is gone and whose PostgreSQL never answers.</summary>
    private static IEnumerable<Call> Valid(string q, string runtime) =>
    [
        new("GetHealth", "GET", "/api/health", Key: false),
        new("ListQueues", "GET", "/api/queues"),
        new("GetQueue", "GET", $"/api/queues/{q}"),
        new("GetQueueHistory", "GET", $"/api/queues/{q}/history"),
        new("EnqueueJob", "POST", $"/api/queues/{q}/jobs", """{"type":"echo","payload":1}"""),
        new("EnqueueJobs", "POST", $"/api/queues/{q}/jobs/batch", """{"jobs":[{"type":"echo","payload":1}]}"""),
        new("GetJob", "GET", $"/api/queues/{q}/jobs/some-job"),
        new("ListDeadJobs", "GET", $"/api/queues/{q}/dead"),
        new("RequeueAllDeadJobs", "POST", $"/api/queues/{q}/dead/requeue"),
        new("RequeueDeadJob", "POST", $"/api/queues/{q}/dead/some-job/requeue"),
        new("DeleteDeadJob", "DELETE", $"/api/queues/{q}/dead/some-job"),
        new("RegisterRuntime", "POST", "/api/runtimes", """{"name":"agent"}"""),
        new("ListRuntimes", "GET", "/api/runtimes"),
        new("GetRuntime", "GET", $"/api/runtimes/{runtime}"),
        new("DeleteRuntime", "DELETE", $"/api/runtimes/{runtime}"),
        new("RuntimeHeartbeat", "POST", $"/api/runtimes/{runtime}/heartbeat", Bearer: "some-token"),
        new("ClaimJobs", "POST", $"/api/runtimes/{runtime}/claims", $$"""{"queue":"{{q}}"}""", Bearer: "some-token"),
        new("AckClaims", "POST", $"/api/runtimes/{runtime}/claims/ack", $$"""{"claims":["{{q}}:1:job-1"]}""", Bearer: "some-token"),
        new("FailClaims", "POST", $"/api/runtimes/{runtime}/claims/fail", $$"""{"failures":[{"claim":"{{q}}:1:job-1","error":"x"}]}""", Bearer: "some-token"),
        new("ExtendClaims", "POST", $"/api/runtimes/{runtime}/claims/extend", $$"""{"claims":["{{q}}:1:job-1"]}""", Bearer: "some-token"),
    ];

    private static async Task<Answer> SendAsync(AnswersHost host, Call call)
    {
        using var request = new HttpRequestMessage(new HttpMethod(call.Method), call.Path);
        if (call.Body is not null)
        {
            request.Content = new StringContent(call.Body, Encoding.UTF8, new MediaTypeHeaderValue(call.ContentType));
        }
        if (call.Bearer is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", call.Bearer);
        }
        using var response = await (call.Key ? host.Client : host.Anonymous).SendAsync(request);
        string? type = null;
        if (response.Content.Headers.ContentType?.MediaType == "application/problem+json")
        {
            using var problem = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            type = problem.RootElement.GetProperty("type").GetString();
        }
        return new Answer(call.Operation, (int)response.StatusCode, type);
    }

    /// <summary>Each response the document lists: (operation, status, null) for a body that is not a problem, one per problem type otherwise.</summary>
    private static HashSet<Answer> Declared(JsonElement document)
    {
        var declared = new HashSet<Answer>();
        foreach (var (id, _, operation) in ContractTools.Operations(document))
        {
            foreach (var response in operation.GetProperty("responses").EnumerateObject())
            {
                var status = int.Parse(response.Name, System.Globalization.CultureInfo.InvariantCulture);
                if (response.Value.TryGetProperty("content", out var content) && content.TryGetProperty("application/problem+json", out var problem))
                {
                    foreach (var example in problem.GetProperty("examples").EnumerateObject())
                    {
                        declared.Add(new Answer(id, status, example.Value.GetProperty("value").GetProperty("type").GetString()));
                    }
                }
                else
                {
                    declared.Add(new Answer(id, status, null));
                }
            }
        }
        return declared;
    }

    private static int ClosedPort()
    {
        using var listener = new TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}
