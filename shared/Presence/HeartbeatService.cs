using Conveyor.Storage;
using Microsoft.Extensions.Options;
using Npgsql;
using StackExchange.Redis;

namespace Conveyor.Presence;

/// <summary>What became of a beat. The HTTP layer maps Buffered → 202, Synchronous → 200, NotFound → 404, Unauthorized → 401.</summary>
public enum BeatOutcome
{
    /// <summary>Recorded in Redis; the next flush writes it to PostgreSQL.</summary>
    Buffered,

    /// <summary>Written to PostgreSQL at once (the runtime was not known online, or the mode is Passthrough).</summary>
    Synchronous,

    /// <summary>No runtime has that id. Nothing changed.</summary>
    NotFound,

    /// <summary>The token is not the runtime's. Nothing changed.</summary>
    Unauthorized,
}

/// <summary>What a runtime presenting a token may do: claim only when <see cref="Online"/>.</summary>
public enum RuntimeAccess
{
    /// <summary>The token is the runtime's and the runtime is online.</summary>
    Online,

    /// <summary>The token is the runtime's, and the runtime is offline (never beat, or swept): it must beat first.</summary>
    Offline,

    /// <summary>No runtime has that id (never registered, or deleted).</summary>
    NotFound,

    /// <summary>The token is missing or is not the runtime's.</summary>
    Unauthorized,
}

/// <summary>The outcome of one beat.</summary>
/// <param name="Outcome">Buffered, Synchronous, NotFound or Unauthorized.</param>
/// <param name="FlippedOnline">True when this beat turned an offline runtime online.</param>
/// <param name="SeenAt">The beat's time (Redis time) when it was accepted.</param>
public sealed record BeatResult(BeatOutcome Outcome, bool FlippedOnline = false, DateTimeOffset? SeenAt = null)
{
    internal static readonly BeatResult NotFound = new(BeatOutcome.NotFound);
    internal static readonly BeatResult Unauthorized = new(BeatOutcome.Unauthorized);
}

/// <summary>
/// Accepts runtime heartbeats. A runtime known online costs one Redis script call and no PostgreSQL at all;
/// any other runtime takes the synchronous path: one UPDATE flips it online, then Redis knows it online.
/// </summary>
public sealed class HeartbeatService(NpgsqlDataSource dataSource, RedisConnection redis, IOptions<PresenceOptions> options)
{
    /// <summary>How often runtimes should beat (<see cref="PresenceOptions.BeatInterval"/>); every beat's answer says so.</summary>
    public TimeSpan BeatInterval => options.Value.BeatInterval;

    // One statement: lock the row, bump it only if the token hash matches, and report what the row was,
    // so unknown id, wrong token and offline→online are told apart without a second round trip.
    // GREATEST: a beat never moves last_seen_at backwards.
    private const string SynchronousBeat = """
        WITH old AS (
            SELECT id, status, token_hash FROM runtimes WHERE id = $1 FOR UPDATE
        ), bumped AS (
            UPDATE runtimes r SET status = 'online', last_seen_at = GREATEST(r.last_seen_at, $3)
            FROM old WHERE r.id = old.id AND old.token_hash = $2
            RETURNING r.id
        )
        SELECT old.status, old.token_hash, EXISTS (SELECT 1 FROM bumped) FROM old
        """;

    /// <summary>Records a beat of runtime <paramref name="id"/> presenting <paramref name="token"/>. Throws <see cref="ConveyorValidationException"/> when the id is not a UUID.</summary>
    public async Task<BeatResult> BeatAsync(string id, string? token, CancellationToken cancellationToken = default)
    {
        var runtimeId = RuntimeCredentials.ParseId(id);
        var hash = RuntimeCredentials.Hash(token);
        if (hash is null)
        {
            ConveyorTelemetry.BeatsRejected.Add(1);
            return BeatResult.Unauthorized;
        }
        var member = RuntimeCredentials.Canonical(runtimeId);
        var db = await redis.GetDatabaseAsync();
        if (options.Value.Mode == PresenceMode.Batched)
        {
            var at = (long)await PresenceScripts.Beat.RunAsync(db, PresenceKeys.OnlineAndBeats, [member, hash]);
            if (at > 0)
            {
                ConveyorTelemetry.BeatsBuffered.Add(1);
                return new BeatResult(BeatOutcome.Buffered, SeenAt: new DateTimeOffset(RedisTime.ToUtc(at)));
            }
            if (at < 0)
            {
                ConveyorTelemetry.BeatsRejected.Add(1);
                return BeatResult.Unauthorized;
            }
        }
        var result = await WriteSynchronouslyAsync(db, runtimeId, hash, cancellationToken);
        if (result.Outcome != BeatOutcome.Synchronous)
        {
            ConveyorTelemetry.BeatsRejected.Add(1);
            return result;
        }
        if (options.Value.Mode == PresenceMode.Batched)
        {
            // After the commit: from now on its beats are buffered. If the sweeper or a flush removes it
            // again in between, its next beat simply comes back here.
            await db.HashSetAsync(PresenceKeys.Online, member, hash);
        }
        ConveyorTelemetry.BeatsSynchronous.Add(1);
        return result;
    }

    /// <summary>
    /// Whether runtime <paramref name="id"/> presenting <paramref name="token"/> is who it says, and online, without
    /// recording a beat. A runtime known online in Redis costs one HGET (Batched mode); any other, one SELECT.
    /// Throws <see cref="ConveyorValidationException"/> when the id is not a UUID.
    /// </summary>
    public async Task<RuntimeAccess> CheckAsync(string id, string? token, CancellationToken cancellationToken = default)
    {
        var runtimeId = RuntimeCredentials.ParseId(id);
        var hash = RuntimeCredentials.Hash(token);
        if (hash is null)
        {
            return RuntimeAccess.Unauthorized;
        }
        if (options.Value.Mode == PresenceMode.Batched)
        {
            var db = await redis.GetDatabaseAsync();
            var known = await db.HashGetAsync(PresenceKeys.Online, RuntimeCredentials.Canonical(runtimeId));
            if (known.HasValue)
            {
                return RuntimeCredentials.HashesMatch(known!, hash) ? RuntimeAccess.Online : RuntimeAccess.Unauthorized;
            }
        }
        await using var command = dataSource.CreateCommand("SELECT status, token_hash FROM runtimes WHERE id = $1");
        command.Parameters.AddWithValue(runtimeId);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken))
        {
            return RuntimeAccess.NotFound;
        }
        if (!RuntimeCredentials.HashesMatch(reader.GetString(1), hash))
        {
            return RuntimeAccess.Unauthorized;
        }
        return reader.GetString(0) == "online" ? RuntimeAccess.Online : RuntimeAccess.Offline;
    }

    private async Task<BeatResult> WriteSynchronouslyAsync(IDatabase db, Guid id, string hash, CancellationToken cancellationToken)
    {
        var now = RedisTime.ToUtc(await RedisTime.NowMsAsync(db));
        await using var command = dataSource.CreateCommand(SynchronousBeat);
        command.Parameters.AddWithValue(id);
        command.Parameters.AddWithValue(hash);
        command.Parameters.AddWithValue(now);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken))
        {
            return BeatResult.NotFound;
        }
        var wasOnline = reader.GetString(0) == "online";
        var stored = reader.GetString(1);
        var bumped = reader.GetBoolean(2);
        if (!RuntimeCredentials.HashesMatch(stored, hash) || !bumped)
        {
            return BeatResult.Unauthorized;
        }
        return new BeatResult(BeatOutcome.Synchronous, FlippedOnline: !wasOnline, SeenAt: new DateTimeOffset(now));
    }
}
