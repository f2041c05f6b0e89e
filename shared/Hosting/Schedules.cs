using Microsoft.Extensions.Configuration;
using NCrontab;

namespace Conveyor.Hosting;

/// <summary>
/// The maintenance schedules: NCRONTAB with seconds, UTC, read from flat app settings so that Azure
/// Functions (<c>%ConveyorSchedulerSchedule%</c>), <c>func start</c> and the self-host run the same cadence.
/// </summary>
public static class Schedules
{
    public const string Scheduler = "ConveyorSchedulerSchedule";
    public const string Custodian = "ConveyorCustodianSchedule";
    public const string HeartbeatFlush = "ConveyorHeartbeatFlushSchedule";
    public const string StaleSweeper = "ConveyorStaleSweeperSchedule";
    public const string Processor = "ConveyorProcessorSchedule";

    /// <summary>Setting name → default expression (also in <c>local.settings.sample.json</c>).</summary>
    public static IReadOnlyDictionary<string, string> Defaults { get; } = new Dictionary<string, string>
    {
        [Scheduler] = "*/5 * * * * *",
        [Custodian] = "*/15 * * * * *",
        [HeartbeatFlush] = "*/10 * * * * *",
        [StaleSweeper] = "*/30 * * * * *",
        [Processor] = "*/10 * * * * *",
    };

    /// <summary>Parses a six-field (seconds first) or five-field NCRONTAB expression.</summary>
    /// <exception cref="ConveyorValidationException">The expression does not parse.</exception>
    public static CrontabSchedule Parse(string setting, string? expression)
    {
        var fields = expression?.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length ?? 0;
        var schedule = CrontabSchedule.TryParse(expression ?? "", new CrontabSchedule.ParseOptions { IncludingSeconds = fields == 6 });
        return schedule ?? throw new ConveyorValidationException(setting, $"'{expression}' is not an NCRONTAB expression ({{second}} {{minute}} {{hour}} {{day}} {{month}} {{day-of-week}})");
    }

    /// <summary>
    /// Whether the timer named <paramref name="function"/> is switched off with the Azure Functions app setting
    /// <c>AzureWebJobs.&lt;name&gt;.Disabled=true</c> (or <c>AzureWebJobs__&lt;name&gt;__Disabled</c> as an
    /// environment variable). The self-host honours the same setting.
    /// </summary>
    public static bool IsDisabled(IConfiguration configuration, string function)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var value = configuration[$"AzureWebJobs.{function}.Disabled"] ?? configuration[$"AzureWebJobs:{function}:Disabled"];
        return bool.TryParse(value, out var disabled) && disabled;
    }

    /// <summary>
    /// Checks that the timer <paramref name="function"/> (schedule in app setting <paramref name="setting"/>) never leaves
    /// more than <paramref name="limit"/> between two runs; adds a message to <paramref name="failures"/> when it does, or
    /// when the expression does not parse. <paramref name="limitName"/> and <paramref name="advice"/> say in the message
    /// what the limit is and what to do. A timer switched off (<c>AzureWebJobs.&lt;name&gt;.Disabled</c>) runs nothing to check.
    /// </summary>
    internal static void CheckGap(
        IConfiguration configuration, string function, string setting, TimeSpan limit, string limitName, string advice, List<string> failures)
    {
        if (IsDisabled(configuration, function))
        {
            return;
        }
        var expression = configuration[setting] ?? Defaults[setting];
        CrontabSchedule schedule;
        try
        {
            schedule = Parse(setting, expression);
        }
        catch (ConveyorValidationException ex)
        {
            failures.Add(ex.Message);
            return;
        }
        var gap = LongestGap(schedule);
        if (gap > limit)
        {
            failures.Add($"{setting} '{expression}' leaves up to {gap} between runs, longer than {limitName} ({limit}) {advice}");
        }
    }

    /// <summary>
    /// The longest time between two consecutive runs of <paramref name="schedule"/> over the coming week (at most
    /// 20,000 runs looked at): what a stale-window invariant has to count on.
    /// </summary>
    public static TimeSpan LongestGap(CrontabSchedule schedule)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        var until = DateTime.UtcNow.AddDays(7);
        var previous = schedule.GetNextOccurrence(DateTime.UtcNow);
        var longest = TimeSpan.Zero;
        for (var runs = 0; runs < 20_000; runs++)
        {
            var next = schedule.GetNextOccurrence(previous);
            if (next - previous > longest)
            {
                longest = next - previous;
            }
            previous = next;
            if (previous >= until)
            {
                break;
            }
        }
        return longest;
    }
}
