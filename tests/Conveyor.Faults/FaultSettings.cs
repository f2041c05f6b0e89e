namespace Conveyor.Faults;

/// <summary>
/// The shape of one scenario. The defaults keep a scenario under a minute on a loaded 2-core machine: a few
/// thousand jobs, second-scale heartbeats and timeouts, and bounds on every wait that are generous multiples of
/// them.
/// </summary>
internal sealed record FaultSettings
{
    /// <summary>Jobs enqueued over <see cref="FeedFor"/>.</summary>
    public int Jobs { get; init; } = 2000;

    public TimeSpan FeedFor { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>Processor processes running at once (a killed one is replaced).</summary>
    public int Workers { get; init; } = 3;

    /// <summary>Runtimes beating over the API.</summary>
    public int Runtimes { get; init; } = 60;

    /// <summary>Redis writes an append-only file, fsynced on every write.</summary>
    public bool Aof { get; init; }

    /// <summary>
    /// The custodian's ConsumerTimeout. 12 s: well above the 1 s heartbeat and above the 7 s stall, so that stall
    /// must cause no duplicate at all; well below the 30 s one.
    /// </summary>
    public TimeSpan ConsumerTimeout { get; init; } = TimeSpan.FromSeconds(12);

    /// <summary>Presence stale window (beat, flush and sweep intervals are 1 s each).</summary>
    public TimeSpan StaleWindow { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Beats per flush UPDATE: small, so a flush of the fleet takes several batches and overlaps more.</summary>
    public int FlushBatchSize { get; init; } = 20;

    /// <summary>Latency the proxies of each API instance (by index) add to each chunk, to Redis and to PostgreSQL. Default: none.</summary>
    public IReadOnlyList<TimeSpan> InstanceLatency { get; init; } = [TimeSpan.Zero, TimeSpan.Zero];
}
