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
/// <param name="Raced">Buffered runtimes no longer online in PostgreSQL (swept or deleted); they left the online and seen hashes.</param>
/// <param name="Batches">UPDATE statements issued (one per batch).</param>
public sealed record FlushResult(long Flushed, long Raced, int Batches)
{
    /// <summary>The sum of two flushes' counts.</summary>
    public static FlushResult operator +(FlushResult a, FlushResult b) => new(a.Flushed + b.Flushed, a.Raced + b.Raced, a.Batches + b.Batches);
}

/// <summary>The steps of a flush, in order: a freeze, then read, write and settle for each batch.</summary>
internal enum FlushStep
{
    /// <summary>take.lua: stamp the beat intake, freeze the buffered beats (or find a frozen set left to drain) and its generation.</summary>
    Freeze,

    /// <summary>Read the next batch of the frozen set.</summary>
    Read,

    /// <summary>Write the batch to PostgreSQL (one UPDATE, committed).</summary>
    Write,

    /// <summary>forget.lua: record what the batch wrote, and remove it from the frozen set if its generation is still current.</summary>
    Settle,
}

/// <summary>
/// Writes buffered beats to PostgreSQL, one UPDATE per bounded batch. Only due beats are buffered for it: a runtime's
/// first beat once the last_seen_at PostgreSQL holds is a write window old (beat.lua); the others live in Redis's seen
/// hash only. A flush first stamps Conveyor's beat intake (the sweeper holds off after a gap), then freezes the buffered beats
/// (take.lua renames the live set to the flushing set, so new beats land in a fresh live set, and counts a new
/// generation), then writes the frozen set batch by batch and removes each batch from it only after its commit,
/// and only while the generation is still the one it read (forget.lua). A flush that fails or dies midway loses
/// nothing: the rest of the frozen set waits in Redis, and the next flush writes it first. Safe to run on many
/// instances at once: two flushes of one frozen set write some beats twice (GREATEST keeps that harmless), and a
/// flush that outlives its frozen set cannot remove beats a newer freeze holds.
/// </summary>
public sealed class HeartbeatFlusher(NpgsqlDataSource dataSource, RedisConnection redis, IOptions<PresenceOptions> options, ILogger<HeartbeatFlusher> logger)
{
    // status = 'online' is load-bearing: a beat buffered before the sweeper (or a delete) won must not
    // bring the row back; that runtime's next beat does, through the synchronous path.
    //
    // Every batch must get the same plan, whatever the statistics say: a nested loop that looks each beat's row
    // up in the primary key (5,000 probes, in id order, so rows are also locked in id order). Two things make
    // that the only cheap plan:
    // - a generic plan (GenericPlans, set for the batch's transaction only), which estimates unnest at 10 rows.
    //   A custom plan knows the 5,000 and may read and hash the whole table instead;
    // - 'online' as a parameter ($3), so the partial index runtimes_online_id (WHERE status = 'online') is out
    //   of the generic plan's reach. Its row estimate comes from the status statistics, which lag behind after
    //   many runtimes come online at once: believing the index nearly empty, the planner read all of it for
    //   every batch (100,000 rows hashed per batch), or joined 5,000 rows to 5,000 by rescanning the array
    //   (25 million comparisons, 6 s for one batch). Both were seen in the benchmark.
    private const string GenericPlans = "SET LOCAL plan_cache_mode = force_generic_plan";

    private const string FlushBatch = """
        UPDATE runtimes r SET last_seen_at = GREATEST(r.last_seen_at, b.seen)
        FROM unnest($1::uuid[], $2::timestamptz[]) AS b(id, seen)
        WHERE r.id = b.id AND r.status = $3
        RETURNING r.id
        """;

    /// <summary>
    /// Batches written at once, each in its own statement on its own connection, so PostgreSQL uses more than
    /// one core and the Redis round trips of one batch overlap the writes of the others.
    /// </summary>
    internal const int ConcurrentBatches = 4;

    /// <summary>Batches written at once: <see cref="ConcurrentBatches"/>; tests that step a flusher use 1.</summary>
    internal int Writers { get; set; } = ConcurrentBatches;

    /// <summary>
    /// Test seam: awaited before every step, so a test can hold one flusher between steps while another runs.
    /// Null (no wait) in production.
    /// </summary>
    internal Func<FlushStep, Task>? BeforeStep { get; set; }

    private Task StepAsync(FlushStep step) => BeforeStep?.Invoke(step) ?? Task.CompletedTask;

    /// <summary>
    /// Writes every beat buffered when this call began (and first any a failed flush left), in batches of
    /// <see cref="PresenceOptions.FlushBatchSize"/>. Beats arriving meanwhile wait for the next flush.
    /// </summary>
    public async Task<FlushResult> RunOnceAsync(CancellationToken cancellationToken)
    {
        using var activity = ConveyorTelemetry.Source.StartActivity("conveyor.heartbeat_flush.run");
        var db = await redis.GetDatabaseAsync();
        var started = Stopwatch.GetTimestamp();
        var result = new FlushResult(0, 0, 0);
        var intakeGapMs = (long)options.Value.IntakeGap.TotalMilliseconds;
        // Two passes at most: a frozen set left by a failed (or concurrent) flush, then the live beats.
        for (var pass = 0; pass < 2; pass++)
        {
            await StepAsync(FlushStep.Freeze);
            var taken = (RedisResult[])(await PresenceScripts.Take.RunAsync(db, PresenceKeys.ForTake, [intakeGapMs]))!;
            var (leftover, frozen, generation) = ((long)taken[0] == 1, (long)taken[1], (long)taken[2]);
            if (frozen == 0)
            {
                break;
            }
            result += await DrainAsync(db, frozen, generation, cancellationToken);
            if (!leftover)
            {
                break;
            }
        }
        if (result.Batches > 0)
        {
            ConveyorTelemetry.RowsFlushed.Add(result.Flushed);
            ConveyorTelemetry.RowsRaced.Add(result.Raced);
            ConveyorTelemetry.FlushDuration.Record(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            if (result.Raced > 0)
            {
                logger.LogInformation("Heartbeat flush: {Raced} buffered runtimes were no longer online; their next beat brings them back", result.Raced);
            }
        }
        return result;
    }

    /// <summary>
    /// Entries per Redis read and per removal. Arrays of 1,000 entries (about 40 KB) stay off the large object
    /// heap (85,000 bytes and up), which a flush of 5,000-entry arrays filled fast enough to force a full
    /// garbage collection on every flush.
    /// </summary>
    private const int RedisChunk = 1000;

    /// <summary>Reads of the frozen set in flight at once.</summary>
    private const int ReadsInFlight = 16;

    /// <summary>
    /// Writes the frozen set of <paramref name="generation"/> (about <paramref name="frozen"/> entries): reads all of it,
    /// sorts it by runtime id, then writes it in id order, <see cref="Writers"/> batches at a time.
    /// </summary>
    /// <remarks>
    /// Id order across the whole set, not only within a batch, is what keeps a flush of a big table cheap. The frozen set
    /// is ordered by beat time, which has nothing to do with where rows live, so a batch read in that order touches
    /// about as many table and index pages as it has rows; the same rows in id order (ids are UUIDv7, rows are stored
    /// about in registration order) share pages with their neighbours. Measured at 1,000,000 runtimes, 166,667 due per
    /// flush: 29 µs of PostgreSQL CPU per row written in beat-time order, 13 µs in id order (docs/benchmarks.md).
    /// The set is held in memory meanwhile: 24 bytes per entry, 24 MB for a flush of a million.
    /// </remarks>
    private async Task<FlushResult> DrainAsync(IDatabase db, long frozen, long generation, CancellationToken cancellationToken)
    {
        await StepAsync(FlushStep.Read);
        var (ids, scores, count, junk) = await ReadFrozenAsync(db, frozen);
        // In id order: the batches walk the table and its primary key in order, and flushers on other instances lock
        // overlapping rows in the same order (no deadlock).
        Array.Sort(ids, scores, 0, count);
        var result = new FlushResult(0, junk.Count, 0);
        if (junk.Count > 0)
        {
            // Only beat.lua writes these sets, with ids from the online set; anything else is dropped as raced.
            await ForgetAsync(db, generation, [.. junk.Select(member => (member, 0L))]);
        }
        var batchSize = options.Value.FlushBatchSize;
        var batches = (count + batchSize - 1) / batchSize;
        var next = -1;
        var stop = 0;

        async Task<FlushResult> WriterAsync()
        {
            var written = new FlushResult(0, 0, 0);
            int index;
            while (Volatile.Read(ref stop) == 0 && (index = Interlocked.Increment(ref next)) < batches)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var batch = Batch.Slice(ids, scores, index * batchSize, Math.Min(batchSize, count - index * batchSize));
                await StepAsync(FlushStep.Write);
                var rows = await WriteAsync(batch, cancellationToken);
                await StepAsync(FlushStep.Settle);
                var current = await SettleAsync(db, generation, batch, rows);
                written += new FlushResult(rows.Count, batch.Ids.Length - rows.Count, 1);
                if (!current)
                {
                    // The generation moved on: another flush wrote this set and froze newer beats, which are its own.
                    Volatile.Write(ref stop, 1);
                }
            }
            return written;
        }

        var writers = await Task.WhenAll(Enumerable.Range(0, Math.Max(1, Math.Min(Writers, batches))).Select(_ => WriterAsync()));
        return writers.Aggregate(result, (a, b) => a + b);
    }

    /// <summary>
    /// The frozen set's entries, read by rank in chunks: runtime ids with their beat times (ms), how many, and members
    /// that hold no id. Entries another flush removes meanwhile are simply not read.
    /// </summary>
    private static async Task<(Guid[] Ids, long[] Scores, int Count, List<RedisValue> Junk)> ReadFrozenAsync(IDatabase db, long frozen)
    {
        var ids = new Guid[frozen];
        var scores = new long[frozen];
        var junk = new List<RedisValue>();
        var count = 0;
        for (long from = 0; from < frozen; from += (long)RedisChunk * ReadsInFlight)
        {
            var reads = new List<Task<SortedSetEntry[]>>(ReadsInFlight);
            for (var start = from; start < Math.Min(frozen, from + (long)RedisChunk * ReadsInFlight); start += RedisChunk)
            {
                reads.Add(db.SortedSetRangeByRankWithScoresAsync(PresenceKeys.Flushing, start, Math.Min(frozen, start + RedisChunk) - 1));
            }
            foreach (var entry in (await Task.WhenAll(reads)).SelectMany(chunk => chunk))
            {
                if (count < ids.Length && TryParse(entry.Element, out var id))
                {
                    ids[count] = id;
                    scores[count++] = (long)entry.Score;
                }
                else
                {
                    junk.Add(entry.Element);
                }
            }
        }
        return (ids, scores, count, junk);
    }

    /// <summary>A batch's runtime ids, sorted, with the beat time of each (ms, Redis time, and as PostgreSQL takes it).</summary>
    private readonly record struct Batch(Guid[] Ids, long[] Scores, DateTime[] Seen)
    {
        public static Batch Slice(Guid[] ids, long[] scores, int from, int count)
        {
            var batch = new Batch(ids[from..(from + count)], scores[from..(from + count)], new DateTime[count]);
            for (var i = 0; i < count; i++)
            {
                batch.Seen[i] = RedisTime.ToUtc(batch.Scores[i]);
            }
            return batch;
        }
    }

    /// <summary>The ids of the rows one UPDATE wrote: the first <see cref="Count"/> of <see cref="Sorted"/>, in order.</summary>
    private readonly record struct Written(Guid[] Sorted, int Count)
    {
        public bool Contains(Guid id) => Array.BinarySearch(Sorted, 0, Count, id) >= 0;
    }

    private static bool TryParse(RedisValue member, out Guid id) => Guid.TryParse(((ReadOnlyMemory<byte>)member).Span, out id);

    /// <summary>Writes one batch in one UPDATE; returns the ids of the rows it wrote.</summary>
    private async Task<Written> WriteAsync(Batch batch, CancellationToken cancellationToken)
    {
        var touched = new Guid[batch.Ids.Length];
        if (batch.Ids.Length == 0)
        {
            return new Written(touched, 0);
        }
        var count = 0;
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using var command = new NpgsqlBatch(connection, transaction) { BatchCommands = { new(GenericPlans), new(FlushBatch) } };
        var update = command.BatchCommands[1];
        update.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Uuid, Value = batch.Ids });
        update.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.TimestampTz, Value = batch.Seen });
        update.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Text, Value = RuntimeRegistry.StatusText(RuntimeStatus.Online) });
        // Prepared once per physical connection (Npgsql keeps it across pool reuse), so the generic plan is reused.
        await command.PrepareAsync(cancellationToken);
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            // The batch's ids are distinct and each row is updated once, so at most Ids.Length rows come back.
            while (await reader.ReadAsync(cancellationToken))
            {
                touched[count++] = reader.GetGuid(0);
            }
        }
        await transaction.CommitAsync(cancellationToken);
        Array.Sort(touched, 0, count);
        return new Written(touched, count);
    }

    /// <summary>
    /// After the commit, per chunk (forget.lua): the online entries of the written runtimes learn the beat time PostgreSQL
    /// now holds, runtimes the UPDATE did not touch (raced to offline, or deleted) leave the online and seen hashes, so
    /// their next beat goes synchronous, and the batch leaves the frozen set if its generation is still current. Within
    /// a generation nothing else writes the frozen set, so no score needs comparing: a newer beat of the same runtime is
    /// in the live set, or in a newer generation that forget.lua leaves alone. Returns false when the generation had
    /// moved on (nothing was removed).
    /// </summary>
    private static Task<bool> SettleAsync(IDatabase db, long generation, Batch batch, Written written) =>
        ForgetAsync(db, generation, [.. batch.Ids.Select((id, i) => ((RedisValue)RuntimeCredentials.Canonical(id), written.Contains(id) ? batch.Scores[i] : 0))]);

    /// <summary>forget.lua per chunk of entries, each with the beat time written (ms), or 0 for a runtime the write skipped.</summary>
    private static async Task<bool> ForgetAsync(IDatabase db, long generation, (RedisValue Member, long Written)[] entries)
    {
        var forgets = new List<Task<RedisResult>>((entries.Length + RedisChunk - 1) / RedisChunk);
        foreach (var chunk in entries.Chunk(RedisChunk))
        {
            var args = new RedisValue[chunk.Length * 2 + 1];
            args[0] = generation;
            for (var i = 0; i < chunk.Length; i++)
            {
                args[2 * i + 1] = chunk[i].Member;
                args[2 * i + 2] = chunk[i].Written;
            }
            forgets.Add(PresenceScripts.Forget.RunAsync(db, PresenceKeys.ForForget, args));
        }
        // A crash before these land leaves the batch frozen: it is written again, harmlessly, and a raced runtime still
        // in the online set is found raced again by the next flush.
        var removed = await Task.WhenAll(forgets);
        return removed.All(r => (long)r >= 0);
    }
}
