using System.Text.Json;
using System.Text.Json.Serialization;
using Conveyor.Queue;

namespace Conveyor.Api;

/// <summary>Body of <c>POST /api/queues/{queue}/jobs</c> (and each item of a batch).</summary>
public sealed record EnqueueJobRequest
{
    /// <summary>Handler name: <c>^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$</c>, the same rule as queue names.</summary>
    [JsonRequired] public string Type { get; init; } = "";

    /// <summary>Any JSON value; <c>null</c> for none.</summary>
    [JsonRequired] public JsonElement Payload { get; init; }

    /// <summary>
    /// Idempotency key (default: a new UUIDv7): 1–128 of <c>A-Z a-z 0-9 . _ ~ -</c>, starting and ending with a letter or
    /// digit, so it travels unchanged in URL paths. Send one to make retries safe.
    /// </summary>
    public string? Id { get; init; }

    /// <summary>Run no earlier than this instant (ISO 8601), at most 365 days ahead. Excludes <c>delaySeconds</c>.</summary>
    public DateTimeOffset? RunAt { get; init; }

    /// <summary>Run after this many seconds (0–31536000, counted on Redis time). Excludes <c>runAt</c>.</summary>
    public double? DelaySeconds { get; init; }

    /// <summary>Executions allowed, 1–1000 (default 20).</summary>
    public int? MaxAttempts { get; init; }
}

/// <summary>Body of <c>POST /api/queues/{queue}/jobs/batch</c>.</summary>
public sealed record EnqueueBatchRequest
{
    /// <summary>1 to 1,000 jobs, enqueued in one script call; all or none pass validation.</summary>
    [JsonRequired] public IReadOnlyList<EnqueueJobRequest> Jobs { get; init; } = [];
}

/// <summary>Per-item results of a batch, in request order.</summary>
public sealed record EnqueueBatchResponse(IReadOnlyList<EnqueueResult> Results);

/// <summary>A page of dead jobs, most recent death first.</summary>
public sealed record DeadJobsResponse(IReadOnlyList<JobInfo> Jobs, int Page, int PageSize);

/// <summary>Every known queue with its counts.</summary>
public sealed record QueueListResponse(IReadOnlyList<QueueStats> Queues);

/// <summary>How many dead jobs went back to the ready list.</summary>
public sealed record RequeueResponse(long Requeued);

/// <summary>Body of <c>POST /api/runtimes</c>.</summary>
public sealed record RegisterRuntimeRequest
{
    /// <summary>Display name, 1–200 characters.</summary>
    [JsonRequired] public string Name { get; init; } = "";

    /// <summary>Any JSON object (up to 16 KiB); default <c>{}</c>.</summary>
    public JsonElement? Metadata { get; init; }
}

/// <summary>One page of runtimes; pass <c>next</c> as <c>?page=</c> for the next one (null on the last page).</summary>
public sealed record RuntimeListResponse(IReadOnlyList<Conveyor.Presence.RuntimeInfo> Runtimes, string? Next);

/// <summary>
/// What a heartbeat did: buffered in Redis (202) or written to PostgreSQL at once (200), and in how many seconds
/// the runtime should beat again (<c>Conveyor:Presence:BeatInterval</c>).
/// </summary>
public sealed record HeartbeatResponse(string Outcome, bool FlippedOnline, DateTimeOffset? SeenAt, double BeatIntervalSeconds);

/// <summary>Body of <c>POST /api/runtimes/{id}/claims</c>.</summary>
public sealed record ClaimJobsRequest
{
    /// <summary>The queue to claim from.</summary>
    [JsonRequired] public string Queue { get; init; } = "";

    /// <summary>Most jobs to claim, 1–1000 (default 1). One claim brings at most 8 MiB of payloads (one job always).</summary>
    public int? Max { get; init; }

    /// <summary>
    /// How long to wait for a job when none is ready, in seconds: 0 (default, answer at once) up to
    /// <c>Conveyor:Runtimes:MaxClaimWait</c> (60 by default, 200 at most: Azure Functions cuts requests at 230 s).
    /// </summary>
    public double? WaitSeconds { get; init; }
}

/// <summary>The jobs a claim took (none when nothing became ready within the wait).</summary>
/// <param name="Jobs">The claimed jobs; ack, fail or extend each with its <c>claim</c>.</param>
/// <param name="ClaimTimeoutSeconds">A claim goes back to its queue this long after it was made or last extended (<c>Conveyor:Runtimes:ClaimTimeout</c>).</param>
public sealed record ClaimJobsResponse(IReadOnlyList<Conveyor.Queue.RuntimeJob> Jobs, double ClaimTimeoutSeconds);

/// <summary>Body of <c>POST /api/runtimes/{id}/claims/ack</c> and <c>…/claims/extend</c>.</summary>
public sealed record ClaimsRequest
{
    /// <summary>1 to 1,000 claim tokens, each once, as the claim answered them.</summary>
    [JsonRequired] public IReadOnlyList<string?> Claims { get; init; } = [];
}

/// <summary>Body of <c>POST /api/runtimes/{id}/claims/fail</c>.</summary>
public sealed record FailClaimsRequest
{
    /// <summary>1 to 1,000 failed claims, each once.</summary>
    [JsonRequired] public IReadOnlyList<ClaimFailureRequest?> Failures { get; init; } = [];
}

/// <summary>One failed claim.</summary>
public sealed record ClaimFailureRequest
{
    /// <summary>The claim token.</summary>
    [JsonRequired] public string Claim { get; init; } = "";

    /// <summary>What went wrong: kept as the job's <c>lastError</c> (at most 4,096 characters; longer is cut).</summary>
    [JsonRequired] public string Error { get; init; } = "";

    /// <summary>True (default): another attempt after a backoff, while it has attempts left. False: to the dead set now.</summary>
    public bool? Retry { get; init; }
}

/// <summary>Per-claim outcomes, in request order: a claim the runtime no longer holds is <c>lost</c> and nothing changed for it.</summary>
public sealed record ClaimResultsResponse(IReadOnlyList<Conveyor.Queue.ClaimResult> Results);

/// <summary>Whether the backing stores answer, and what the stale sweeper last decided (null when Redis did not answer).</summary>
public sealed record HealthResponse(string Status, IReadOnlyDictionary<string, string> Checks, PresenceHealth? Presence);

/// <summary>
/// Request JSON, strict: camelCase names matched exactly (<c>Type</c> is not <c>type</c>), unknown members, duplicate
/// properties (anywhere in the body, payloads included) and numbers sent as strings refused, and <c>null</c> refused
/// where the model does not allow it.
/// </summary>
[JsonSourceGenerationOptions(
    JsonSerializerDefaults.Web,
    PropertyNameCaseInsensitive = false,
    AllowDuplicateProperties = false,
    RespectNullableAnnotations = true,
    NumberHandling = JsonNumberHandling.Strict,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(EnqueueJobRequest))]
[JsonSerializable(typeof(EnqueueBatchRequest))]
[JsonSerializable(typeof(EnqueueBatchResponse))]
[JsonSerializable(typeof(JobInfo))]
[JsonSerializable(typeof(EnqueueResult))]
[JsonSerializable(typeof(DeadJobsResponse))]
[JsonSerializable(typeof(QueueListResponse))]
[JsonSerializable(typeof(QueueStats))]
[JsonSerializable(typeof(QueueHistory))]
[JsonSerializable(typeof(RequeueResponse))]
[JsonSerializable(typeof(HealthResponse))]
[JsonSerializable(typeof(RegisterRuntimeRequest))]
[JsonSerializable(typeof(ClaimJobsRequest))]
[JsonSerializable(typeof(ClaimsRequest))]
[JsonSerializable(typeof(FailClaimsRequest))]
public sealed partial class ApiJson : JsonSerializerContext;
