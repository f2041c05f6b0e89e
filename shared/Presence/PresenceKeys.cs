using Conveyor.Queue;
using StackExchange.Redis;

namespace Conveyor.Presence;

/// <summary>
/// The Redis keys of presence. All carry the <c>{presence}</c> hash tag, so every presence script runs
/// in one hash slot on clustered Redis.
/// </summary>
internal static class PresenceKeys
{
    /// <summary>Hash: runtime id → SHA-256 hex of its token, for every runtime known online.</summary>
    public static readonly RedisKey Online = "conveyor:{presence}:online";

    /// <summary>Sorted set: runtime id → its latest buffered beat (ms, Redis time). Beats land here.</summary>
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

    /// <summary>KEYS of beat.lua.</summary>
    public static readonly RedisKey[] OnlineAndBeats = [Online, Beats];

    /// <summary>KEYS of take.lua.</summary>
    public static readonly RedisKey[] BeatsFlushingAndGeneration = [Beats, Flushing, Generation];

    /// <summary>KEYS of forget.lua.</summary>
    public static readonly RedisKey[] FlushingAndGeneration = [Flushing, Generation];

    /// <summary>KEYS of release_stale.lua.</summary>
    public static readonly RedisKey[] OnlineBeatsAndFlushing = [Online, Beats, Flushing];

    /// <summary>Every presence key.</summary>
    public static readonly RedisKey[] All = [Online, Beats, Flushing, Generation];

    /// <summary>
    /// Each member's latest buffered beat (ms, Redis time), live or frozen by a flush that has not written it yet;
    /// null when none waits. One transaction: a flush taking the live set between two separate reads could hide a
    /// beat from both.
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
}

/// <summary>The presence Lua scripts, embedded from <c>Presence/Lua/*.lua</c>.</summary>
internal static class PresenceScripts
{
    public static readonly RedisScript Beat = LuaScripts.Load("beat", "Presence");
    public static readonly RedisScript Take = LuaScripts.Load("take", "Presence");
    public static readonly RedisScript Forget = LuaScripts.Load("forget", "Presence");
    public static readonly RedisScript ReleaseStale = LuaScripts.Load("release_stale", "Presence");

    /// <summary>Every script, for tests that check them all.</summary>
    public static IReadOnlyList<RedisScript> All { get; } = [Beat, Take, Forget, ReleaseStale];
}
