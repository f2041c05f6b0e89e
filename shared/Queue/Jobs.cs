using System.Text.Json.Serialization;

namespace Conveyor.Queue;

/// <summary>Where a job is in its life. A job that was acked is gone: lookups find nothing.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<JobState>))]
public enum JobState
{
    /// <summary>Waiting for its due time (delayed, or a retry after a backoff).</summary>
    [JsonStringEnumMemberName("scheduled")]
    Scheduled,

    /// <summary>In the ready list, waiting for a processor.</summary>
    [JsonStringEnumMemberName("ready")]
    Ready,

    /// <summary>Claimed by a processor.</summary>
    [JsonStringEnumMemberName("running")]
    Running,

    /// <summary>Out of attempts (or without a handler); kept in the dead set until requeued, deleted or trimmed.</summary>
    [JsonStringEnumMemberName("dead")]
    Dead,
}

/// <summary>A job to enqueue.</summary>
/// <param name="Type">Handler name: <c>^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$</c>.</param>
/// <param name="Payload">The job's input as JSON text, at most <c>MaxPayloadBytes</c>.</param>
public sealed record JobRequest(string Type, string Payload)
{
    /// <summary>
    /// Idempotency key: 1 to 128 of <c>A-Z a-z 0-9 . _ ~ -</c>, starting and ending with a letter or digit (it travels in
    /// URL paths; see <see cref="JobValidation.NewJobId"/>). Default: a new UUIDv7.
    /// </summary>
    public string? Id { get; init; }

    /// <summary>Run no earlier than this instant (UTC), at most a year ahead. Excludes <see cref="Delay"/>.</summary>
    public DateTimeOffset? RunAt { get; init; }

    /// <summary>Run after this delay, counted on Redis time. Excludes <see cref="RunAt"/>.</summary>
    public TimeSpan? Delay { get; init; }

    /// <summary>Executions allowed before the job goes dead: 1 to 1000. Default: <c>Conveyor:Queue:DefaultMaxAttempts</c> (20).</summary>
    public int? MaxAttempts { get; init; }
}

/// <summary>What an enqueue did.</summary>
/// <param name="Id">The job's id (generated when the request had none).</param>
/// <param name="State">The job's state now; for a duplicate, the existing job's state (null when it finished meanwhile).</param>
/// <param name="Duplicate">True when a job with this id already existed and nothing was added.</param>
public sealed record EnqueueResult(string Id, JobState? State, bool Duplicate);

/// <summary>A job as a handler sees it.</summary>
public sealed record Job(
    string Id,
    string Queue,
    string Type,
    string Payload,
    int Attempt,
    int MaxAttempts,
    DateTimeOffset EnqueuedAt)
{
    /// <summary>True when this is the last attempt the job gets.</summary>
    public bool IsLastAttempt => Attempt >= MaxAttempts;
}

/// <summary>A stored job, as lookups and the dead set report it.</summary>
public sealed record JobInfo(
    string Id,
    string Queue,
    JobState State,
    string Type,
    [property: JsonConverter(typeof(RawJsonConverter))] string Payload,
    int Attempts,
    int MaxAttempts,
    DateTimeOffset EnqueuedAt,
    DateTimeOffset DueAt,
    string? LastError,
    DateTimeOffset? DiedAt,
    string? TraceParent);

/// <summary>Counts of one queue, read in one round trip (not one atomic snapshot).</summary>
public sealed record QueueStats(string Queue, long Ready, long Scheduled, long Running, long Dead, long Consumers)
{
    /// <summary>
    /// Since when the queue has had ready jobs and no live consumer, once that has lasted
    /// <see cref="QueueOptions.UnservedAfter"/> (the scheduler watches); null while something serves it.
    /// </summary>
    public DateTimeOffset? UnservedSince { get; init; }
}

/// <summary>Runs jobs of one type. Register with <c>AddJobHandler&lt;T&gt;("type")</c>; resolved per job in its own scope.</summary>
public interface IJobHandler
{
    /// <summary>Does the work. Returning completes the job; throwing retries it (or kills it on the last attempt).</summary>
    /// <param name="job">The job.</param>
    /// <param name="cancellationToken">Cancelled at the job timeout and when the processor stops.</param>
    Task HandleAsync(Job job, CancellationToken cancellationToken);
}
