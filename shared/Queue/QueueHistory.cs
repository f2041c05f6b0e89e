using System.Globalization;
using StackExchange.Redis;

namespace Conveyor.Queue;

/// <summary>
/// One queue's jobs per minute over the last <see cref="Minutes"/> minutes of Redis time, oldest minute first; the last
/// minute is the current one, still counting. <b>Enqueued</b>: jobs written by an enqueue (a duplicate id is not).
/// <b>Processed</b>: jobs acked. <b>Failed</b>: attempts that ended in an error: the handler threw or timed out (retried
/// or dead), or the consumer holding the job died or its runtime lost the claim (recovered or released, the attempt counts).
/// </summary>
/// <param name="Queue">The queue.</param>
/// <param name="From">The start of the first minute.</param>
/// <param name="Enqueued">Jobs enqueued per minute.</param>
/// <param name="Processed">Jobs acked per minute.</param>
/// <param name="Failed">Failed attempts per minute.</param>
public sealed record QueueHistory(
    string Queue, DateTimeOffset From, IReadOnlyList<long> Enqueued, IReadOnlyList<long> Processed, IReadOnlyList<long> Failed)
{
    /// <summary>Minutes read and shown (60: the last hour, the current minute included).</summary>
    public const int Minutes = 60;

    /// <summary>
    /// Minutes the counters are kept: <c>HISTORY_MINUTES</c> in <c>_lib.lua</c> (62: the hour shown plus a margin). Older
    /// fields are dropped by the first write of a later minute; a queue with no write for that long loses the key (expiry).
    /// </summary>
    internal const int KeptMinutes = 62;

    /// <summary>Jobs enqueued over the whole window.</summary>
    public long TotalEnqueued => Enqueued.Sum();

    /// <summary>Jobs acked over the whole window.</summary>
    public long TotalProcessed => Processed.Sum();

    /// <summary>Failed attempts over the whole window.</summary>
    public long TotalFailed => Failed.Sum();

    /// <summary>Reads the window ending at the Redis minute of <paramref name="nowMs"/>: one HMGET of 3 × <see cref="Minutes"/> fields.</summary>
    internal static async Task<QueueHistory> ReadAsync(IDatabaseAsync db, QueueKeys keys, long nowMs)
    {
        var first = nowMs / 60_000 - (Minutes - 1);
        var kinds = new[] { "e", "p", "f" };
        var fields = kinds.SelectMany(kind => Enumerable.Range(0, Minutes)
            .Select(i => (RedisValue)((first + i).ToString(CultureInfo.InvariantCulture) + ":" + kind))).ToArray();
        var values = await db.HashGetAsync(keys.History, fields);
        long[] Series(int k) => [.. Enumerable.Range(0, Minutes).Select(i => values[k * Minutes + i].TryParse(out long n) ? n : 0)];
        return new QueueHistory(keys.Queue, DateTimeOffset.FromUnixTimeMilliseconds(first * 60_000), Series(0), Series(1), Series(2));
    }
}
