using Conveyor.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using StackExchange.Redis;

namespace Conveyor.Presence;

/// <summary>What one sweep did.</summary>
/// <param name="Swept">Runtimes marked offline.</param>
/// <param name="Batches">Batches of stale candidates looked at.</param>
public sealed record SweepResult(long Swept, int Batches);

/// <summary>
/// Marks offline the runtimes silent longer than the stale window (Redis time): online in PostgreSQL with
/// an old last_seen_at, and no newer beat waiting in Redis. Safe to run on many instances at once.
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
    private const string MarkOffline = """
        UPDATE runtimes SET status = 'offline'
        WHERE id = ANY($1::uuid[]) AND status = 'online' AND last_seen_at < $2
        RETURNING id
        """;

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
            var candidates = await ReadCandidatesAsync(cutoff, after, settings.SweepBatchSize, cancellationToken);
            if (candidates.Count == 0)
            {
                break;
            }
            batches++;
            after = candidates[^1];
            // Out of the online set first: from here on their beats go through PostgreSQL, where the fenced
            // UPDATE below and the synchronous beat serialise on the row.
            var stale = (RedisResult[])(await PresenceScripts.ReleaseStale.RunAsync(
                db, PresenceKeys.All,
                [cutoffMs, .. candidates.Select(id => (RedisValue)RuntimeCredentials.Canonical(id))]))!;
            if (stale.Length > 0)
            {
                swept += await MarkOfflineAsync([.. stale.Select(s => Guid.Parse((string)s!))], cutoff, cancellationToken);
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

    private async Task<long> MarkOfflineAsync(Guid[] ids, DateTime cutoff, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(MarkOffline);
        command.Parameters.AddWithValue(ids);
        command.Parameters.AddWithValue(cutoff);
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }
}
