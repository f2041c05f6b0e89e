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
}
