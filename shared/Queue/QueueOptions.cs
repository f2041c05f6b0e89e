using System.ComponentModel.DataAnnotations;

namespace Conveyor.Queue;

/// <summary>What producers may enqueue, and how failed jobs come back. Section <c>Conveyor:Queue</c>.</summary>
public sealed class QueueOptions
{
    public const string Section = "Conveyor:Queue";

    /// <summary>Largest payload accepted, in bytes of UTF-8 JSON. Default: 256 KiB. Bounds: 1 B to 16 MiB.</summary>
    [Range(1, 16 * 1024 * 1024)]
    public int MaxPayloadBytes { get; set; } = 256 * 1024;

    /// <summary>Attempts a job gets when the producer names none. Default: 20. Bounds: 1 to 1000.</summary>
    [Range(1, 1000)]
    public int DefaultMaxAttempts { get; set; } = 20;

    /// <summary>Cap of the retry delay before jitter for the first retry; it doubles per attempt. Default: 1 s. Bounds: 1 ms to 1 h.</summary>
    [Range(typeof(TimeSpan), "00:00:00.001", "01:00:00")]
    public TimeSpan RetryBaseDelay { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Longest retry delay. Default: 7 days. Bounds: 1 s to 30 days.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "30.00:00:00")]
    public TimeSpan MaxBackoff { get; set; } = TimeSpan.FromDays(7);

    /// <summary>
    /// Most queues the registry lists (every timer pass visits each). Enqueueing to a new queue beyond it is refused
    /// (<see cref="ConveyorQueueLimitException"/>, HTTP 409) until the custodian drops queues that stayed empty.
    /// Default: 1,000. Bounds: 1 to 100,000.
    /// </summary>
    [Range(1, 100_000)]
    public int MaxQueues { get; set; } = 1000;

    /// <summary>
    /// A queue with ready jobs and no live consumer for this long is reported unserved (a warning log, the metric
    /// <c>conveyor.queue.unserved</c>, <c>unservedSince</c> in <c>GET /api/queues</c>): nothing processes it, e.g. no
    /// processor lists it in <c>Conveyor:Processor:Queues</c>. The scheduler checks on each pass. Default: 1 min.
    /// Bounds: 1 s to 1 day.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan UnservedAfter { get; set; } = TimeSpan.FromMinutes(1);
}

/// <summary>How processors claim and run jobs. Section <c>Conveyor:Processor</c>.</summary>
public sealed class ProcessorOptions
{
    public const string Section = "Conveyor:Processor";

    /// <summary>Stands for every known queue in <see cref="Queues"/>.</summary>
    public const string AllQueues = "*";

    /// <summary>
    /// Queues a processor serves, one session each. <c>*</c> (or nothing) is every known queue: the registry, which lists
    /// a queue from its first job; a long-running host (the self-host) picks up new queues as they appear, a bounded
    /// session (Functions timer) serves those with ready jobs. Default: every known queue.
    /// </summary>
    public string[] Queues { get; set; } = [];

    /// <summary>
    /// A bounded session (the Functions timer's, or one a wake-up starts) ends after finding nothing to claim, with no
    /// job in hand, for this long: an idle app runs no session, so it can scale to zero. Default: 10 s. Bounds: 100 ms to
    /// 10 min; at least <see cref="IdlePollInterval"/> and at most <see cref="SessionDuration"/>. A session of the
    /// self-host runs until it stops, whatever this says.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00.1", "00:10:00")]
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Whether <see cref="Queues"/> means every known queue (empty, or <c>*</c>).</summary>
    public bool ServesEveryQueue => Queues.Length == 0 || Queues.Contains(AllQueues);

    /// <summary>Handlers running at once, per queue. Default: 16. Bounds: 1 to 1024.</summary>
    [Range(1, 1024)]
    public int Concurrency { get; set; } = 16;

    /// <summary>
    /// Jobs claimed per script call, and claimed jobs held beyond those running. Default: 16. Bounds: 1 to 1000.
    /// Higher raises throughput; claimed jobs wait here invisible to other processors.
    /// </summary>
    [Range(1, 1000)]
    public int Prefetch { get; set; } = 16;

    /// <summary>A handler's token is cancelled after this long and the job fails. Default: 5 min. Bounds: 1 ms to 1 day.</summary>
    [Range(typeof(TimeSpan), "00:00:00.001", "1.00:00:00")]
    public TimeSpan JobTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>How often a processor heartbeats (Redis time). Default: 5 s. Bounds: 100 ms to 1 min.</summary>
    [Range(typeof(TimeSpan), "00:00:00.1", "00:01:00")]
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>When idle, poll this often even without a pub/sub wake-up. Default: 1 s. Bounds: 10 ms to 1 min.</summary>
    [Range(typeof(TimeSpan), "00:00:00.01", "00:01:00")]
    public TimeSpan IdlePollInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>At the end of a session, running handlers get this long to finish before their token is cancelled. Default: 30 s. Bounds: 0 to 1 h.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "01:00:00")]
    public TimeSpan ShutdownGrace { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Length of one bounded session (the Functions timer host runs one per tick). Default: 4 min 30 s.
    /// Bounds: 1 s to 1 day. Keep it plus <see cref="ShutdownGrace"/> below the host's functionTimeout.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan SessionDuration { get; set; } = TimeSpan.FromSeconds(270);

    /// <summary>
    /// Most acks (or retries, or kills) sent in one script call; a call also carries at most 256 KiB of payloads freed or
    /// error text. Default: 500. Bounds: 1 to 500 (a call stays within a few milliseconds).
    /// </summary>
    [Range(1, 500)]
    public int CompletionBatchSize { get; set; } = 500;
}

/// <summary>
/// How remote runtimes claim jobs over HTTP. Section <c>Conveyor:Runtimes</c>. A runtime's claims live as long as it is
/// online (its presence: <c>Conveyor:Presence</c>), and each one at most <see cref="ClaimTimeout"/> past its claim or
/// its last extension.
/// </summary>
public sealed class RuntimeOptions
{
    public const string Section = "Conveyor:Runtimes";

    /// <summary>
    /// A claim that is not acked, failed or extended this long after it was made (or last extended) goes back to its
    /// queue at the custodian's next pass, counting an attempt, even while its runtime keeps beating. Default: 5 min.
    /// Bounds: 1 s to 1 day.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan ClaimTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Longest <c>waitSeconds</c> a claim may ask for. Default: 60 s. Bounds: 0 to 200 s: on Azure Functions the front
    /// end cuts any HTTP request after 230 s whatever <c>functionTimeout</c> says, so the wait, the claim and the answer
    /// must fit well inside that; proxies with shorter idle timeouts need a lower value.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:03:20")]
    public TimeSpan MaxClaimWait { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// A waiting claim tries again this often even without a pub/sub wake-up (pub/sub delivers at most once, and not
    /// while the connection is re-established). Default: 1 s. Bounds: 10 ms to 1 min.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00.01", "00:01:00")]
    public TimeSpan IdlePollInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Queues only remote runtimes serve: an in-app processor that serves every queue (<c>Conveyor:Processor:Queues</c>
    /// empty or <c>*</c>) never claims from them, and enqueues to them post no wake-ups. Without this, such a processor
    /// leaves a queue alone from the first time a runtime asks it for jobs; list the queue here when jobs may reach it
    /// before that (a new queue, or one forgotten after <c>Conveyor:Custodian:EmptyQueueRetention</c>). A processor
    /// that names a queue in <c>Conveyor:Processor:Queues</c> serves it anyway. Default: none.
    /// </summary>
    public string[] Queues { get; set; } = [];
}

/// <summary>How the scheduler promotes due jobs. Section <c>Conveyor:Scheduler</c>.</summary>
public sealed class SchedulerOptions
{
    public const string Section = "Conveyor:Scheduler";

    /// <summary>Jobs promoted per script call. Default: 1000. Bounds: 1 to 5000 (a call stays in single-digit milliseconds).</summary>
    [Range(1, 5000)]
    public int BatchSize { get; set; } = 1000;
}

/// <summary>How the custodian finds dead consumers and trims the dead set. Section <c>Conveyor:Custodian</c>.</summary>
public sealed class CustodianOptions
{
    public const string Section = "Conveyor:Custodian";

    /// <summary>A consumer whose heartbeat is older than this is dead. Default: 30 s. Bounds: 1 s to 1 day; keep it well above the processor heartbeat interval.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan ConsumerTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Claims recovered (or dead jobs trimmed) per script call; a trim also frees at most 8 MiB of payloads per call.
    /// Default: 500. Bounds: 1 to 500 (a call stays within a few milliseconds).
    /// </summary>
    [Range(1, 500)]
    public int BatchSize { get; set; } = 500;

    /// <summary>Most dead jobs kept per queue. Default: 10,000. Bounds: 0 to 10,000,000.</summary>
    [Range(0, 10_000_000)]
    public int DeadMaxCount { get; set; } = 10_000;

    /// <summary>Oldest dead job kept. Default: 30 days. Bounds: 1 min to 3650 days.</summary>
    [Range(typeof(TimeSpan), "00:01:00", "3650.00:00:00")]
    public TimeSpan DeadMaxAge { get; set; } = TimeSpan.FromDays(30);

    /// <summary>
    /// A queue without jobs (in any state) and without consumers this long is dropped from the registry; its next
    /// enqueue lists it again. Default: 1 day. Bounds: 1 min to 3650 days.
    /// </summary>
    [Range(typeof(TimeSpan), "00:01:00", "3650.00:00:00")]
    public TimeSpan EmptyQueueRetention { get; set; } = TimeSpan.FromDays(1);
}
