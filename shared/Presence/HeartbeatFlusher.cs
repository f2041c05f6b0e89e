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
public sealed record FlushResult(long Flushed, long Raced, int Batches)
{
    /// <summary>The sum of two flushes' counts.</summary>
    public static FlushResult operator +(FlushResult a, FlushResult b) => new(a.Flushed + b.Flushed, a.Raced + b.Raced, a.Batches + b.Batches);
}

/// <summary>The steps of a flush, in order: a freeze, then read, write and settle for each batch.</summary>
internal enum FlushStep
{
    /// <summary>take.lua: freeze the buffered beats (or find a frozen set left to drain) and its generation.</summary>
    Freeze,

    /// <summary>Read the next batch of the frozen set.</summary>
    Read,

    /// <summary>Write the batch to PostgreSQL (one UPDATE, committed).</summary>
    Write,

    /// <summary>forget.lua: remove the written batch from the frozen set, if its generation is still current.</summary>
    Settle,
}

/// <summary>
/// Writes buffered beats to PostgreSQL, one UPDATE per bounded batch. A flush first freezes the buffered beats
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
        // Two passes at most: a frozen set left by a failed (or concurrent) flush, then the live beats.
        for (var pass = 0; pass < 2; pass++)
        {
            await StepAsync(FlushStep.Freeze);
            var taken = (RedisResult[])(await PresenceScripts.Take.RunAsync(db, PresenceKeys.BeatsFlushingAndGeneration, []))!;
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

    /// <summary>
    /// Writes the frozen set of <paramref name="generation"/> (about <paramref name="frozen"/> entries),
    /// <see cref="Writers"/> batches at a time, each read as soon as a slot frees up.
    /// </summary>
    private async Task<FlushResult> DrainAsync(IDatabase db, long frozen, long generation, CancellationToken cancellationToken)
    {
        var batchSize = options.Value.FlushBatchSize;
        // Nothing is added to the frozen set and batches leave it only after their commit, so the next unread
        // entry sits at rank (read - removed). Reads and removals are issued under one lock, in the order Redis
        // runs them (one connection). If another flusher removes entries too, ranks shift and this one stops
        // early: what it skipped stays frozen for the next flush, nothing is lost. Once the generation has moved
        // on (another flush emptied the set and froze newer beats), this one stops: they are the newer flush's.
        var gate = new object();
        long read = 0, removed = 0;
        var done = false;

        bool Finished()
        {
            lock (gate)
            {
                return done || read >= frozen;
            }
        }

        async Task<FlushResult> WriterAsync()
        {
            var result = new FlushResult(0, 0, 0);
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (Finished())
                {
                    return result;
                }
                await StepAsync(FlushStep.Read);
                var reads = new Task<SortedSetEntry[]>[(batchSize + RedisChunk - 1) / RedisChunk];
                lock (gate)
                {
                    if (done || read >= frozen)
                    {
                        return result;
                    }
                    var from = read - removed;
                    for (var i = 0; i < reads.Length; i++)
                    {
                        var start = from + (long)i * RedisChunk;
                        reads[i] = db.SortedSetRangeByRankWithScoresAsync(
                            PresenceKeys.Flushing, start, Math.Min(from + batchSize, start + RedisChunk) - 1);
                    }
                    read += batchSize;
                }
                var chunks = await Task.WhenAll(reads);
                var count = chunks.Sum(chunk => chunk.Length);
                if (count < batchSize)
                {
                    lock (gate)
                    {
                        done = true;
                        read -= batchSize - count;
                    }
                    if (count == 0)
                    {
                        return result;
                    }
                }
                var batch = Batch.Of(chunks, count);
                await StepAsync(FlushStep.Write);
                var written = await WriteAsync(batch, cancellationToken);
                await StepAsync(FlushStep.Settle);
                Task<bool> settling;
                lock (gate)
                {
                    removed += count;
                    settling = SettleAsync(db, generation, chunks, written, count);
                }
                var current = await settling;
                result += new FlushResult(written.Count, count - written.Count, 1);
                if (!current)
                {
                    lock (gate)
                    {
                        done = true;
                    }
                }
            }
        }

        var writers = await Task.WhenAll(Enumerable.Range(0, Writers).Select(_ => WriterAsync()));
        return writers.Aggregate((a, b) => a + b);
    }

    /// <summary>A batch's runtime ids, sorted, with the beat time of each.</summary>
    private readonly record struct Batch(Guid[] Ids, DateTime[] Seen)
    {
        public static Batch Of(SortedSetEntry[][] chunks, int count)
        {
            var ids = new Guid[count];
            var seen = new DateTime[count];
            var n = 0;
            foreach (var entry in chunks.SelectMany(chunk => chunk))
            {
                // Only beat.lua writes these sets, with ids from the online set; anything else is dropped as raced.
                if (TryParse(entry.Element, out var id))
                {
                    ids[n] = id;
                    seen[n++] = RedisTime.ToUtc((long)entry.Score);
                }
            }
            Array.Resize(ref ids, n);
            Array.Resize(ref seen, n);
            // In id order: flushers on other instances lock overlapping rows in the same order (no deadlock), and
            // the index and heap are walked in order.
            Array.Sort(ids, seen);
            return new Batch(ids, seen);
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
    /// After the commit: the batch leaves the frozen set if its generation is still current (forget.lua), and
    /// runtimes the UPDATE did not touch (raced to offline, or deleted) leave the online set, so their next beat
    /// goes synchronous. Within a generation nothing else writes the frozen set, so no score needs comparing: a
    /// newer beat of the same runtime is in the live set, or in a newer generation that forget.lua leaves alone.
    /// Returns false when the generation had moved on (nothing was removed).
    /// </summary>
    private static async Task<bool> SettleAsync(IDatabase db, long generation, SortedSetEntry[][] chunks, Written written, int count)
    {
        var forgets = new List<Task<RedisResult>>(chunks.Length);
        var raced = new List<RedisValue>();
        foreach (var chunk in chunks.Where(chunk => chunk.Length > 0))
        {
            var args = new RedisValue[chunk.Length + 1];
            args[0] = generation;
            for (var i = 0; i < chunk.Length; i++)
            {
                args[i + 1] = chunk[i].Element;
            }
            forgets.Add(PresenceScripts.Forget.RunAsync(db, PresenceKeys.FlushingAndGeneration, args));
            if (written.Count < count)
            {
                // Raced (rare): the entries whose id the UPDATE did not return, or that held no id at all.
                raced.AddRange(chunk.Select(entry => entry.Element).Where(member => !TryParse(member, out var id) || !written.Contains(id)));
            }
        }
        // Either may land without the other (a crash between): a batch still frozen is written again, harmlessly;
        // a raced runtime still in the online set is found raced again by the next flush.
        var racing = raced.Count > 0 ? db.HashDeleteAsync(PresenceKeys.Online, [.. raced]) : Task.FromResult(0L);
        var removed = await Task.WhenAll(forgets);
        await racing;
        return removed.All(r => (long)r >= 0);
    }
}
