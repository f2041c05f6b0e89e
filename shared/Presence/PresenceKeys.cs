using Conveyor.Queue;
using StackExchange.Redis;

namespace Conveyor.Presence;

/// <summary>
/// The Redis keys of presence. Both carry the <c>{presence}</c> hash tag, so every presence script runs
/// in one hash slot on clustered Redis.
/// </summary>
internal static class PresenceKeys
{
    /// <summary>Hash: runtime id → SHA-256 hex of its token, for every runtime known online.</summary>
    public static readonly RedisKey Online = "conveyor:{presence}:online";

    /// <summary>Sorted set: runtime id → its latest buffered beat (ms, Redis time).</summary>
    public static readonly RedisKey Beats = "conveyor:{presence}:beats";

    /// <summary>KEYS of every presence script, in the order their headers list them.</summary>
    public static readonly RedisKey[] Both = [Online, Beats];
}

/// <summary>The presence Lua scripts, embedded from <c>Presence/Lua/*.lua</c>.</summary>
internal static class PresenceScripts
{
    public static readonly RedisScript Beat = LuaScripts.Load("beat", "Presence");
    public static readonly RedisScript Settle = LuaScripts.Load("settle", "Presence");
    public static readonly RedisScript ReleaseStale = LuaScripts.Load("release_stale", "Presence");

    /// <summary>Every script, for tests that check them all.</summary>
    public static IReadOnlyList<RedisScript> All { get; } = [Beat, Settle, ReleaseStale];
}
