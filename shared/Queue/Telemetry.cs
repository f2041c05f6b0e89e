using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Conveyor;

/// <summary>The <c>Conveyor</c> meter and activity source. Add both to OpenTelemetry by name.</summary>
public static class ConveyorTelemetry
{
    /// <summary>Name of the meter and of the activity source.</summary>
    public const string Name = "Conveyor";

    internal static readonly ActivitySource Source = new(Name);
    internal static readonly Meter Meter = new(Name);

    internal static readonly Counter<long> Enqueued = Meter.CreateCounter<long>("conveyor.jobs.enqueued", "{job}", "Jobs added to a queue");
    internal static readonly Counter<long> Claimed = Meter.CreateCounter<long>("conveyor.jobs.claimed", "{job}", "Jobs claimed by processors");
    internal static readonly Counter<long> Acked = Meter.CreateCounter<long>("conveyor.jobs.acked", "{job}", "Jobs that finished and left Redis");
    internal static readonly Counter<long> Retried = Meter.CreateCounter<long>("conveyor.jobs.retried", "{job}", "Failed jobs scheduled for another attempt");
    internal static readonly Counter<long> Killed = Meter.CreateCounter<long>("conveyor.jobs.killed", "{job}", "Jobs moved to the dead set");
    internal static readonly Counter<long> Recovered = Meter.CreateCounter<long>("conveyor.jobs.recovered", "{job}", "Jobs taken back from consumers that stopped heartbeating");
    internal static readonly Counter<long> LostClaims = Meter.CreateCounter<long>("conveyor.jobs.lost_claims", "{job}", "Acks, retries or kills refused because the consumer no longer held the claim");
    internal static readonly Counter<long> MaintenanceFailures = Meter.CreateCounter<long>("conveyor.maintenance.failures", "{queue}", "Queues whose scheduler or custodian pass failed (the pass went on with the others)");
    internal static readonly Counter<long> WakeMessages = Meter.CreateCounter<long>("conveyor.wake.messages", "{message}", "Wake-up messages posted, each asking for one processor session");
    /// <summary>Queues the scheduler last found unserved past <c>Conveyor:Queue:UnservedAfter</c> in this process: queue → seconds unserved.</summary>
    internal static readonly System.Collections.Concurrent.ConcurrentDictionary<string, double> UnservedQueues = new(StringComparer.Ordinal);

    internal static readonly ObservableGauge<double> Unserved = Meter.CreateObservableGauge(
        "conveyor.queue.unserved",
        () => UnservedQueues.Select(q => new Measurement<double>(q.Value, QueueTag(q.Key))),
        "s",
        "How long a queue has had ready jobs and no live consumer (only queues past Conveyor:Queue:UnservedAfter)");

    internal static readonly Histogram<double> Duration = Meter.CreateHistogram<double>("conveyor.job.duration", "ms", "How long handlers ran");
    internal static readonly Histogram<double> WaitTime = Meter.CreateHistogram<double>("conveyor.job.wait_time", "ms", "From due to claimed, on Redis time");

    // Presence
    internal static readonly Counter<long> BeatsBuffered = Meter.CreateCounter<long>("conveyor.heartbeats.buffered", "{beat}", "Beats recorded in Redis only");
    internal static readonly Counter<long> BeatsSynchronous = Meter.CreateCounter<long>("conveyor.heartbeats.synchronous", "{beat}", "Beats written to PostgreSQL at once");
    internal static readonly Counter<long> BeatsRejected = Meter.CreateCounter<long>("conveyor.heartbeats.rejected", "{beat}", "Beats with an unknown runtime or a wrong token");
    internal static readonly Counter<long> RowsFlushed = Meter.CreateCounter<long>("conveyor.heartbeats.flushed", "{row}", "Runtime rows bumped by a flush");
    internal static readonly Counter<long> RowsRaced = Meter.CreateCounter<long>("conveyor.heartbeats.raced", "{row}", "Buffered beats whose runtime was no longer online");
    internal static readonly Counter<long> RuntimesSwept = Meter.CreateCounter<long>("conveyor.runtimes.swept", "{runtime}", "Runtimes marked offline by the stale sweeper");
    internal static readonly Counter<long> RuntimesHeldBack = Meter.CreateCounter<long>(
        "conveyor.runtimes.held_back", "{runtime}", "Silent runtimes a sweep left online because it was in disruption mode (tag conveyor.disruption says why)");
    internal static readonly Gauge<int> SweepDisruption = Meter.CreateGauge<int>(
        "conveyor.runtimes.disruption", "{sweep}", "1 while the latest stale sweep was in disruption mode, 0 otherwise (tag conveyor.disruption: none, intakeInterrupted, fleetSilent, massSilence)");
    internal static readonly Histogram<double> FlushDuration = Meter.CreateHistogram<double>("conveyor.heartbeats.flush_duration", "ms", "How long one flush took");

    internal static KeyValuePair<string, object?> QueueTag(string queue) => new("conveyor.queue", queue);
}
