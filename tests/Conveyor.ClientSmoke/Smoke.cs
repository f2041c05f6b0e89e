using System.Diagnostics;
using Conveyor.Client;
using Conveyor.Client.Models;
using Microsoft.Kiota.Abstractions;
using Microsoft.Kiota.Abstractions.Authentication;
using Microsoft.Kiota.Abstractions.Serialization;
using Microsoft.Kiota.Http.HttpClientLibrary;

namespace Conveyor.ClientSmoke;

/// <summary>
/// Calls every route of the Conveyor API through the Kiota-generated client, the way a user of that client would, and
/// checks each answer. Usage: <c>Conveyor.ClientSmoke &lt;host URL&gt; &lt;key&gt; &lt;queue&gt;</c>, where a processor serves the
/// queue: its jobs are of a type no handler runs, so they die and fill the dead set. Exit code 0: all passed.
/// </summary>
internal static class Smoke
{
    private const string Unhandled = "smoke-unhandled";

    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    public static async Task<int> Main(string[] args)
    {
        if (args is not [var host, var key, var queue])
        {
            await Console.Error.WriteLineAsync("usage: Conveyor.ClientSmoke <host URL> <key> <queue>");
            return 2;
        }
        var api = host.TrimEnd('/') + "/api";
        var keyed = Client(api, new FunctionKey(key, inQuery: false));
        var keyInQuery = Client(api, new FunctionKey(key, inQuery: true));
        var anonymous = Client(api, new AnonymousAuthenticationProvider());
        try
        {
            await HealthAsync(anonymous);
            await JobsAsync(keyed, keyInQuery, queue);
            await DeadSetAsync(keyed, queue);
            await RuntimesAsync(keyed, api, key, queue);
            Console.WriteLine("smoke: every route answered as the contract says");
            return 0;
        }
        catch (Exception ex) when (ex is ApiException or SmokeFailure or TimeoutException)
        {
            await Console.Error.WriteLineAsync($"smoke FAILED: {ex.GetType().Name}: {ex.Message}");
            return 1;
        }
    }

    private static ConveyorClient Client(string baseUrl, IAuthenticationProvider authentication) =>
        new(new HttpClientRequestAdapter(authentication) { BaseUrl = baseUrl });

    private static async Task HealthAsync(ConveyorClient anonymous)
    {
        var health = await anonymous.Health.GetAsync();
        Check(health is { Status: "healthy" }, $"health: {health?.Status}");
        Step("GET /health without a key");
    }

    private static async Task JobsAsync(ConveyorClient client, ConveyorClient keyInQuery, string queue)
    {
        var jobs = client.Queues[queue].Jobs;
        var later = new EnqueueJobRequest
        {
            Type = Unhandled,
            Payload = new UntypedObject(new Dictionary<string, UntypedNode> { ["order"] = new UntypedInteger(42) }),
            Id = "smoke-later",
            DelaySeconds = 3600,
            MaxAttempts = 1,
        };
        var first = await jobs.PostAsync(later);
        Check(first is { Id: "smoke-later", Duplicate: false, State: JobState.Scheduled }, $"enqueue: {Describe(first)}");
        var again = await jobs.PostAsync(later);
        Check(again is { Id: "smoke-later", Duplicate: true, State: JobState.Scheduled }, $"enqueue again: {Describe(again)}");
        Step("POST /queues/{queue}/jobs (new, then a duplicate)");

        // The key as ?code= this time.
        var job = await keyInQuery.Queues[queue].Jobs["smoke-later"].GetAsync();
        Check(job is { Id: "smoke-later", Type: Unhandled, MaxAttempts: 1, State: JobState.Scheduled }, $"get job: {job?.Id} {job?.State}");
        Check(job!.Payload is UntypedObject payload && payload.GetValue()["order"] is UntypedInteger { } order && order.GetValue() == 42, "get job: payload");
        Step("GET /queues/{queue}/jobs/{id} (key in ?code=)");

        var batch = await jobs.Batch.PostAsync(new EnqueueBatchRequest
        {
            Jobs =
            [
                new() { Type = Unhandled, Payload = new UntypedString("dies"), Id = "smoke-dies-1", MaxAttempts = 1 },
                new() { Type = Unhandled, Payload = new UntypedNull(), Id = "smoke-dies-2", MaxAttempts = 1 },
            ],
        });
        Check(batch?.Results is [{ Id: "smoke-dies-1", Duplicate: false }, { Id: "smoke-dies-2", Duplicate: false }],
            $"batch: {string.Join(", ", batch?.Results?.Select(Describe) ?? [])}");
        Step("POST /queues/{queue}/jobs/batch");

        var stats = await client.Queues[queue].GetAsync();
        Check(stats is { Queue: var name, Scheduled: >= 1 } && name == queue, $"queue counts: scheduled {stats?.Scheduled}");
        Step("GET /queues/{queue}");
        // Three jobs written; the duplicate enqueue is not counted.
        var history = await client.Queues[queue].History.GetAsync();
        Check(history is { Queue: var named, TotalEnqueued: 3, Enqueued: { Count: 60 } } && named == queue,
            $"queue history: enqueued {history?.TotalEnqueued} over {history?.Enqueued?.Count} minutes");
        Step("GET /queues/{queue}/history");
        var all = await client.Queues.GetAsync();
        Check(all?.Queues?.Any(q => q.Queue == queue) == true, "list queues: the queue is missing");
        Step("GET /queues");

        var problem = await ProblemAsync(() => client.Queues["not a queue!"].GetAsync());
        Check(problem is { Type: "urn:conveyor:problem:validation", Status: 400, Field: "queue" }, $"bad queue name: {problem.Type} {problem.Field}");
        Step("a 400 arrives as the contract's Problem, with its field");
    }

    private static async Task DeadSetAsync(ConveyorClient client, string queue)
    {
        var dead = client.Queues[queue].Dead;
        await UntilDeadAsync(client, queue, ["smoke-dies-1", "smoke-dies-2"]);
        Step("GET /queues/{queue}/dead?page=1&pageSize=50");

        var one = await dead["smoke-dies-1"].Requeue.PostAsync();
        Check(one is { Requeued: 1 }, $"requeue one: {one?.Requeued}");
        Step("POST /queues/{queue}/dead/{id}/requeue");

        await dead["smoke-dies-2"].DeleteAsync();
        var gone = await ProblemAsync(() => dead["smoke-dies-2"].DeleteAsync());
        Check(gone is { Type: "urn:conveyor:problem:not-found", Status: 404 }, $"delete twice: {gone.Type}");
        Step("DELETE /queues/{queue}/dead/{id} (then 404 as a Problem)");

        // The requeued job runs again, fails again and dies again.
        await UntilDeadAsync(client, queue, ["smoke-dies-1"]);
        var all = await dead.Requeue.PostAsync();
        Check(all is { Requeued: >= 1 }, $"requeue all: {all?.Requeued}");
        Step("POST /queues/{queue}/dead/requeue");
    }

    private static async Task RuntimesAsync(ConveyorClient client, string api, string key, string queue)
    {
        var registered = await client.Runtimes.PostAsync(new RegisterRuntimeRequest
        {
            Name = "smoke-agent",
            Metadata = new RegisterRuntimeRequest_metadata { AdditionalData = new Dictionary<string, object> { ["version"] = "1.2.0" } },
        });
        Check(registered is { Id: not null, Token.Length: > 0, Name: "smoke-agent" }, "register: no id or token");
        var id = registered!.Id!.Value;
        Step("POST /runtimes");

        // A heartbeat needs the key and the runtime's bearer token: a client of the runtime's own.
        var runtime = Client(api, new Both(new FunctionKey(key, inQuery: false), new BaseBearerTokenAuthenticationProvider(new StaticToken(registered.Token!))));
        var beat = await runtime.Runtimes[id].Heartbeat.PostAsync();
        Check(beat is { Outcome: "buffered" or "synchronous", BeatIntervalSeconds: > 0 }, $"heartbeat: {beat?.Outcome}");
        var refused = await ProblemAsync(() => client.Runtimes[id].Heartbeat.PostAsync());
        Check(refused is { Type: "urn:conveyor:problem:unauthorized", Status: 401 }, $"heartbeat without a token: {refused.Type}");
        Step("POST /runtimes/{id}/heartbeat (with the token; without it, 401)");

        var info = await client.Runtimes[id].GetAsync();
        Check(info is { Name: "smoke-agent", LastSeenAt: not null } && info.Metadata?.AdditionalData["version"] is "1.2.0",
            $"get runtime: {info?.Name} seen {info?.LastSeenAt}");
        Step("GET /runtimes/{id}");

        var found = false;
        Guid? page = null;
        do
        {
            var list = await client.Runtimes.GetAsync(c =>
            {
                c.QueryParameters.PageSize = 100;
                c.QueryParameters.Page = page;
            });
            found |= list?.Runtimes?.Any(r => r.Id == id) == true;
            page = list?.Next is { } next ? Guid.Parse(next) : null;
        }
        while (!found && page is not null);
        Check(found, "list runtimes: the runtime is missing");
        var online = await client.Runtimes.GetAsync(c => c.QueryParameters.Status = Conveyor.Client.Runtimes.GetStatusQueryParameterType.Online);
        Check(online?.Runtimes?.All(r => r.Status == RuntimeStatus.Online) == true, "list online runtimes: one is not online");
        Step("GET /runtimes (paged, and ?status=online)");

        await ClaimsAsync(client, runtime, id, queue + "-rt");

        await client.Runtimes[id].DeleteAsync();
        var deleted = await ProblemAsync(() => client.Runtimes[id].GetAsync());
        Check(deleted is { Type: "urn:conveyor:problem:not-found", Status: 404 }, $"get deleted runtime: {deleted.Type}");
        Step("DELETE /runtimes/{id} (then 404 as a Problem)");
    }

    /// <summary>The runtime claims two jobs of a queue no processor serves, extends both, acks one and fails the other.</summary>
    private static async Task ClaimsAsync(ConveyorClient client, ConveyorClient runtime, Guid id, string queue)
    {
        await client.Queues[queue].Jobs.Batch.PostAsync(new EnqueueBatchRequest
        {
            Jobs = [new() { Type = "remote", Payload = new UntypedInteger(1), Id = "smoke-ack" }, new() { Type = "remote", Payload = new UntypedInteger(2), Id = "smoke-fail" }],
        });
        var claimed = await runtime.Runtimes[id].Claims.PostAsync(new ClaimJobsRequest { Queue = queue, Max = 10, WaitSeconds = 5 });
        var jobs = claimed?.Jobs?.ToDictionary(j => j.Id!, j => j.Claim!) ?? [];
        Check(jobs.Count == 2 && jobs.ContainsKey("smoke-ack") && jobs.ContainsKey("smoke-fail") && claimed!.ClaimTimeoutSeconds > 0,
            $"claim: {string.Join(", ", jobs.Keys)}");
        var refused = await ProblemAsync(() => client.Runtimes[id].Claims.PostAsync(new ClaimJobsRequest { Queue = queue }));
        Check(refused is { Type: "urn:conveyor:problem:unauthorized", Status: 401 }, $"claim without a token: {refused.Type}");
        Step("POST /runtimes/{id}/claims (with the token; without it, 401)");

        var extended = await runtime.Runtimes[id].Claims.Extend.PostAsync(new ClaimsRequest { Claims = [.. jobs.Values] });
        Check(extended?.Results is [{ Outcome: ClaimOutcome.Extended, ClaimExpiresAt: not null }, { Outcome: ClaimOutcome.Extended }], "extend: not extended");
        Step("POST /runtimes/{id}/claims/extend");

        var acked = await runtime.Runtimes[id].Claims.Ack.PostAsync(new ClaimsRequest { Claims = [jobs["smoke-ack"]] });
        Check(acked?.Results is [{ Outcome: ClaimOutcome.Acked }], "ack: not acked");
        Step("POST /runtimes/{id}/claims/ack");

        var failed = await runtime.Runtimes[id].Claims.Fail.PostAsync(new FailClaimsRequest
        {
            Failures = [new() { Claim = jobs["smoke-fail"], Error = "smoke", Retry = false }],
        });
        Check(failed?.Results is [{ Outcome: ClaimOutcome.Dead }], "fail: not dead");
        var dead = await client.Queues[queue].Jobs["smoke-fail"].GetAsync();
        Check(dead is { State: JobState.Dead, LastError: "smoke" }, $"failed job: {dead?.State}");
        Step("POST /runtimes/{id}/claims/fail");
    }

    private static async Task UntilDeadAsync(ConveyorClient client, string queue, string[] ids)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var page = await client.Queues[queue].Dead.GetAsync(c =>
            {
                c.QueryParameters.Page = 1;
                c.QueryParameters.PageSize = 50;
            });
            var dead = page?.Jobs?.Where(j => j.State == JobState.Dead).Select(j => j.Id).ToHashSet() ?? [];
            if (ids.All(dead.Contains))
            {
                return;
            }
            if (clock.Elapsed > Patience)
            {
                throw new TimeoutException($"waited {Patience} for jobs {string.Join(", ", ids)} to die; dead: {string.Join(", ", dead)}");
            }
            await Task.Delay(100);
        }
    }

    private static async Task<Problem> ProblemAsync(Func<Task> call)
    {
        try
        {
            await call();
        }
        catch (Problem problem)
        {
            return problem;
        }
        throw new SmokeFailure("expected a problem, the call succeeded");
    }

    private static string Describe(EnqueueResult? result) => result is null ? "(none)" : $"{result.Id} {result.State} duplicate={result.Duplicate}";

    private static void Check(bool condition, string what)
    {
        if (!condition)
        {
            throw new SmokeFailure(what);
        }
    }

    private static void Step(string what) => Console.WriteLine($"ok  {what}");

    /// <summary>
    /// The contract's two API key schemes: header <c>x-functions-key</c> or query <c>code</c>. Kiota's own
    /// ApiKeyAuthenticationProvider sends keys over HTTPS only, and the test host listens on plain loopback HTTP.
    /// </summary>
    private sealed class FunctionKey(string key, bool inQuery) : IAuthenticationProvider
    {
        public Task AuthenticateRequestAsync(RequestInformation request, Dictionary<string, object>? additionalAuthenticationContext = null, CancellationToken cancellationToken = default)
        {
            if (inQuery)
            {
                var uri = request.URI;
                request.URI = new Uri($"{uri.OriginalString}{(uri.Query.Length > 0 ? '&' : '?')}code={Uri.EscapeDataString(key)}");
            }
            else
            {
                request.Headers.Add("x-functions-key", key);
            }
            return Task.CompletedTask;
        }
    }

    /// <summary>Runs every provider on each request (a heartbeat needs a key and a bearer token).</summary>
    private sealed class Both(params IAuthenticationProvider[] providers) : IAuthenticationProvider
    {
        public async Task AuthenticateRequestAsync(RequestInformation request, Dictionary<string, object>? additionalAuthenticationContext = null, CancellationToken cancellationToken = default)
        {
            foreach (var provider in providers)
            {
                await provider.AuthenticateRequestAsync(request, additionalAuthenticationContext, cancellationToken);
            }
        }
    }

    private sealed class StaticToken(string token) : IAccessTokenProvider
    {
        public AllowedHostsValidator AllowedHostsValidator { get; } = new();

        public Task<string> GetAuthorizationTokenAsync(Uri uri, Dictionary<string, object>? additionalAuthenticationContext = null, CancellationToken cancellationToken = default) =>
            Task.FromResult(token);
    }

    private sealed class SmokeFailure(string message) : Exception(message);
}
