using StackExchange.Redis;

namespace Conveyor.Storage;

/// <summary>The Redis server clock: the one clock every Conveyor process compares against.</summary>
internal static class RedisTime
{
    public static async Task<long> NowMsAsync(IDatabaseAsync db)
    {
        var reply = (RedisResult[])(await db.ExecuteAsync("TIME"))!;
        return (long)reply[0] * 1000 + (long)reply[1] / 1000;
    }

    /// <summary>Redis milliseconds as a UTC instant (what PostgreSQL stores as timestamptz).</summary>
    public static DateTime ToUtc(long ms) => DateTime.UnixEpoch.AddMilliseconds(ms);
}
