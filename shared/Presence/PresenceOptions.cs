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
/// <see cref="WriteWindow"/> + <see cref="BeatInterval"/> + <see cref="FlushInterval"/> + <see cref="SweepInterval"/>
/// &lt; <see cref="StaleWindow"/>.
/// </summary>
public sealed class PresenceOptions
{
    public const string Section = "Conveyor:Presence";

    /// <summary>The write window when none is configured and the stale window leaves room for it.</summary>
    public static readonly TimeSpan DefaultWriteWindow = TimeSpan.FromSeconds(60);

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
    /// than write window + beat + flush + sweep intervals.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan StaleWindow { get; set; } = TimeSpan.FromSeconds(150);

    /// <summary>
    /// A runtime's <c>last_seen_at</c> in PostgreSQL is written only when the stored value is at least this old (or
    /// the runtime flips online); a fresher beat is kept in Redis only (<c>conveyor:{presence}:seen</c>), where the
    /// sweeper and the API read it. So PostgreSQL's value trails a runtime's latest beat by at most
    /// WriteWindow + BeatInterval + FlushInterval. Each runtime's own window is between three quarters and all of this,
    /// fixed by its id, so runtimes written together do not fall due together again every window. 0 writes every
    /// beat. Default: 60 s when
    /// 60 s + BeatInterval + FlushInterval + SweepInterval &lt; StaleWindow (so with the default intervals), otherwise 0.
    /// Bounds: 0 to 1 h, and the invariant.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "01:00:00")]
    public TimeSpan? WriteWindow { get; set; }

    /// <summary>The write window in force: <see cref="WriteWindow"/>, or its default (see there) when not set.</summary>
    public TimeSpan EffectiveWriteWindow => WriteWindow ??
        (DefaultWriteWindow + BeatInterval + FlushInterval + SweepInterval < StaleWindow ? DefaultWriteWindow : TimeSpan.Zero);

    /// <summary>Buffered beats written per UPDATE statement. Default: 5,000. Bounds: 1 to 50,000.</summary>
    [Range(1, 50_000)]
    public int FlushBatchSize { get; set; } = 5000;

    /// <summary>Stale runtimes marked offline per UPDATE statement. Default: 5,000. Bounds: 1 to 50,000.</summary>
    [Range(1, 50_000)]
    public int SweepBatchSize { get; set; } = 5000;

    /// <summary>
    /// Synchronous beats (offline→online flips, mostly) that arrive together are written in one statement: a flip
    /// waits at most this long for others to join its group, and is answered once its group has committed.
    /// 0 sends what has gathered at once. Default: 2 ms. Bounds: 0 to 1 s.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:00:01")]
    public TimeSpan FlipGroupWindow { get; set; } = TimeSpan.FromMilliseconds(2);

    /// <summary>Most synchronous beats written in one statement; a full group goes at once. Default: 500. Bounds: 1 to 10,000.</summary>
    [Range(1, 10_000)]
    public int FlipGroupSize { get; set; } = 500;

    /// <summary>
    /// Disruption mode: a sweep that finds more than this share of the online runtimes silent (and at least
    /// <see cref="MassOfflineMinimum"/> of them) marks at most <see cref="MassOfflineRate"/> of them offline per second,
    /// and none when every online runtime is silent (Conveyor more likely cannot hear them than they all died).
    /// 1 turns both rules off. Default: 0.5. Bounds: 0.01 to 1.
    /// </summary>
    [Range(0.01, 1.0)]
    public double MassOfflineShare { get; set; } = 0.5;

    /// <summary>Fewest silent runtimes that can put a sweep in disruption mode. Default: 10. Bounds: 1 to 10,000,000.</summary>
    [Range(1, 10_000_000)]
    public int MassOfflineMinimum { get; set; } = 10;

    /// <summary>
    /// Runtimes per second marked offline while more than <see cref="MassOfflineShare"/> are silent, longest silent
    /// first; a sweep may use what accrued since the last one, up to one <see cref="SweepInterval"/>'s worth. 0 holds
    /// them all off. Default: 100. Bounds: 0 to 1,000,000.
    /// </summary>
    [Range(0.0, 1_000_000.0)]
    public double MassOfflineRate { get; set; } = 100;

    /// <summary>
    /// The longest pause in Conveyor's own beat intake (the heartbeat flush stamps it at every run) that cannot make a
    /// beating runtime look silent for a whole stale window: StaleWindow − 2 × BeatInterval (a runtime's last beat
    /// before the pause can be a beat interval before it, and its first one after a beat interval after it). After a
    /// longer pause every runtime gets a full stale window from the first flush after it. Must exceed
    /// 2 × FlushInterval (checked at start-up), so that one late or skipped flush is not taken for a pause.
    /// </summary>
    public TimeSpan IntakeGap => StaleWindow - 2 * BeatInterval;
}

/// <summary>
/// A live runtime must never look stale, even to a sweeper that has only PostgreSQL to go by (Redis lost its data):
/// its stored last_seen_at may be a write window old, its newest beat can wait one beat interval to arrive, one flush
/// interval to reach PostgreSQL, and one sweep interval before the sweeper looks again. The timers' schedules
/// (<c>ConveyorHeartbeatFlushSchedule</c>, <c>ConveyorStaleSweeperSchedule</c>) must not leave longer gaps than the
/// intervals the invariant is checked on, and the sweeper relies on the flush's stamps of the beat intake.
/// </summary>
internal sealed class PresenceOptionsValidator(IConfiguration configuration) : IValidateOptions<PresenceOptions>
{
    public ValidateOptionsResult Validate(string? name, PresenceOptions options)
    {
        var failures = new List<string>();
        var window = options.EffectiveWriteWindow;
        var total = window + options.BeatInterval + options.FlushInterval + options.SweepInterval;
        if (total >= options.StaleWindow)
        {
            failures.Add(
                $"Conveyor:Presence:WriteWindow ({window}) + BeatInterval ({options.BeatInterval}) + FlushInterval ({options.FlushInterval}) + SweepInterval ({options.SweepInterval}) " +
                $"= {total} must be less than Conveyor:Presence:StaleWindow ({options.StaleWindow}), or live runtimes are marked offline");
        }
        if (options.IntakeGap <= 2 * options.FlushInterval)
        {
            failures.Add(
                $"Conveyor:Presence:StaleWindow ({options.StaleWindow}) - 2 x BeatInterval ({options.BeatInterval}) = {options.IntakeGap} must be more than " +
                $"2 x FlushInterval ({options.FlushInterval}): the stale sweeper takes a longer pause between heartbeat flushes for an interruption " +
                "of Conveyor's beat intake, and would hold silent runtimes back after every late flush");
        }
        CheckSchedule("HeartbeatFlush", Schedules.HeartbeatFlush, "FlushInterval", options.FlushInterval, failures);
        CheckSchedule("StaleSweeper", Schedules.StaleSweeper, "SweepInterval", options.SweepInterval, failures);
        if (Schedules.IsDisabled(configuration, "HeartbeatFlush") && !Schedules.IsDisabled(configuration, "StaleSweeper"))
        {
            failures.Add(
                "AzureWebJobs.HeartbeatFlush.Disabled=true while the StaleSweeper runs: the sweeper holds off while no flush stamps " +
                "Conveyor's beat intake, so it would never mark a runtime offline. Disable both or neither");
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    private void CheckSchedule(string function, string setting, string option, TimeSpan interval, List<string> failures) =>
        Schedules.CheckGap(
            configuration, function, setting, interval, $"Conveyor:Presence:{option}",
            $"that the stale-window invariant counts on: set {option} to at least that gap, or run the timer more often", failures);
}
