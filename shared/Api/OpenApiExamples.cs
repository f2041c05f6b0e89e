using System.Text.Json.Nodes;
using Conveyor.Presence;
using Conveyor.Queue;
using Microsoft.AspNetCore.Mvc;
using StackExchange.Redis;

namespace Conveyor.Api;

/// <summary>
/// The examples of the OpenAPI contract. Responses are the API's own model instances and problems come from the
/// real mapping (<see cref="Problems.TryMap"/> and the factories), serialized as the hosts serialize them, so an
/// example cannot show a field the API does not write. A route without examples here gets none, and a test says so.
/// </summary>
internal static class OpenApiExamples
{
    private const string Queue = "default";
    private const string JobId = "order-42";
    private static readonly DateTimeOffset At = new(2026, 3, 2, 9, 30, 0, TimeSpan.Zero);
    private static readonly Guid RuntimeId = Guid.Parse("0195f3b2-7c1e-7a4b-9d2e-5f8a1c3b4d6e");
    private const string Claim = "default:1772443800000001:order-42";

    /// <summary>The operations that need a runtime's bearer token besides the key.</summary>
    private static readonly HashSet<string> RuntimeTokenOperations = ["RuntimeHeartbeat", "ClaimJobs", "AckClaims", "FailClaims", "ExtendClaims"];

    /// <summary>The request body of an operation, as a client sends it.</summary>
    public static JsonNode? Request(string operationId) => operationId switch
    {
        "EnqueueJob" => JsonNode.Parse("""{"type":"echo","payload":{"hello":"world"},"id":"order-42","delaySeconds":30,"maxAttempts":5}"""),
        "EnqueueJobs" => JsonNode.Parse("""{"jobs":[{"type":"echo","payload":1},{"type":"echo","payload":null,"id":"order-43"}]}"""),
        "RegisterRuntime" => JsonNode.Parse("""{"name":"agent-1","metadata":{"version":"1.2.0"}}"""),
        "ClaimJobs" => JsonNode.Parse("""{"queue":"default","max":10,"waitSeconds":20}"""),
        "AckClaims" or "ExtendClaims" => JsonNode.Parse($$"""{"claims":["{{Claim}}"]}"""),
        "FailClaims" => JsonNode.Parse($$"""{"failures":[{"claim":"{{Claim}}","error":"SMTP 451: try again later","retry":true}]}"""),
        _ => null,
    };

    /// <summary>A successful response body of an operation.</summary>
    public static object? Response(string operationId, int status) => (operationId, status) switch
    {
        ("GetHealth", 200) => new HealthResponse("healthy", new Dictionary<string, string> { ["redis"] = "ok", ["postgres"] = "ok" }, Presence()),
        ("GetHealth", 503) => new HealthResponse(
            "unhealthy", new Dictionary<string, string> { ["redis"] = "unreachable: RedisConnectionException", ["postgres"] = "ok" }, Presence: null),
        ("ListQueues", 200) => new QueueListResponse([Stats(Queue), Stats("reports")]),
        ("GetQueue", 200) => Stats(Queue),
        ("GetQueueHistory", 200) => History(Queue),
        ("EnqueueJob", 202) => new EnqueueResult(JobId, JobState.Scheduled, Duplicate: false),
        ("EnqueueJob", 200) => new EnqueueResult(JobId, JobState.Scheduled, Duplicate: true),
        ("EnqueueJobs", 200) => new EnqueueBatchResponse(
            [new EnqueueResult("0195f3b2-8a40-7c11-b1f3-2e4d6a8c0f12", JobState.Ready, false), new EnqueueResult("order-43", JobState.Ready, false)]),
        ("GetJob", 200) => Job(JobState.Scheduled),
        ("ListDeadJobs", 200) => new DeadJobsResponse([Job(JobState.Dead)], 1, Paging.DefaultPageSize),
        ("RequeueAllDeadJobs", 200) => new RequeueResponse(3),
        ("RequeueDeadJob", 200) => new RequeueResponse(1),
        ("RegisterRuntime", 201) => new RegisteredRuntime(RuntimeId, "kq3vXb0sY1m9TzL2aR8cWfN4pE6hJ7uD", "agent-1", At),
        ("ListRuntimes", 200) => new RuntimeListResponse([Runtime()], RuntimeId.ToString()),
        ("GetRuntime", 200) => Runtime(),
        ("RuntimeHeartbeat", 202) => new HeartbeatResponse("buffered", false, At, 30),
        ("RuntimeHeartbeat", 200) => new HeartbeatResponse("synchronous", true, At, 30),
        ("ClaimJobs", 200) => new ClaimJobsResponse(
            [new RuntimeJob(JobId, Queue, "echo", """{"hello":"world"}""", 1, 5, At, Claim, At.AddMinutes(5), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")],
            300),
        ("AckClaims", 200) => new ClaimResultsResponse([new ClaimResult(Claim, ClaimOutcome.Acked)]),
        ("FailClaims", 200) => new ClaimResultsResponse([new ClaimResult(Claim, ClaimOutcome.Retried)]),
        ("ExtendClaims", 200) => new ClaimResultsResponse([new ClaimResult(Claim, ClaimOutcome.Extended) { ClaimExpiresAt = At.AddMinutes(5) }]),
        _ => null,
    };

    /// <summary>A sweeper in a mass silence: of 1,500 silent runtimes, 300 went offline this sweep and 1,200 were held back.</summary>
    private static PresenceHealth Presence() => new(
        SweepDisruption.MassSilence, At.AddMinutes(-2), SilentRuntimes: 1500, HeldBack: 1200, LastSweepAt: At,
        BeatIntakeSince: At.AddDays(-3), LastFlushAt: At.AddSeconds(-4));

    /// <summary>A problem an operation answers, as the API writes it.</summary>
    public static ProblemDetails Problem(string operationId, ProblemType type)
    {
        var enqueue = operationId is "EnqueueJob" or "EnqueueJobs";
        var runtimes = operationId.Contains("Runtime", StringComparison.Ordinal) || operationId.Contains("Claim", StringComparison.Ordinal);
        Exception? mapped = type.Type switch
        {
            Problems.Types.Validation => operationId switch
            {
                "EnqueueJob" => new ConveyorValidationException("maxAttempts", "must be between 1 and 1000"),
                "EnqueueJobs" => new ConveyorValidationException("jobs[3].type", "must match " + JobValidation.NamePatternText),
                "ListDeadJobs" => new ConveyorValidationException("pageSize", $"must be a whole number from 1 to {Paging.MaxPageSize}"),
                "RegisterRuntime" => new ConveyorValidationException("name", "must be 1 to 200 characters"),
                "ListRuntimes" => new ConveyorValidationException("status", "must be online or offline"),
                "ClaimJobs" => new ConveyorValidationException("max", $"must be between 1 and {RuntimeClaims.MaxBatch}"),
                "AckClaims" or "ExtendClaims" => new ConveyorValidationException("claims[0]", "is not a claim token (queue:token:job id, as the claim answered)"),
                "FailClaims" => new ConveyorValidationException("failures[0].claim", "is not a claim token (queue:token:job id, as the claim answered)"),
                _ when runtimes => new ConveyorValidationException("id", "must be a UUID"),
                _ => new ConveyorValidationException("queue", "must match " + JobValidation.NamePatternText),
            },
            Problems.Types.QueueLimit => new ConveyorQueueLimitException("reports", 1000),
            Problems.Types.RuntimeOffline => new RuntimeAccessException(RuntimeId.ToString(), RuntimeAccess.Offline),
            Problems.Types.Unavailable when enqueue =>
                new EnqueueUnconfirmedException(Queue, [JobId], new RedisTimeoutException("Timeout awaiting response", CommandStatus.Sent)),
            Problems.Types.Unavailable when runtimes => new Npgsql.NpgsqlException("Exception while connecting", new TimeoutException()),
            Problems.Types.Unavailable => new RedisConnectionException(ConnectionFailureType.UnableToConnect, "No connection is available"),
            _ => null,
        };
        if (mapped is not null && Problems.TryMap(mapped, out var problem))
        {
            return problem.ProblemDetails;
        }
        return type.Type switch
        {
            Problems.Types.MalformedJson => Problems.MalformedJson(
                "The JSON property 'Type' could not be mapped to any .NET member contained in type 'Conveyor.Api.EnqueueJobRequest'.").ProblemDetails,
            Problems.Types.UnsupportedMediaType => Problems.UnsupportedMediaType("text/plain").ProblemDetails,
            Problems.Types.PayloadTooLarge => Problems.PayloadTooLarge(new ApiOptions().MaxRequestBytes).ProblemDetails,
            Problems.Types.NotFound => Problems.NotFound(operationId switch
            {
                "GetJob" => $"No job '{JobId}' in queue '{Queue}' (unknown, or finished)",
                _ when runtimes => $"No runtime '{RuntimeId}'",
                _ => $"No dead job '{JobId}' in queue '{Queue}'",
            }).ProblemDetails,
            Problems.Types.Unauthorized => Problems.Unauthorized(RuntimeTokenOperations.Contains(operationId)
                ? "The bearer token is not this runtime's token"
                : "Send a function key in the x-functions-key header or the code query parameter").ProblemDetails,
            Problems.Types.Internal => new ProblemDetails
            {
                Type = type.Type,
                Title = type.Title,
                Status = type.Status,
                Detail = "The request failed unexpectedly; the error is logged with this traceId",
                Extensions = { ["traceId"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" },
            },
            _ => new ProblemDetails { Type = type.Type, Title = type.Title, Status = type.Status, Detail = type.When },
        };
    }

    /// <summary>An hour of a queue that took 40 jobs a minute, with a burst of failures 10 minutes ago.</summary>
    private static QueueHistory History(string queue)
    {
        var minutes = Enumerable.Range(0, QueueHistory.Minutes).ToList();
        return new QueueHistory(
            queue, At.AddMinutes(-(QueueHistory.Minutes - 1)), [.. minutes.Select(_ => 40L)],
            [.. minutes.Select(i => i == 49 ? 31L : 40L)], [.. minutes.Select(i => i == 49 ? 9L : 0L)]);
    }

    private static QueueStats Stats(string queue) => new(queue, Ready: 12, Scheduled: 3, Running: 4, Dead: 1, Consumers: 2);

    private static JobInfo Job(JobState state) => new(
        JobId, Queue, state, "echo", """{"hello":"world"}""",
        Attempts: state == JobState.Dead ? 5 : 0, MaxAttempts: 5, EnqueuedAt: At, DueAt: At.AddSeconds(30),
        LastError: state == JobState.Dead ? "InvalidOperationException: the upstream answered 500" : null,
        DiedAt: state == JobState.Dead ? At.AddMinutes(7) : null,
        TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");

    private static RuntimeInfo Runtime() => new(RuntimeId, "agent-1", RuntimeStatus.Online, At, At.AddHours(-2), """{"version":"1.2.0"}""");
}
