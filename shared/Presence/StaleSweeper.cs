using Conveyor.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;
using StackExchange.Redis;

namespace Conveyor.Presence;

/// <summary>What one sweep did.</summary>
/// <param name="Swept">Runtimes marked offline.</param>
/// <param name="Batches">Batches of stale candidates looked at.</param>
public sealed record SweepResult(long Swept, int Batches);

/// <summary>The steps of a sweep, in the order each batch goes through them.</summary>
internal enum SweepStep
{
    /// <summary>Read the next batch of stale candidates from PostgreSQL.</summary>
    Read,

    /// <summary>release_stale.lua: take those without a fresh buffered beat out of the online set.</summary>
    Release,

    /// <summary>Mark them offline in PostgreSQL (one fenced UPDATE).</summary>
    MarkOffline,
}

/// <summary>
/// Marks offline the runtimes silent longer than the stale window (Redis time): online in PostgreSQL with
/// an old last_seen_at, and no newer beat waiting in Redis. An older beat still waiting there (acknowledged while
/// PostgreSQL was away) goes into last_seen_at as the row goes offline. Safe to run on many instances at once.
/// </summary>
public sealed class StaleSweeper(NpgsqlDataSource dataSource, RedisConnection redis, IOptions<PresenceOptions> options, ILogger<StaleSweeper> logger)
{
    // Walks the partial index on online ids; last_seen_at is filtered, never indexed (HOT flushes).
    private const string Candidates = """
        SELECT id FROM runtimes
        WHERE status = 'online' AND last_seen_at < $1 AND id > $2
        ORDER BY id LIMIT $3
        """;

    // Fenced: a beat that reached PostgreSQL since the candidates were read keeps its runtime online.
    // Rows are locked in id order, as the flush locks them (one primary-key probe per sorted id), so a sweep and a
    // flush that touch the same rows (after a PostgreSQL outage longer than the stale window, say) cannot deadlock.
    // A plain UPDATE ... WHERE id = ANY($1) locks in the order its plan reads: with thousands of ids that is a
    // sequential or bitmap scan, in physical order. Here the sub-select locks every row first, in id order (its
    // FOR NO KEY UPDATE applies after the ORDER BY), re-checking the fence on the newest version of a row it
    // waited for; the UPDATE then finds only rows it already holds.
    // last_seen_at takes the runtime's newest beat still buffered in Redis ($3, null when none): that beat was
    // acknowledged, and the flush writes online rows only, so once this row is offline no flush would write it.
    private const string MarkOffline = """
        UPDATE runtimes r SET status = 'offline', last_seen_at = GREATEST(r.last_seen_at, b.seen)
        FROM unnest($1::uuid[], $3::timestamptz[]) AS b(id, seen)
        WHERE r.id = b.id AND r.id = ANY(ARRAY(
            SELECT id FROM runtimes
            WHERE id = ANY($1::uuid[]) AND status = 'online' AND last_seen_at < $2
            ORDER BY id
            FOR NO KEY UPDATE))
        """;

    /// <summary>Runtime ids per release_stale.lua call, so one call stays short whatever the sweep batch size.</summary>
    private const int ReleaseChunk = 1000;

    /// <summary>
    /// Test seam: awaited before every step, so a test can hold a sweep between steps. Null (no wait) in production.
    /// </summary>
    internal Func<SweepStep, Task>? BeforeStep { get; set; }

    private Task StepAsync(SweepStep step) => BeforeStep?.Invoke(step) ?? Task.CompletedTask;

    /// <summary>One pass over every stale online runtime, <see cref="PresenceOptions.SweepBatchSize"/> at a time.</summary>
    public async Task<SweepResult> RunOnceAsync(CancellationToken cancellationToken)
    {
        using var activity = ConveyorTelemetry.Source.StartActivity("conveyor.stale_sweeper.run");
        var settings = options.Value;
        var db = await redis.GetDatabaseAsync();
        var cutoffMs = await RedisTime.NowMsAsync(db) - (long)settings.StaleWindow.TotalMilliseconds;
        var cutoff = RedisTime.ToUtc(cutoffMs);
        var after = Guid.Empty;
        long swept = 0;
        var batches = 0;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            await StepAsync(SweepStep.Read);
            var candidates = await ReadCandidatesAsync(cutoff, after, settings.SweepBatchSize, cancellationToken);
            if (candidates.Count == 0)
            {
                break;
            }
            batches++;
            after = candidates[^1];
            // Out of the online set first: from here on their beats go through PostgreSQL, where the fenced
            // UPDATE below and the synchronous beat serialise on the row. A sweep that fails after this marks no
            // one offline: released runtimes that are alive come back to the online set with their next beat.
            await StepAsync(SweepStep.Release);
            var stale = new List<Guid>();
            var buffered = new List<DateTime?>();
            foreach (var chunk in candidates.Chunk(ReleaseChunk))
            {
                var released = (RedisResult[])(await PresenceScripts.ReleaseStale.RunAsync(
                    db, PresenceKeys.OnlineBeatsAndFlushing,
                    [cutoffMs, .. chunk.Select(id => (RedisValue)RuntimeCredentials.Canonical(id))]))!;
                for (var i = 0; i < released.Length; i += 2)
                {
                    stale.Add(Guid.Parse((string)released[i]!));
                    buffered.Add((long)released[i + 1] is > 0 and var ms ? RedisTime.ToUtc(ms) : null);
                }
            }
            if (stale.Count > 0)
            {
                await StepAsync(SweepStep.MarkOffline);
                swept += await MarkOfflineAsync([.. stale], cutoff, [.. buffered], cancellationToken);
            }
            if (candidates.Count < settings.SweepBatchSize)
            {
                break;
            }
        }
        if (swept > 0)
        {
            ConveyorTelemetry.RuntimesSwept.Add(swept);
            logger.LogInformation("Stale sweeper: {Swept} runtimes silent for more than {Window} went offline", swept, settings.StaleWindow);
        }
        return new SweepResult(swept, batches);
    }

    private async Task<List<Guid>> ReadCandidatesAsync(DateTime cutoff, Guid after, int limit, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(Candidates);
        command.Parameters.AddWithValue(cutoff);
        command.Parameters.AddWithValue(after);
        command.Parameters.AddWithValue(limit);
        var ids = new List<Guid>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            ids.Add(reader.GetGuid(0));
        }
        return ids;
    }

    private async Task<long> MarkOfflineAsync(Guid[] ids, DateTime cutoff, DateTime?[] buffered, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(MarkOffline);
        command.Parameters.AddWithValue(ids);
        command.Parameters.AddWithValue(cutoff);
        command.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.TimestampTz, Value = buffered });
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }
}
