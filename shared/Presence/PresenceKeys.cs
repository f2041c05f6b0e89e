using Conveyor.Queue;
using StackExchange.Redis;

namespace Conveyor.Presence;

/// <summary>
/// The Redis keys of presence. All carry the <c>{presence}</c> hash tag, so every presence script runs
/// in one hash slot on clustered Redis.
/// </summary>
internal static class PresenceKeys
{
    /// <summary>
    /// Hash: runtime id → <c>"&lt;SHA-256 hex of its token&gt;:&lt;ms&gt;"</c> for every runtime known online, where ms is a
    /// time PostgreSQL's last_seen_at holds at least (its write window starts there). A bare token hash is accepted:
    /// its next beat is written.
    /// </summary>
    public static readonly RedisKey Online = "conveyor:{presence}:online";

    /// <summary>Hash: runtime id → its latest beat (ms, Redis time), for every runtime known online. Exact, unlike PostgreSQL.</summary>
    public static readonly RedisKey Seen = "conveyor:{presence}:seen";

    /// <summary>Sorted set: runtime id → its latest beat the flush must write (ms, Redis time). Due beats land here.</summary>
    public static readonly RedisKey Beats = "conveyor:{presence}:beats";

    /// <summary>
    /// Sorted set: the beats a flush took out of <see cref="Beats"/> (renamed, so frozen) and has not yet
    /// written. A flush that dies leaves it for the next one. Nothing adds to it once frozen.
    /// </summary>
    public static readonly RedisKey Flushing = "conveyor:{presence}:flushing";

    /// <summary>
    /// Integer: the generation of <see cref="Flushing"/>, incremented by every freeze. A flush forgets what it wrote
    /// only while the generation it read is current, so a flush that outlived its frozen set never forgets the beats
    /// of a newer one.
    /// </summary>
    public static readonly RedisKey Generation = "conveyor:{presence}:generation";

    /// <summary>
    /// String <c>"&lt;last flush ms&gt;|&lt;unbroken since ms&gt;"</c>: Conveyor's own beat intake, stamped by every flush. The
    /// sweeper holds off until it has been unbroken for a whole stale window.
    /// </summary>
    public static readonly RedisKey Intake = "conveyor:{presence}:intake";

    /// <summary>Hash: the latest sweep's disruption verdict (what <c>GET /api/health</c> shows) and the mass-offline token bucket.</summary>
    public static readonly RedisKey Disruption = "conveyor:{presence}:disruption";

    /// <summary>KEYS of beat.lua.</summary>
    public static readonly RedisKey[] ForBeat = [Online, Seen, Beats, Flushing];

    /// <summary>KEYS of take.lua.</summary>
    public static readonly RedisKey[] ForTake = [Beats, Flushing, Generation, Intake];

    /// <summary>KEYS of forget.lua.</summary>
    public static readonly RedisKey[] ForForget = [Flushing, Generation, Online, Seen];

    /// <summary>KEYS of release_stale.lua.</summary>
    public static readonly RedisKey[] ForRelease = [Online, Seen, Beats, Flushing];

    /// <summary>Every presence key.</summary>
    public static readonly RedisKey[] All = [Online, Seen, Beats, Flushing, Generation, Intake, Disruption];

    /// <summary>
    /// Each member's latest buffered beat (ms, Redis time), live or frozen by a flush that has not written it yet; null
    /// when none waits. One transaction: a flush taking the live set between two separate reads could hide a beat from both.
    /// </summary>
    public static async Task<double?[]> BufferedBeatsAsync(IDatabase db, RedisValue[] members)
    {
        var both = db.CreateTransaction();
        var live = both.SortedSetScoresAsync(Beats, members);
        var frozen = both.SortedSetScoresAsync(Flushing, members);
        await both.ExecuteAsync();
        var (liveScores, frozenScores) = (await live, await frozen);
        return [.. liveScores.Zip(frozenScores, (a, b) => a is null ? b : b is null ? a : Math.Max(a.Value, b.Value))];
    }

    /// <summary>
    /// Each member's latest beat Redis knows (ms, Redis time): in the seen hash, or buffered, live or frozen by a flush
    /// that has not written it yet; null when there is none. One transaction: a flush taking the live set between two
    /// separate reads could hide a beat from both.
    /// </summary>
    public static async Task<double?[]> LatestBeatsAsync(IDatabase db, RedisValue[] members)
    {
        var all = db.CreateTransaction();
        var seen = all.HashGetAsync(Seen, members);
        var live = all.SortedSetScoresAsync(Beats, members);
        var frozen = all.SortedSetScoresAsync(Flushing, members);
        await all.ExecuteAsync();
        var (seenValues, liveScores, frozenScores) = (await seen, await live, await frozen);
        var latest = new double?[members.Length];
        for (var i = 0; i < members.Length; i++)
        {
            // A missing field is RedisValue.Null, which TryParse reads as 0.
            double? best = !seenValues[i].IsNull && seenValues[i].TryParse(out double ms) ? ms : null;
            foreach (var score in (ReadOnlySpan<double?>)[liveScores[i], frozenScores[i]])
            {
                if (score is { } s && (best is null || s > best))
                {
                    best = s;
                }
            }
            latest[i] = best;
        }
        return latest;
    }
}

/// <summary>The presence Lua scripts, embedded from <c>Presence/Lua/*.lua</c>.</summary>
internal static class PresenceScripts
{
    public static readonly RedisScript Beat = LuaScripts.Load("beat", "Presence");
    public static readonly RedisScript Take = LuaScripts.Load("take", "Presence");
    public static readonly RedisScript Forget = LuaScripts.Load("forget", "Presence");
    public static readonly RedisScript ReleaseStale = LuaScripts.Load("release_stale", "Presence");
    public static readonly RedisScript Online = LuaScripts.Load("online", "Presence");
    public static readonly RedisScript Disruption = LuaScripts.Load("disruption", "Presence");

    /// <summary>Every script, for tests that check them all.</summary>
    public static IReadOnlyList<RedisScript> All { get; } = [Beat, Take, Forget, ReleaseStale, Online, Disruption];
}
