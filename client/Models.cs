using System.Text.Json;
using System.Text.Json.Serialization;

namespace Conveyor.Client;

/// <summary>A job to enqueue. Build one with <see cref="Of{T}"/> to serialise a payload, or give the JSON as a <see cref="JsonElement"/>.</summary>
/// <param name="Type">The handler name: <c>^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$</c>.</param>
/// <param name="Payload">Any JSON value.</param>
public sealed record NewJob(string Type, JsonElement Payload)
{
    /// <summary>
    /// The idempotency key: 1–128 of <c>A-Z a-z 0-9 . _ ~ -</c>, starting and ending with a letter or digit. When none is
    /// given, the client makes a UUIDv7 before the first try, so every try (and a retry after a 503) sends the same id.
    /// </summary>
    public string? Id { get; init; }

    /// <summary>Run after this delay (counted on the server's clock). Excludes <see cref="RunAt"/>.</summary>
    public TimeSpan? Delay { get; init; }

    /// <summary>Run no earlier than this instant, at most 365 days ahead. Excludes <see cref="Delay"/>.</summary>
    public DateTimeOffset? RunAt { get; init; }

    /// <summary>Runs the job gets in all, 1–1000 (default: the server's <c>Conveyor:Queue:DefaultMaxAttempts</c>).</summary>
    public int? MaxAttempts { get; init; }

    /// <summary>A job whose payload is <paramref name="payload"/> serialised with <paramref name="options"/> (default: web defaults, camelCase).</summary>
    public static NewJob Of<T>(string type, T payload, JsonSerializerOptions? options = null) =>
        new(type, JsonSerializer.SerializeToElement(payload, options ?? JsonSerializerOptions.Web));
}

/// <summary>Where a job is in its life. An acked job is gone.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<JobState>))]
public enum JobState
{
    /// <summary>Waiting for its due time (delayed, or a retry after a backoff).</summary>
    [JsonStringEnumMemberName("scheduled")]
    Scheduled,

    /// <summary>Ready, waiting to be claimed.</summary>
    [JsonStringEnumMemberName("ready")]
    Ready,

    /// <summary>Claimed by a processor or a runtime.</summary>
    [JsonStringEnumMemberName("running")]
    Running,

    /// <summary>Out of attempts (or failed for good): in the dead set.</summary>
    [JsonStringEnumMemberName("dead")]
    Dead,
}

/// <summary>What an enqueue did.</summary>
/// <param name="Id">The job's id.</param>
/// <param name="State">Its state now; for a duplicate, the existing job's (null when it finished meanwhile).</param>
/// <param name="Duplicate">True when a job with this id existed and nothing was added (a retry that the first try already did, say).</param>
public sealed record EnqueueResult(string Id, JobState? State, bool Duplicate);

/// <summary>A stored job.</summary>
public sealed record JobInfo(
    string Id,
    string Queue,
    JobState State,
    string Type,
    JsonElement Payload,
    int Attempts,
    int MaxAttempts,
    DateTimeOffset EnqueuedAt,
    DateTimeOffset DueAt,
    string? LastError,
    DateTimeOffset? DiedAt,
    string? TraceParent);

/// <summary>Counts of one queue.</summary>
public sealed record QueueStats(string Queue, long Ready, long Scheduled, long Running, long Dead, long Consumers);

/// <summary>A queue's last hour, per minute of the server's Redis time from <paramref name="From"/>, the current minute last.</summary>
/// <param name="Queue">The queue.</param>
/// <param name="From">The start of the first minute.</param>
/// <param name="Enqueued">Jobs enqueued per minute (a duplicate id does not count).</param>
/// <param name="Processed">Jobs acked per minute.</param>
/// <param name="Failed">Attempts that ended in an error per minute (a handler failed, or its consumer died or lost the claim).</param>
/// <param name="TotalEnqueued">Jobs enqueued over the hour.</param>
/// <param name="TotalProcessed">Jobs acked over the hour.</param>
/// <param name="TotalFailed">Failed attempts over the hour.</param>
public sealed record QueueHistory(
    string Queue, DateTimeOffset From, IReadOnlyList<long> Enqueued, IReadOnlyList<long> Processed, IReadOnlyList<long> Failed,
    long TotalEnqueued, long TotalProcessed, long TotalFailed);

/// <summary>A page of dead jobs, most recent death first.</summary>
public sealed record DeadJobsPage(IReadOnlyList<JobInfo> Jobs, int Page, int PageSize);

/// <summary>A runtime's identity: its id and the secret token its beats and claims present. Store both to reuse them.</summary>
/// <param name="Id">The runtime's id.</param>
/// <param name="Token">Its secret token (the server keeps only a hash: it cannot be read back).</param>
public sealed record RuntimeCredentials(Guid Id, string Token);

/// <summary>A runtime as the server reports it.</summary>
public sealed record RuntimeInfo(Guid Id, string Name, string Status, DateTimeOffset? LastSeenAt, DateTimeOffset CreatedAt, JsonElement Metadata);

/// <summary>What a heartbeat did.</summary>
/// <param name="Outcome"><c>buffered</c> or <c>synchronous</c>.</param>
/// <param name="FlippedOnline">True when this beat brought the runtime online.</param>
/// <param name="SeenAt">The beat's time on the server's clock.</param>
/// <param name="BeatIntervalSeconds">When to beat next.</param>
public sealed record HeartbeatResult(string Outcome, bool FlippedOnline, DateTimeOffset? SeenAt, double BeatIntervalSeconds)
{
    /// <summary><see cref="BeatIntervalSeconds"/> as a time span.</summary>
    [JsonIgnore]
    public TimeSpan BeatInterval => TimeSpan.FromSeconds(BeatIntervalSeconds);
}

/// <summary>A job claimed by a runtime.</summary>
/// <param name="Id">The job's id (stable across runs: use it to make effects idempotent).</param>
/// <param name="Queue">Its queue.</param>
/// <param name="Type">Its type.</param>
/// <param name="Payload">Its payload.</param>
/// <param name="Attempt">This run's number, 1 on the first run.</param>
/// <param name="MaxAttempts">Runs it gets in all.</param>
/// <param name="EnqueuedAt">When it was enqueued.</param>
/// <param name="Claim">The claim token to ack, fail or extend it with.</param>
/// <param name="ClaimExpiresAt">The claim goes back to the queue after this (server clock) unless extended.</param>
/// <param name="TraceParent">The producer's W3C trace parent.</param>
public sealed record ClaimedJob(
    string Id,
    string Queue,
    string Type,
    JsonElement Payload,
    int Attempt,
    int MaxAttempts,
    DateTimeOffset EnqueuedAt,
    string Claim,
    DateTimeOffset ClaimExpiresAt,
    string? TraceParent)
{
    /// <summary>True on the job's last attempt.</summary>
    [JsonIgnore]
    public bool IsLastAttempt => Attempt >= MaxAttempts;

    /// <summary>The payload deserialised (web defaults unless <paramref name="options"/> say otherwise).</summary>
    public T? PayloadAs<T>(JsonSerializerOptions? options = null) => Payload.Deserialize<T>(options ?? JsonSerializerOptions.Web);
}

/// <summary>The jobs one claim took, and how long a claim lives without an extension.</summary>
public sealed record ClaimedJobs(IReadOnlyList<ClaimedJob> Jobs, double ClaimTimeoutSeconds)
{
    /// <summary><see cref="ClaimTimeoutSeconds"/> as a time span.</summary>
    [JsonIgnore]
    public TimeSpan ClaimTimeout => TimeSpan.FromSeconds(ClaimTimeoutSeconds);
}

/// <summary>What became of one claim.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ClaimOutcome>))]
public enum ClaimOutcome
{
    /// <summary>Acked: the job is done and gone.</summary>
    [JsonStringEnumMemberName("acked")]
    Acked,

    /// <summary>Scheduled for another attempt after a backoff.</summary>
    [JsonStringEnumMemberName("retried")]
    Retried,

    /// <summary>In the dead set (out of attempts, or failed without retry).</summary>
    [JsonStringEnumMemberName("dead")]
    Dead,

    /// <summary>Extended: see <see cref="ClaimResult.ClaimExpiresAt"/>.</summary>
    [JsonStringEnumMemberName("extended")]
    Extended,

    /// <summary>
    /// The runtime no longer holds the claim (it expired, the runtime went offline, or the job moved on): nothing changed.
    /// After a request that was retried, it can also mean the first try already settled it.
    /// </summary>
    [JsonStringEnumMemberName("lost")]
    Lost,
}

/// <summary>One claim's outcome.</summary>
public sealed record ClaimResult(string Claim, ClaimOutcome Outcome, DateTimeOffset? ClaimExpiresAt = null);

/// <summary>A claimed job that failed.</summary>
/// <param name="Claim">Its claim token.</param>
/// <param name="Error">What went wrong (kept as its lastError, at most 4,096 characters).</param>
/// <param name="Retry">True: another attempt after a backoff while it has attempts left. False: to the dead set now.</param>
public sealed record ClaimFailure(string Claim, string Error, bool Retry = true);

internal sealed record EnqueueBody(string Type, JsonElement Payload, string Id, DateTimeOffset? RunAt, double? DelaySeconds, int? MaxAttempts);

internal sealed record EnqueueBatchBody(IReadOnlyList<EnqueueBody> Jobs);

internal sealed record EnqueueBatchResults(IReadOnlyList<EnqueueResult> Results);

internal sealed record QueueList(IReadOnlyList<QueueStats> Queues);

internal sealed record RequeueCount(long Requeued);

internal sealed record RegisterBody(string Name, JsonElement? Metadata);

internal sealed record ClaimBody(string Queue, int Max, double WaitSeconds);

internal sealed record ClaimsBody(IReadOnlyList<string> Claims);

internal sealed record FailBody(IReadOnlyList<ClaimFailure> Failures);

internal sealed record ClaimResults(IReadOnlyList<ClaimResult> Results);
