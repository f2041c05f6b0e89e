using System.ComponentModel.DataAnnotations;
using Conveyor.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;
using NCrontab;

namespace Conveyor.Presence;

/// <summary>How heartbeats reach PostgreSQL.</summary>
public enum PresenceMode
{
    /// <summary>Beats of online runtimes are buffered in Redis and flushed in bulk (the default).</summary>
    Batched,

    /// <summary>Every beat updates PostgreSQL at once: for small installs and for comparison.</summary>
    Passthrough,
}

/// <summary>
/// Runtime presence: heartbeats, flush and stale sweep. Section <c>Conveyor:Presence</c>.
/// The timers run on the schedules in app settings <c>ConveyorHeartbeatFlushSchedule</c> and
/// <c>ConveyorStaleSweeperSchedule</c>; <see cref="FlushInterval"/> and <see cref="SweepInterval"/> must be at least
/// their longest gaps (checked at start-up), because the start-up invariant is checked on these values:
/// <see cref="BeatInterval"/> + <see cref="FlushInterval"/> + <see cref="SweepInterval"/> &lt; <see cref="StaleWindow"/>.
/// </summary>
public sealed class PresenceOptions
{
    public const string Section = "Conveyor:Presence";

    /// <summary>Batched (default) or Passthrough.</summary>
    public PresenceMode Mode { get; set; } = PresenceMode.Batched;

    /// <summary>How often runtimes are told to beat. Default: 15 s. Bounds: 100 ms to 1 h.</summary>
    [Range(typeof(TimeSpan), "00:00:00.1", "01:00:00")]
    public TimeSpan BeatInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>Period of the heartbeat flush timer. Default: 10 s. Bounds: 100 ms to 1 h.</summary>
    [Range(typeof(TimeSpan), "00:00:00.1", "01:00:00")]
    public TimeSpan FlushInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Period of the stale sweeper timer. Default: 30 s. Bounds: 100 ms to 1 h.</summary>
    [Range(typeof(TimeSpan), "00:00:00.1", "01:00:00")]
    public TimeSpan SweepInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A runtime silent this long (Redis time) goes offline. Default: 150 s. Bounds: 1 s to 1 day, and more
    /// than beat + flush + sweep intervals.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan StaleWindow { get; set; } = TimeSpan.FromSeconds(150);

    /// <summary>Buffered beats written per UPDATE statement. Default: 5,000. Bounds: 1 to 50,000.</summary>
    [Range(1, 50_000)]
    public int FlushBatchSize { get; set; } = 5000;

    /// <summary>Stale runtimes marked offline per UPDATE statement. Default: 5,000. Bounds: 1 to 50,000.</summary>
    [Range(1, 50_000)]
    public int SweepBatchSize { get; set; } = 5000;
}

/// <summary>
/// A live runtime must never look stale: its newest beat can wait one beat interval to arrive, one flush
/// interval to reach PostgreSQL, and one sweep interval before the sweeper looks again.
/// The timers' schedules (<c>ConveyorHeartbeatFlushSchedule</c>, <c>ConveyorStaleSweeperSchedule</c>) must not
/// leave longer gaps than the intervals the invariant is checked on.
/// </summary>
internal sealed class PresenceOptionsValidator(IConfiguration configuration) : IValidateOptions<PresenceOptions>
{
    public ValidateOptionsResult Validate(string? name, PresenceOptions options)
    {
        var failures = new List<string>();
        var total = options.BeatInterval + options.FlushInterval + options.SweepInterval;
        if (total >= options.StaleWindow)
        {
            failures.Add(
                $"Conveyor:Presence:BeatInterval ({options.BeatInterval}) + FlushInterval ({options.FlushInterval}) + SweepInterval ({options.SweepInterval}) " +
                $"= {total} must be less than Conveyor:Presence:StaleWindow ({options.StaleWindow}), or live runtimes are marked offline");
        }
        CheckSchedule("HeartbeatFlush", Schedules.HeartbeatFlush, "FlushInterval", options.FlushInterval, failures);
        CheckSchedule("StaleSweeper", Schedules.StaleSweeper, "SweepInterval", options.SweepInterval, failures);
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    private void CheckSchedule(string function, string setting, string option, TimeSpan interval, List<string> failures) =>
        Schedules.CheckGap(
            configuration, function, setting, interval, $"Conveyor:Presence:{option}",
            $"that the stale-window invariant counts on: set {option} to at least that gap, or run the timer more often", failures);
}
