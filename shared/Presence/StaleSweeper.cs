using System.Text.Json.Serialization;
using Conveyor.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;
using StackExchange.Redis;

namespace Conveyor.Presence;

/// <summary>Why a sweep held silent runtimes back from going offline (disruption mode), if it did.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<SweepDisruption>))]
public enum SweepDisruption
{
    /// <summary>No disruption: every silent runtime went offline.</summary>
    [JsonStringEnumMemberName("none")]
    None,

    /// <summary>
    /// Conveyor's own beat intake paused within the stale window (no heartbeat flush for longer than
    /// <see cref="PresenceOptions.IntakeGap"/>: the app or Redis was down), so runtimes may have beaten unheard: none
    /// goes offline until the intake has been unbroken for a whole stale window.
    /// </summary>
    [JsonStringEnumMemberName("intakeInterrupted")]
    IntakeInterrupted,

    /// <summary>
    /// Every online runtime is silent (at least <see cref="PresenceOptions.MassOfflineMinimum"/>): Conveyor more likely
    /// cannot hear them than they all died at once, so none goes offline.
    /// </summary>
    [JsonStringEnumMemberName("fleetSilent")]
    FleetSilent,

    /// <summary>
    /// More than <see cref="PresenceOptions.MassOfflineShare"/> of the online runtimes are silent (at least
    /// <see cref="PresenceOptions.MassOfflineMinimum"/>): they go offline at <see cref="PresenceOptions.MassOfflineRate"/>,
    /// longest silent first.
    /// </summary>
    [JsonStringEnumMemberName("massSilence")]
    MassSilence,
}

/// <summary>What one sweep did.</summary>
/// <param name="Offline">Exactly the runtimes this sweep marked offline, in the order it marked them.</param>
/// <param name="Silent">Online runtimes it found silent for longer than the stale window.</param>
/// <param name="HeldBack">Silent runtimes it left online because of <paramref name="Disruption"/>.</param>
/// <param name="Disruption">Why it held runtimes back, if it did.</param>
/// <param name="Batches">Batches of stale candidates read from PostgreSQL.</param>
public sealed record SweepResult(IReadOnlyList<Guid> Offline, long Silent, long HeldBack, SweepDisruption Disruption, int Batches)
{
    /// <summary>Runtimes marked offline: <see cref="Offline"/>'s count.</summary>
    public long Swept => Offline.Count;
}

/// <summary>The steps of a sweep: read every batch of candidates, then release and mark each batch of those going offline.</summary>
internal enum SweepStep
{
    /// <summary>Read the next batch of stale candidates from PostgreSQL, and which of them Redis saw beat since the cutoff (read only).</summary>
    Read,

    /// <summary>release_stale.lua: take those still without a fresh beat out of the online and seen hashes.</summary>
    Release,

    /// <summary>Mark them offline in PostgreSQL (one fenced UPDATE).</summary>
    MarkOffline,
}

/// <summary>
/// Marks offline the runtimes silent longer than the stale window (Redis time): online in PostgreSQL with an old
/// last_seen_at (which trails a runtime's latest beat by up to a write window), and no beat since the cutoff recorded
/// in Redis. It first finds them all, then decides (disruption mode, see <see cref="SweepDisruption"/>) how many may go
/// offline, and marks those. The newest beat Redis recorded for a runtime it marks (inside the write window, or
/// acknowledged while PostgreSQL was away) goes into last_seen_at as the row goes offline. Safe to run on many
/// instances at once.
/// </summary>
public sealed class StaleSweeper(NpgsqlDataSource dataSource, RedisConnection redis, IOptions<PresenceOptions> options, ILogger<StaleSweeper> logger)
{
    // Walks the partial index on online ids; last_seen_at is filtered, never indexed (HOT flushes).
    private const string Candidates = """
        SELECT id, last_seen_at FROM runtimes
        WHERE status = 'online' AND last_seen_at < $1 AND id > $2
        ORDER BY id LIMIT $3
        """;

    private const string CountOnline = "SELECT count(*) FROM runtimes WHERE status = 'online'";

    // Fenced: a beat that reached PostgreSQL since the candidates were read keeps its runtime online.
    // Rows are locked in id order, as the flush locks them (one primary-key probe per sorted id), so a sweep and a
    // flush that touch the same rows (after a PostgreSQL outage longer than the stale window, say) cannot deadlock.
    // A plain UPDATE ... WHERE id = ANY($1) locks in the order its plan reads: with thousands of ids that is a
    // sequential or bitmap scan, in physical order. Here the sub-select locks every row first, in id order (its
    // FOR NO KEY UPDATE applies after the ORDER BY), re-checking the fence on the newest version of a row it
    // waited for; the UPDATE then finds only rows it already holds.
    // last_seen_at takes the runtime's newest beat recorded in Redis ($3, null when none): a beat inside the write
    // window was never due, and one acknowledged while PostgreSQL was away was never written; the flush writes online
    // rows only, so once this row is offline no flush would write either.
    private const string MarkOffline = """
        UPDATE runtimes r SET status = 'offline', last_seen_at = GREATEST(r.last_seen_at, b.seen)
        FROM unnest($1::uuid[], $3::timestamptz[]) AS b(id, seen)
        WHERE r.id = b.id AND r.id = ANY(ARRAY(
            SELECT id FROM runtimes
            WHERE id = ANY($1::uuid[]) AND status = 'online' AND last_seen_at < $2
            ORDER BY id
            FOR NO KEY UPDATE))
        RETURNING r.id
        """;

    /// <summary>Runtime ids per Redis call (a read or release_stale.lua), so one call stays short whatever the batch size.</summary>
    private const int RedisChunk = 1000;

    /// <summary>
    /// Test seam: awaited before every step, so a test can hold a sweep between steps. Null (no wait) in production.
    /// </summary>
    internal Func<SweepStep, Task>? BeforeStep { get; set; }

    private Task StepAsync(SweepStep step) => BeforeStep?.Invoke(step) ?? Task.CompletedTask;

    /// <summary>
    /// One pass: finds every silent runtime (<see cref="PresenceOptions.SweepBatchSize"/> candidates at a time), decides
    /// how many may go offline, and marks them offline, longest silent first when not all may go.
    /// </summary>
    public async Task<SweepResult> RunOnceAsync(CancellationToken cancellationToken)
    {
        using var activity = ConveyorTelemetry.Source.StartActivity("conveyor.stale_sweeper.run");
        var settings = options.Value;
        var db = await redis.GetDatabaseAsync();
        var nowMs = await RedisTime.NowMsAsync(db);
        var cutoffMs = nowMs - (long)settings.StaleWindow.TotalMilliseconds;
        var cutoff = RedisTime.ToUtc(cutoffMs);
        var intake = await IntakeAsync(db);

        var (silent, batches) = await FindSilentAsync(db, cutoff, cutoffMs, settings.SweepBatchSize, cancellationToken);

        var disruption = SweepDisruption.None;
        long online = 0;
        if (intake is not { } unbroken || nowMs - unbroken.Last > (long)settings.IntakeGap.TotalMilliseconds || unbroken.Since > cutoffMs)
        {
            disruption = SweepDisruption.IntakeInterrupted;
        }
        else if (silent.Count >= settings.MassOfflineMinimum && settings.MassOfflineShare < 1)
        {
            online = await CountOnlineAsync(cancellationToken);
            if (silent.Count > settings.MassOfflineShare * online)
            {
                disruption = silent.Count >= online ? SweepDisruption.FleetSilent : SweepDisruption.MassSilence;
            }
        }
        var verdict = (RedisResult[])(await PresenceScripts.Disruption.RunAsync(db, [PresenceKeys.Disruption],
        [
            ModeName(disruption), silent.Count, online, settings.MassOfflineRate,
            Math.Max(1, settings.MassOfflineRate * settings.SweepInterval.TotalSeconds),
        ]))!;
        var granted = (int)(long)verdict[0];
        var previous = (string?)verdict[1] ?? "";

        if (granted < silent.Count)
        {
            // Longest silent first: the likeliest dead.
            silent.Sort((a, b) => a.LastSeenMs != b.LastSeenMs ? a.LastSeenMs.CompareTo(b.LastSeenMs) : a.Id.CompareTo(b.Id));
        }
        var offline = new List<Guid>();
        foreach (var batch in silent.Take(granted).Chunk(settings.SweepBatchSize))
        {
            cancellationToken.ThrowIfCancellationRequested();
            // Out of the online and seen hashes first: from here on their beats go through PostgreSQL, where the fenced
            // UPDATE below and the synchronous beat serialise on the row. A sweep that fails after this marks no one
            // offline: released runtimes that are alive come back to the online set with their next beat.
            await StepAsync(SweepStep.Release);
            var (stale, seen) = await ReleaseAsync(db, batch, cutoffMs);
            if (stale.Length > 0)
            {
                await StepAsync(SweepStep.MarkOffline);
                offline.AddRange(await MarkOfflineAsync(stale, cutoff, seen, cancellationToken));
            }
        }

        var result = new SweepResult(offline, silent.Count, silent.Count - granted, disruption, batches);
        Report(result, previous, intake, settings);
        return result;
    }

    /// <summary>A silent runtime and its latest known beat (ms, Redis time).</summary>
    private readonly record struct Silent(Guid Id, long LastSeenMs);

    /// <summary>The beat intake's stamp (take.lua): the last flush, and since when the intake has been unbroken.</summary>
    private readonly record struct Intake(long Last, long Since);

    private static async Task<Intake?> IntakeAsync(IDatabase db)
    {
        var stamp = ((string?)await db.StringGetAsync(PresenceKeys.Intake))?.Split('|');
        return stamp is [var last, var since] && long.TryParse(last, out var l) && long.TryParse(since, out var s) ? new Intake(l, s) : null;
    }

    /// <summary>Every runtime online in PostgreSQL before the cutoff with no beat since it recorded in Redis, in id order.</summary>
    private async Task<(List<Silent> Silent, int Batches)> FindSilentAsync(
        IDatabase db, DateTime cutoff, long cutoffMs, int batchSize, CancellationToken cancellationToken)
    {
        var silent = new List<Silent>();
        var after = Guid.Empty;
        var batches = 0;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            await StepAsync(SweepStep.Read);
            var candidates = await ReadCandidatesAsync(cutoff, after, batchSize, cancellationToken);
            if (candidates.Count == 0)
            {
                break;
            }
            batches++;
            after = candidates[^1].Id;
            foreach (var chunk in candidates.Chunk(RedisChunk))
            {
                var latest = await PresenceKeys.LatestBeatsAsync(db, [.. chunk.Select(c => (RedisValue)RuntimeCredentials.Canonical(c.Id))]);
                for (var i = 0; i < chunk.Length; i++)
                {
                    if (latest[i] is not { } ms || ms < cutoffMs)
                    {
                        silent.Add(new Silent(chunk[i].Id, Math.Max(chunk[i].LastSeenMs, (long)(latest[i] ?? 0))));
                    }
                }
            }
            if (candidates.Count < batchSize)
            {
                break;
            }
        }
        return (silent, batches);
    }

    private async Task<List<Silent>> ReadCandidatesAsync(DateTime cutoff, Guid after, int limit, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(Candidates);
        command.Parameters.AddWithValue(cutoff);
        command.Parameters.AddWithValue(after);
        command.Parameters.AddWithValue(limit);
        var rows = new List<Silent>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            rows.Add(new Silent(reader.GetGuid(0), new DateTimeOffset(reader.GetDateTime(1)).ToUnixTimeMilliseconds()));
        }
        return rows;
    }

    private async Task<long> CountOnlineAsync(CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(CountOnline);
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>
    /// release_stale.lua over <paramref name="batch"/>, a chunk at a time: the ids still silent, now out of the online and
    /// seen hashes, each with the newest beat Redis recorded for it (null when none).
    /// </summary>
    private static async Task<(Guid[] Ids, DateTime?[] Seen)> ReleaseAsync(IDatabase db, Silent[] batch, long cutoffMs)
    {
        var stale = new List<Guid>(batch.Length);
        var seen = new List<DateTime?>(batch.Length);
        foreach (var chunk in batch.Chunk(RedisChunk))
        {
            var released = (RedisResult[])(await PresenceScripts.ReleaseStale.RunAsync(
                db, PresenceKeys.ForRelease, [cutoffMs, .. chunk.Select(s => (RedisValue)RuntimeCredentials.Canonical(s.Id))]))!;
            for (var i = 0; i < released.Length; i += 2)
            {
                stale.Add(Guid.Parse((string)released[i]!));
                seen.Add((long)released[i + 1] is > 0 and var ms ? RedisTime.ToUtc(ms) : null);
            }
        }
        return ([.. stale], [.. seen]);
    }

    private async Task<List<Guid>> MarkOfflineAsync(Guid[] ids, DateTime cutoff, DateTime?[] seen, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(MarkOffline);
        command.Parameters.AddWithValue(ids);
        command.Parameters.AddWithValue(cutoff);
        command.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.TimestampTz, Value = seen });
        var marked = new List<Guid>(ids.Length);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            marked.Add(reader.GetGuid(0));
        }
        return marked;
    }

    internal static string ModeName(SweepDisruption disruption) => disruption switch
    {
        SweepDisruption.IntakeInterrupted => "intakeInterrupted",
        SweepDisruption.FleetSilent => "fleetSilent",
        SweepDisruption.MassSilence => "massSilence",
        _ => "none",
    };

    private void Report(SweepResult result, string previous, Intake? intake, PresenceOptions settings)
    {
        var mode = ModeName(result.Disruption);
        ConveyorTelemetry.SweepDisruption.Record(result.Disruption == SweepDisruption.None ? 0 : 1, new KeyValuePair<string, object?>("conveyor.disruption", mode));
        if (result.Swept > 0)
        {
            ConveyorTelemetry.RuntimesSwept.Add(result.Swept);
        }
        if (result.HeldBack > 0)
        {
            ConveyorTelemetry.RuntimesHeldBack.Add(result.HeldBack, new KeyValuePair<string, object?>("conveyor.disruption", mode));
        }
        switch (result.Disruption)
        {
            case SweepDisruption.IntakeInterrupted:
                logger.LogWarning(
                    "Stale sweeper in disruption mode ({Disruption}): Conveyor's beat intake has been unbroken only since {Since:O} (last heartbeat flush {Last:O}), less than the stale window {Window}; {HeldBack} silent runtimes held back until it has been unbroken that long",
                    mode, intake is { } i ? RedisTime.ToUtc(i.Since) : null, intake is { } j ? RedisTime.ToUtc(j.Last) : null, settings.StaleWindow, result.HeldBack);
                break;
            case SweepDisruption.FleetSilent:
                logger.LogWarning(
                    "Stale sweeper in disruption mode ({Disruption}): all {Silent} online runtimes are silent, more likely unheard than dead; none goes offline until some beat again",
                    mode, result.Silent);
                break;
            case SweepDisruption.MassSilence:
                logger.LogWarning(
                    "Stale sweeper in disruption mode ({Disruption}): {Silent} online runtimes are silent, more than {Share:P0}; {Swept} went offline (at most {Rate}/s, longest silent first), {HeldBack} held back",
                    mode, result.Silent, settings.MassOfflineShare, result.Swept, settings.MassOfflineRate, result.HeldBack);
                break;
            default:
                if (previous is not ("" or "none"))
                {
                    logger.LogInformation("Stale sweeper left disruption mode ({Previous})", previous);
                }
                if (result.Swept > 0)
                {
                    logger.LogInformation("Stale sweeper: {Swept} runtimes silent for more than {Window} went offline", result.Swept, settings.StaleWindow);
                }
                break;
        }
    }
}
