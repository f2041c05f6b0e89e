using StackExchange.Redis;

namespace Conveyor.Queue;

/// <summary>
/// The Redis keys of one queue. Every key carries the <c>{queue}</c> hash tag, so every script of a
/// queue runs in one hash slot on clustered Redis.
/// </summary>
internal sealed class QueueKeys
{
    /// <summary>
    /// The registry: set of the queues timers visit (bounded by <c>Conveyor:Queue:MaxQueues</c>), plus a
    /// <see cref="DropMarker"/> for each queue the custodian is forgetting.
    /// </summary>
    public static readonly RedisKey Queues = "conveyor:queues";

    private const string DropPrefix = "!drop:";

    /// <summary>Registry member standing for <paramref name="queue"/> while the custodian drops it (no queue name starts with '!').</summary>
    public static string DropMarker(string queue) => DropPrefix + queue;

    /// <summary>A registry member's queue name, and whether it is a <see cref="DropMarker"/>.</summary>
    public static (string Queue, bool Dropping) ParseRegistryMember(string member) =>
        member.StartsWith(DropPrefix, StringComparison.Ordinal) ? (member[DropPrefix.Length..], true) : (member, false);

    public QueueKeys(string queue)
    {
        Queue = queue;
        var prefix = $"conveyor:{{{queue}}}:";
        Prefix = prefix;
        Jobs = prefix + "jobs";
        State = prefix + "state";
        Payloads = prefix + "payloads";
        Registered = prefix + "registered";
        Idle = prefix + "idle";
        Wake = prefix + "wake";
        Remote = prefix + "remote";
        Unserved = prefix + "unserved";
        Watch = prefix + "watch";
        Ready = prefix + "ready";
        Scheduled = prefix + "scheduled";
        Consumers = prefix + "consumers";
        Dead = prefix + "dead";
        Seq = prefix + "seq";
        Expiring = prefix + "expiring";
        History = prefix + "history";
        Signal = RedisChannel.Literal(prefix + "signal");
    }

    public string Queue { get; }
    public string Prefix { get; }

    /// <summary>Job id → record: header JSON (type, maxAttempts, traceParent, enqueuedAt), a newline, the raw payload; written once; see <see cref="JobRecord"/>.</summary>
    public RedisKey Jobs { get; }

    /// <summary>Job id → the small mutable state <c>attempt|maxAttempts|dueAt|lastError</c>.</summary>
    public RedisKey State { get; }

    /// <summary>Job id → payload, raw JSON, of jobs stored by the second layout only (claim joins them into their record); see <see cref="JobRecord"/>.</summary>
    public RedisKey Payloads { get; }

    /// <summary>Present while the queue is listed in <see cref="Queues"/>; enqueue writes nothing without it.</summary>
    public RedisKey Registered { get; }

    /// <summary>Since when (ms, Redis time) the custodian has seen the queue empty.</summary>
    public RedisKey Idle { get; }

    /// <summary>The wake slot: present while a post of wake-ups holds this interval (<c>SET NX PX</c>, see wake.lua).</summary>
    public RedisKey Wake { get; }

    /// <summary>
    /// When (ms, Redis time) a remote runtime last asked this queue for jobs (claim.lua): processors that serve every queue
    /// leave the queue to the runtimes. Dropped with the queue (idle_queue.lua).
    /// </summary>
    public RedisKey Remote { get; }

    /// <summary>Since when (ms, Redis time) the scheduler has seen the queue with ready jobs and no live consumer (see unserved.lua).</summary>
    public RedisKey Unserved { get; }

    /// <summary>The custodian's last visit and since when it has watched without a gap: <c>last|since</c> (ms, Redis time).</summary>
    public RedisKey Watch { get; }

    public RedisKey Ready { get; }
    public RedisKey Scheduled { get; }
    public RedisKey Consumers { get; }
    public RedisKey Dead { get; }
    public RedisKey Seq { get; }

    /// <summary>Runtime consumer id → its earliest lease deadline (ms, Redis time), or earlier: where the custodian looks for expired claims.</summary>
    public RedisKey Expiring { get; }

    /// <summary>
    /// Per-minute counters for the dashboard's chart: field <c>&lt;minute&gt;:&lt;e|p|f&gt;</c> (minute = Redis time ms / 60,000) → jobs
    /// enqueued, processed (acked) or failed (an attempt that ended in an error: its handler failed, or its consumer died or lost its
    /// lease). Written by the scripts that make those changes (<c>count</c> in <c>_lib.lua</c>), the last entry of their KEYS;
    /// fields older than <see cref="QueueHistory.KeptMinutes"/> minutes are dropped, and the queue's drop deletes the key.
    /// </summary>
    public RedisKey History { get; }

    /// <summary>Pub/sub channel that wakes idle processors when jobs become ready.</summary>
    public RedisChannel Signal { get; }

    /// <summary>The claims one consumer holds: job id → claim token.</summary>
    public RedisKey Inflight(string consumerId) => Prefix + "inflight:" + consumerId;

    /// <summary>The leases of one runtime consumer's claims: job id → deadline (ms, Redis time).</summary>
    public RedisKey Leases(string consumerId) => Prefix + "leases:" + consumerId;
}
