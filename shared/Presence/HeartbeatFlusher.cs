using System.Diagnostics;
using Conveyor.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;
using StackExchange.Redis;

namespace Conveyor.Presence;

/// <summary>What one flush did.</summary>
/// <param name="Flushed">Rows whose last_seen_at the flush wrote.</param>
/// <param name="Raced">Buffered runtimes no longer online in PostgreSQL (swept or deleted); they left the online set.</param>
/// <param name="Batches">UPDATE statements issued (one per batch).</param>
public sealed record FlushResult(long Flushed, long Raced, int Batches);

/// <summary>
/// Writes buffered beats to PostgreSQL, one UPDATE per bounded batch, and forgets them in Redis only after
/// the commit, and only those not beaten again meanwhile. A flush that fails or dies midway loses nothing:
/// the beats wait in Redis for the next one. Safe to run on many instances at once.
/// </summary>
public sealed class HeartbeatFlusher(NpgsqlDataSource dataSource, RedisConnection redis, IOptions<PresenceOptions> options, ILogger<HeartbeatFlusher> logger)
{
    // status = 'online' is load-bearing: a beat buffered before the sweeper (or a delete) won must not
    // bring the row back; that runtime's next beat does, through the synchronous path.
    // id = ANY($1) lets PostgreSQL fetch the batch's rows through the index; prepared (a generic plan), it
    // does, where a plan made for 5,000 literal ids reads and hashes the whole table for every batch.
    private const string FlushBatch = """
        UPDATE runtimes r SET last_seen_at = GREATEST(r.last_seen_at, b.seen)
        FROM unnest($1::uuid[], $2::timestamptz[]) AS b(id, seen)
        WHERE r.id = ANY($1::uuid[]) AND r.id = b.id AND r.status = 'online'
        RETURNING r.id
        """;

    /// <summary>
    /// Batches written at once, each in its own statement on its own connection, so PostgreSQL uses more than
    /// one core and the Redis round trips of one batch overlap the writes of the others.
    /// </summary>
    internal const int ConcurrentBatches = 4;

    /// <summary>Flushes every beat buffered before this call began, in batches of <see cref="PresenceOptions.FlushBatchSize"/>.</summary>
    public async Task<FlushResult> RunOnceAsync(CancellationToken cancellationToken)
    {
        using var activity = ConveyorTelemetry.Source.StartActivity("conveyor.heartbeat_flush.run");
        var batchSize = options.Value.FlushBatchSize;
        var window = (long)batchSize * ConcurrentBatches;
        var db = await redis.GetDatabaseAsync();
        // Beats newer than this wait for the next flush, so a flush ends even while runtimes keep beating.
        var upTo = await RedisTime.NowMsAsync(db);
        var started = Stopwatch.GetTimestamp();
        long flushed = 0, raced = 0;
        var batches = 0;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            // Settled beats leave the set, so every read starts from the oldest beat still waiting.
            var entries = await db.SortedSetRangeByScoreWithScoresAsync(
                PresenceKeys.Beats, double.NegativeInfinity, upTo, Exclude.None, Order.Ascending, 0, window);
            if (entries.Length == 0)
            {
                break;
            }
            // One read holds each runtime once, so the concurrent batches never touch the same row.
            var written = await Task.WhenAll(entries.Chunk(batchSize).Select(batch => FlushBatchAsync(db, batch, cancellationToken)));
            batches += written.Length;
            flushed += written.Sum();
            raced += entries.Length - written.Sum();
            if (entries.Length < window)
            {
                break;
            }
        }
        if (batches > 0)
        {
            ConveyorTelemetry.RowsFlushed.Add(flushed);
            ConveyorTelemetry.RowsRaced.Add(raced);
            ConveyorTelemetry.FlushDuration.Record(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            if (raced > 0)
            {
                logger.LogInformation("Heartbeat flush: {Raced} buffered runtimes were no longer online; their next beat brings them back", raced);
            }
        }
        return new FlushResult(flushed, raced, batches);
    }

    /// <summary>Writes one batch, then settles it in Redis; returns the rows written.</summary>
    private async Task<int> FlushBatchAsync(IDatabase db, SortedSetEntry[] entries, CancellationToken cancellationToken)
    {
        var (touched, written) = await WriteAsync(entries, cancellationToken);
        await SettleAsync(db, entries, touched);
        return written;
    }

    private async Task<(HashSet<Guid> Touched, int Written)> WriteAsync(SortedSetEntry[] entries, CancellationToken cancellationToken)
    {
        var ids = new List<Guid>(entries.Length);
        var seen = new List<DateTime>(entries.Length);
        foreach (var entry in entries)
        {
            // Only beat.lua writes this set, with ids from the online set; anything else is dropped as raced.
            if (Guid.TryParse(entry.Element.ToString(), out var id))
            {
                ids.Add(id);
                seen.Add(RedisTime.ToUtc((long)entry.Score));
            }
        }
        var touched = new HashSet<Guid>();
        if (ids.Count == 0)
        {
            return (touched, 0);
        }
        // In id order: flushers on other instances lock overlapping rows in the same order (no deadlock), and
        // the index and heap are walked in order.
        var idArray = ids.ToArray();
        var seenArray = seen.ToArray();
        Array.Sort(idArray, seenArray);
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = new NpgsqlCommand(FlushBatch, connection);
        command.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Uuid, Value = idArray });
        command.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.TimestampTz, Value = seenArray });
        // Prepared once per physical connection (Npgsql keeps it across pool reuse).
        await command.PrepareAsync(cancellationToken);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            touched.Add(reader.GetGuid(0));
        }
        return (touched, touched.Count);
    }

    private static async Task SettleAsync(IDatabase db, SortedSetEntry[] entries, HashSet<Guid> touched)
    {
        var args = new RedisValue[entries.Length * 3];
        for (var i = 0; i < entries.Length; i++)
        {
            var member = entries[i].Element;
            args[i * 3] = member;
            args[i * 3 + 1] = (long)entries[i].Score;
            args[i * 3 + 2] = Guid.TryParse(member.ToString(), out var id) && touched.Contains(id) ? 1 : 0;
        }
        await PresenceScripts.Settle.RunAsync(db, PresenceKeys.Both, args);
    }
}
