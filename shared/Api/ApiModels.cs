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

/// <summary>Whether the backing stores answer.</summary>
public sealed record HealthResponse(string Status, IReadOnlyDictionary<string, string> Checks);

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
[JsonSerializable(typeof(RequeueResponse))]
[JsonSerializable(typeof(HealthResponse))]
[JsonSerializable(typeof(RegisterRuntimeRequest))]
public sealed partial class ApiJson : JsonSerializerContext;
