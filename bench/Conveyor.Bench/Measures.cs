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

/// <summary>
/// CPU seconds used so far by this process, by Redis (INFO), and by every local PostgreSQL process (from
/// <c>/proc</c>; null when PostgreSQL runs elsewhere or <c>/proc</c> is not readable).
/// </summary>
internal readonly record struct CpuTimes(double Bench, double Redis, double? Postgres)
{
    public static CpuTimes operator -(CpuTimes a, CpuTimes b) => new(a.Bench - b.Bench, a.Redis - b.Redis, a.Postgres - b.Postgres);

    /// <summary>
    /// CPU used so far. With <paramref name="postmaster"/>, PostgreSQL's is that server's only (the postmaster and its
    /// children): other engineers' servers on a shared machine are left out.
    /// </summary>
    public static async Task<CpuTimes> ReadAsync(IServer server, int? postmaster = null)
    {
        var redis = (await RedisStats.ReadAsync(server)).CpuSeconds;
        return new CpuTimes(System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds, redis, PostgresSeconds(postmaster));
    }

    public Dictionary<string, double?> ToJson() => new()
    {
        ["bench"] = Math.Round(Bench * 1000),
        ["redis"] = Math.Round(Redis * 1000),
        ["postgres"] = Postgres is { } pg ? Math.Round(pg * 1000) : null,
    };

    /// <summary>
    /// utime + stime of every process named postgres (or only <paramref name="postmaster"/> and its children), in
    /// seconds (USER_HZ is 100 on Linux).
    /// </summary>
    private static double? PostgresSeconds(int? postmaster)
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }
        long ticks = 0;
        var found = false;
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                // pid (comm) state ...: comm may hold spaces, so split after its closing parenthesis.
                var open = stat.IndexOf('(');
                var close = stat.LastIndexOf(')');
                if (open < 0 || close < 0 || stat[(open + 1)..close] != "postgres")
                {
                    continue;
                }
                var fields = stat[(close + 2)..].Split(' ');
                // fields[1] is the parent pid.
                if (postmaster is { } pm && Path.GetFileName(dir) != pm.ToString(CultureInfo.InvariantCulture)
                    && fields[1] != pm.ToString(CultureInfo.InvariantCulture))
                {
                    continue;
                }
                ticks += long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
                found = true;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
            {
                // A process that ended while we read, or one we may not see.
            }
        }
        return found ? ticks / 100.0 : null;
    }
}
