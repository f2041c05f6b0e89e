using System.Globalization;
using StackExchange.Redis;

namespace Conveyor.Bench;

/// <summary>Client commands (what Redis counts in INFO: script calls and the commands they run), script calls, CPU.</summary>
internal readonly record struct RedisStats(long Commands, long ScriptCalls, double CpuSeconds)
{
    public static RedisStats operator -(RedisStats a, RedisStats b) => new(a.Commands - b.Commands, a.ScriptCalls - b.ScriptCalls, a.CpuSeconds - b.CpuSeconds);

    public static async Task<RedisStats> ReadAsync(IServer server)
    {
        var info = (await server.InfoAsync()).SelectMany(g => g).ToDictionary(p => p.Key, p => p.Value);
        var commandStats = (await server.InfoAsync("commandstats")).SelectMany(g => g).ToList();
        long Calls(string name) => commandStats.Where(p => p.Key == "cmdstat_" + name)
            .Select(p => long.Parse(p.Value.Split(',')[0]["calls=".Length..], CultureInfo.InvariantCulture)).Sum();
        var cpu = double.Parse(info["used_cpu_user"], CultureInfo.InvariantCulture) + double.Parse(info["used_cpu_sys"], CultureInfo.InvariantCulture);
        return new RedisStats(long.Parse(info["total_commands_processed"], CultureInfo.InvariantCulture), Calls("evalsha") + Calls("eval"), cpu);
    }
}

internal static class Latency
{
    /// <summary>The <paramref name="p"/> quantile (nearest rank) of <paramref name="sorted"/> latencies; NaN when empty.</summary>
    public static double Percentile(IReadOnlyList<double> sorted, double p) =>
        sorted.Count == 0 ? double.NaN : sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];
}
