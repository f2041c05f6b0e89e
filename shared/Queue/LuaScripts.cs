using System.Reflection;
using StackExchange.Redis;

namespace Conveyor.Queue;

/// <summary>
/// The queue's Lua scripts, embedded from <c>Queue/Lua/*.lua</c>. StackExchange.Redis loads each
/// script once per server (SCRIPT LOAD) and then runs it by SHA (EVALSHA).
/// </summary>
internal static class LuaScripts
{
    public static readonly RedisScript Enqueue = Load("enqueue");
    public static readonly RedisScript Beat = Load("beat");
    public static readonly RedisScript Claim = Load("claim");
    public static readonly RedisScript Ack = Load("ack");
    public static readonly RedisScript Retry = Load("retry");
    public static readonly RedisScript Kill = Load("kill");
    public static readonly RedisScript ReturnUnstarted = Load("return_unstarted");
    public static readonly RedisScript Deregister = Load("deregister");
    public static readonly RedisScript Promote = Load("promote");
    public static readonly RedisScript Wake = Load("wake");
    public static readonly RedisScript Unserved = Load("unserved");
    public static readonly RedisScript Watch = Load("watch");
    public static readonly RedisScript Recover = Load("recover");
    public static readonly RedisScript RequeueDead = Load("requeue_dead");
    public static readonly RedisScript DeleteDead = Load("delete_dead");
    public static readonly RedisScript TrimDead = Load("trim_dead");
    public static readonly RedisScript IdleQueue = Load("idle_queue");
    public static readonly RedisScript Extend = Load("extend");
    public static readonly RedisScript WatchRuntimes = Load("watch_runtimes");
    public static readonly RedisScript Release = Load("release");
    public static readonly RedisScript Peek = Load("peek");

    /// <summary>The one script on the registry <c>conveyor:queues</c> (its own hash slot, no queue's).</summary>
    public static readonly RedisScript RegisterQueue = Load("register_queue");

    /// <summary>
    /// Bytes of payload freed, or of error text passed, by one completion script call (256 KiB; one job always fits): a
    /// call's time grows with both (about 30 µs per 256 KiB payload freed, 8 µs per 1 KiB of error text), so batches are
    /// cut by this as well as by their count, and a call stays in single-digit milliseconds whatever the jobs hold.
    /// </summary>
    public const int CallBudgetBytes = 256 * 1024;

    /// <summary>Cuts <paramref name="items"/> into runs of at most <paramref name="maxCount"/> items and <see cref="CallBudgetBytes"/> bytes (at least one item each).</summary>
    public static IEnumerable<List<T>> Calls<T>(IReadOnlyList<T> items, int maxCount, Func<T, int> bytes)
    {
        var call = new List<T>();
        var size = 0;
        foreach (var item in items)
        {
            var weight = bytes(item);
            if (call.Count > 0 && (call.Count == maxCount || size + weight > CallBudgetBytes))
            {
                yield return call;
                call = [];
                size = 0;
            }
            call.Add(item);
            size += weight;
        }
        if (call.Count > 0)
        {
            yield return call;
        }
    }

    /// <summary>Every script on one queue's keys, for tests that check them all.</summary>
    public static IReadOnlyList<RedisScript> All { get; } =
    [
        Wake, Unserved,
        Enqueue, Beat, Claim, Ack, Retry, Kill, ReturnUnstarted, Deregister, Promote, Watch, Recover, RequeueDead, DeleteDead, TrimDead, IdleQueue,
        Extend, WatchRuntimes, Release, Peek,
    ];

    /// <summary>
    /// The embedded script <c>Conveyor.{area}.Lua.{name}.lua</c> (areas: Queue, Presence). Queue scripts start with
    /// <c>Queue/Lua/_lib.lua</c>: the helpers they share (Redis time, chunked writes, the job state format).
    /// </summary>
    internal static RedisScript Load(string name, string area = "Queue")
    {
        var source = Read($"Conveyor.{area}.Lua.{name}.lua");
        return new RedisScript(name, area == "Queue" ? Read("Conveyor.Queue.Lua._lib.lua") + source : source);
    }

    private static string Read(string resource)
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream(resource)
            ?? throw new InvalidOperationException($"Embedded script {resource} is missing");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}

/// <summary>One Lua script: its verb and source.</summary>
internal sealed record RedisScript(string Name, string Source)
{
    /// <summary>Observes every call's KEYS (tests prove they share one hash slot).</summary>
    internal static Action<RedisScript, RedisKey[]>? KeysObserver { get; set; }

    public Task<RedisResult> RunAsync(IDatabaseAsync db, RedisKey[] keys, RedisValue[] args)
    {
        KeysObserver?.Invoke(this, keys);
        return db.ScriptEvaluateAsync(Source, keys, args);
    }
}
