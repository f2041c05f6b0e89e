using Conveyor.Storage;
using Microsoft.Extensions.Options;
using Npgsql;
using StackExchange.Redis;

namespace Conveyor.Presence;

/// <summary>What became of a beat. The HTTP layer maps Buffered → 202, Synchronous → 200, NotFound → 404, Unauthorized → 401.</summary>
public enum BeatOutcome
{
    /// <summary>
    /// Recorded in Redis (exactly, for the sweeper and the API); PostgreSQL's last_seen_at gets it through the flush
    /// when the value it holds is a write window old.
    /// </summary>
    Buffered,

    /// <summary>Written to PostgreSQL before the answer (the runtime was not known online, or the mode is Passthrough).</summary>
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
/// any other runtime takes the synchronous path: its beat is written to PostgreSQL with the others that arrive with it
/// (one statement per group, see <see cref="FlipWriter"/>), then Redis knows it online, then it is answered.
/// </summary>
public sealed class HeartbeatService
{
    private readonly RedisConnection _redis;
    private readonly IOptions<PresenceOptions> _options;
    private readonly FlipWriter _flips;
    private readonly NpgsqlDataSource _dataSource;
    private readonly RedisValue _writeWindowMs;

    internal HeartbeatService(RedisConnection redis, IOptions<PresenceOptions> options, FlipWriter flips, NpgsqlDataSource dataSource)
    {
        _redis = redis;
        _options = options;
        _flips = flips;
        _dataSource = dataSource;
        _writeWindowMs = (long)options.Value.EffectiveWriteWindow.TotalMilliseconds;
    }

    /// <summary>How often runtimes should beat (<see cref="PresenceOptions.BeatInterval"/>); every beat's answer says so.</summary>
    public TimeSpan BeatInterval => _options.Value.BeatInterval;

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
        if (_options.Value.Mode == PresenceMode.Batched)
        {
            var db = await _redis.GetDatabaseAsync();
            var at = (long)await PresenceScripts.Beat.RunAsync(db, PresenceKeys.ForBeat, [RuntimeCredentials.Canonical(runtimeId), hash, _writeWindowMs]);
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
        var result = await _flips.WriteAsync(runtimeId, hash, cancellationToken);
        (result.Outcome == BeatOutcome.Synchronous ? ConveyorTelemetry.BeatsSynchronous : ConveyorTelemetry.BeatsRejected).Add(1);
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
        if (_options.Value.Mode == PresenceMode.Batched)
        {
            var db = await _redis.GetDatabaseAsync();
            var known = await db.HashGetAsync(PresenceKeys.Online, RuntimeCredentials.Canonical(runtimeId));
            if (known.HasValue)
            {
                // "<token hash>" or "<token hash>:<ms PostgreSQL holds>" (beat.lua).
                var stored = ((string)known!).Split(':', 2)[0];
                return RuntimeCredentials.HashesMatch(stored, hash) ? RuntimeAccess.Online : RuntimeAccess.Unauthorized;
            }
        }
        await using var command = _dataSource.CreateCommand("SELECT status, token_hash FROM runtimes WHERE id = $1");
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
}
