using Conveyor.Queue;
using Npgsql;
using StackExchange.Redis;

namespace Conveyor.Storage;

/// <summary>
/// The one retry policy of Conveyor's long-lived loops: which failures a loop outlives, and how long it waits before
/// trying again. Everything else surfaces.
/// </summary>
internal static class Transient
{
    private static readonly TimeSpan FirstDelay = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan Floor = TimeSpan.FromMilliseconds(20);

    /// <summary>Longest wait between two tries, unless a caller bounds it lower.</summary>
    public static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(2);

    // Replies a Redis sends while it fails over, restarts or runs a long script: the next try may succeed.
    private static readonly string[] RedisBusyReplies = ["LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY", "CLUSTERDOWN"];

    /// <summary>
    /// A failure the next try may not see: a lost or refused connection, a timeout (<see cref="RedisTimeoutException"/>
    /// is a <see cref="TimeoutException"/>, not a <see cref="RedisException"/>), a Redis busy loading or failing over,
    /// a transient PostgreSQL error.
    /// </summary>
    public static bool Is(Exception exception) => exception switch
    {
        RedisConnectionException or TimeoutException => true,
        RedisServerException server => RedisBusyReplies.Any(reply => server.Message.StartsWith(reply, StringComparison.Ordinal)),
        NpgsqlException npgsql => npgsql.IsTransient,
        _ => false,
    };

    /// <summary>
    /// <see cref="Is"/>, or a cancelled task from a Redis call given no cancellation token of the caller's:
    /// StackExchange.Redis cancels a command it abandons (its connection failed while the command waited), which the next
    /// try may not see either (seen in CI: a session's reconcile read, while Redis held its replies, ended the session
    /// with a <see cref="TaskCanceledException"/>). Only for code whose calls pass no token of their own.
    /// </summary>
    public static bool IsRedis(Exception exception) => Is(exception) || exception is TaskCanceledException;

    /// <summary>Full-jitter exponential backoff after <paramref name="failures"/> failures in a row (1 or more), at most <paramref name="max"/>.</summary>
    public static TimeSpan Delay(int failures, TimeSpan? max = null)
    {
        var delay = Backoff.Delay(failures, FirstDelay, max ?? MaxDelay);
        return delay < Floor ? Floor : delay;
    }
}
