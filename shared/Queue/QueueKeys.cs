using StackExchange.Redis;

namespace Conveyor.Queue;

/// <summary>
/// The Redis keys of one queue. Every key carries the <c>{queue}</c> hash tag, so every script of a
/// queue runs in one hash slot on clustered Redis.
/// </summary>
internal sealed class QueueKeys
{
    /// <summary>Set of every queue that ever received a job; timers visit each of them.</summary>
    public static readonly RedisKey Queues = "conveyor:queues";

    public QueueKeys(string queue)
    {
        Queue = queue;
        var prefix = $"conveyor:{{{queue}}}:";
        Prefix = prefix;
        Jobs = prefix + "jobs";
        Ready = prefix + "ready";
        Scheduled = prefix + "scheduled";
        Consumers = prefix + "consumers";
        Dead = prefix + "dead";
        Seq = prefix + "seq";
        Signal = RedisChannel.Literal(prefix + "signal");
    }

    public string Queue { get; }
    public string Prefix { get; }
    public RedisKey Jobs { get; }
    public RedisKey Ready { get; }
    public RedisKey Scheduled { get; }
    public RedisKey Consumers { get; }
    public RedisKey Dead { get; }
    public RedisKey Seq { get; }

    /// <summary>Pub/sub channel that wakes idle processors when jobs become ready.</summary>
    public RedisChannel Signal { get; }

    /// <summary>The claims one consumer holds: job id → claim token.</summary>
    public RedisKey Inflight(string consumerId) => Prefix + "inflight:" + consumerId;
}
