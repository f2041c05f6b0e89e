using Conveyor.Faults.Infrastructure;
using Conveyor.Faults.Ledger;
using StackExchange.Redis;

namespace Conveyor.Faults;

/// <summary>The suite's own PostgreSQL cluster, shared by its scenarios (each has its own database in it).</summary>
public sealed class FaultServers : IAsyncLifetime
{
    private PostgresCluster? _cluster;

    internal PostgresCluster Cluster => _cluster ?? throw new InvalidOperationException("not initialised");

    public async Task InitializeAsync() => _cluster = await PostgresCluster.StartAsync();

    public async Task DisposeAsync()
    {
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }
    }
}

/// <summary>
/// The fault-injection suite (docs/reliability.md): real worker processes, real redis-server and PostgreSQL of the
/// suite's own, two API instances with every timer, and one kind of fault per scenario. Each scenario prints one
/// JSON summary line and asserts the invariants: no acknowledged job lost, none stuck once the faults stop, no
/// acknowledged beat lost, and every duplicate run explained by a fault that may cause one. Scenarios run one at a
/// time (one class): they load the machine, and their timing bounds assume nothing else of theirs runs.
/// Run one: <c>./dev test --filter "FullyQualifiedName~Faults.FaultScenarios.Redis_paused"</c>.
/// </summary>
public sealed class FaultScenarios(FaultServers servers, ITestOutputHelper output) : IClassFixture<FaultServers>
{
    [Fact]
    public async Task Processor_processes_killed_and_frozen_while_they_hold_claims()
    {
        var settings = new FaultSettings { Jobs = 2000, FeedFor = TimeSpan.FromSeconds(15), Runtimes = 30 };
        await using var run = await FaultRun.StartAsync(nameof(Processor_processes_killed_and_frozen_while_they_hold_claims), settings, servers, output);
        run.StartLoad(_ => null);

        await Task.Delay(TimeSpan.FromSeconds(2));
        // One worker frozen longer than ConsumerTimeout: the custodian must take its jobs back, its late acks must
        // change nothing. Six others killed (SIGKILL) while handlers run in them, each replaced.
        var frozen = run.LiveWorkers[0];
        var freezing = run.FreezeWorkerAsync(frozen, settings.ConsumerTimeout + TimeSpan.FromSeconds(2));
        var killedWhileRunning = new List<int>();
        for (var i = 0; i < 6; i++)
        {
            await Task.Delay(TimeSpan.FromSeconds(1.5));
            killedWhileRunning.Add(await run.KillWorkerHoldingClaimsAsync(spare: frozen));
        }
        await freezing;
        var (summary, findings) = await run.FinishAsync();

        Assert.All(killedWhileRunning, running => Assert.True(running > 0));
        AssertInvariants(run, summary, findings);
        // The kills hit running handlers, so their jobs ran again (each explained by its kill).
        Assert.True(summary.DuplicateRuns > 0, $"no job ran twice although workers died mid-run: {summary.ToJson()}");
        run.Passed();
    }

    [Fact]
    public async Task Redis_killed_and_restarted_with_appendfsync_always()
    {
        // Each round (a pause, a wait for busy workers, the kill and the restart from the AOF) takes 3-4 s on a loaded
        // machine, and the producer's own enqueues slow down with every restart: the load lasts long enough for five.
        var settings = new FaultSettings { Jobs = 2000, FeedFor = TimeSpan.FromSeconds(24), Aof = true };
        await using var run = await FaultRun.StartAsync(nameof(Redis_killed_and_restarted_with_appendfsync_always), settings, servers, output);
        run.StartLoad(HalfStopWithin(run, TimeSpan.FromSeconds(20)));

        for (var i = 0; i < 5; i++)
        {
            await Task.Delay(TimeSpan.FromSeconds(2));
            await run.WaitUntilEveryWorkerIsBusyAsync();
            // Silent well under ConsumerTimeout: a restart may not make any job run twice.
            await run.FaultAsync("kill -9 and restart Redis", "appendonly yes, appendfsync always", silencesConsumers: true, async () =>
            {
                run.Redis.Kill();
                await run.Redis.RestartAsync();
            });
        }
        var (summary, findings) = await run.FinishAsync();

        AssertInvariants(run, summary, findings);
        run.Passed();
    }

    [Fact]
    public async Task Redis_paused_7_s_shorter_than_the_consumer_timeout()
    {
        var settings = new FaultSettings { Jobs = 1500, FeedFor = TimeSpan.FromSeconds(12) };
        await using var run = await FaultRun.StartAsync(nameof(Redis_paused_7_s_shorter_than_the_consumer_timeout), settings, servers, output);
        run.StartLoad(HalfStopWithin(run, TimeSpan.FromSeconds(12)));

        await Task.Delay(TimeSpan.FromSeconds(3));
        await run.WaitUntilEveryWorkerIsBusyAsync();
        var stall = TimeSpan.FromSeconds(7);
        var blocked = TimeSpan.Zero;
        var window = await run.FaultAsync("CLIENT PAUSE ALL", "7 s", silencesConsumers: true, async () =>
        {
            await run.RedisAdmin.ExecuteAsync("CLIENT", "PAUSE", $"{(long)stall.TotalMilliseconds}", "ALL");
            var clock = System.Diagnostics.Stopwatch.StartNew();
            await run.Db.PingAsync();
            blocked = clock.Elapsed;
        });
        var (summary, findings) = await run.FinishAsync();

        Assert.True(blocked > stall - TimeSpan.FromSeconds(1), $"Redis answered after {blocked}: it was not paused");
        Assert.False(window.ExplainsDuplicates);
        AssertInvariants(run, summary, findings);
        run.Passed();
    }

    [Fact]
    public async Task Redis_frozen_30_s_longer_than_the_consumer_timeout()
    {
        var settings = new FaultSettings { Jobs = 1200, FeedFor = TimeSpan.FromSeconds(10) };
        await using var run = await FaultRun.StartAsync(nameof(Redis_frozen_30_s_longer_than_the_consumer_timeout), settings, servers, output);
        run.StartLoad(HalfStopWithin(run, TimeSpan.FromSeconds(36)));

        await Task.Delay(TimeSpan.FromSeconds(3));
        await run.WaitUntilEveryWorkerIsBusyAsync();
        var window = await run.FaultAsync("SIGSTOP redis-server", "30 s", silencesConsumers: true, async () =>
        {
            run.Redis.Freeze();
            try
            {
                await Task.Delay(TimeSpan.FromSeconds(30));
            }
            finally
            {
                run.Redis.Thaw();
            }
        });
        var (summary, findings) = await run.FinishAsync();

        Assert.True(window.ExplainsDuplicates);
        AssertInvariants(run, summary, findings);
        run.Passed();
    }

    [Fact]
    public async Task One_worker_cut_off_from_Redis_shorter_and_longer_than_the_consumer_timeout()
    {
        var settings = new FaultSettings { Jobs = 1500, FeedFor = TimeSpan.FromSeconds(14) };
        await using var run = await FaultRun.StartAsync(nameof(One_worker_cut_off_from_Redis_shorter_and_longer_than_the_consumer_timeout), settings, servers, output);
        run.StartLoad(HalfStopWithin(run, TimeSpan.FromSeconds(14)));

        await Task.Delay(TimeSpan.FromSeconds(3));
        // A network partition of one process at a time, the others running on. 6 s outlasts the client's 5 s timeouts
        // but not ConsumerTimeout: none of that worker's jobs may run twice. The long one may re-run the jobs it held.
        var workers = run.LiveWorkers;
        await Task.WhenAll(
            run.CutOffFromRedisAsync(workers[0], TimeSpan.FromSeconds(6)),
            run.CutOffFromRedisAsync(workers[1], settings.ConsumerTimeout + TimeSpan.FromSeconds(3)));
        var (summary, findings) = await run.FinishAsync();

        AssertInvariants(run, summary, findings);
        run.Passed();
    }

    [Fact]
    public async Task Connections_to_Redis_cut_mid_script()
    {
        var settings = new FaultSettings { Jobs = 2000, FeedFor = TimeSpan.FromSeconds(16) };
        await using var run = await FaultRun.StartAsync(nameof(Connections_to_Redis_cut_mid_script), settings, servers, output);
        run.StartLoad(HalfStopWithin(run, TimeSpan.FromSeconds(16)));

        await Task.Delay(TimeSpan.FromSeconds(2));
        // Scripts reach Redis and run, and their replies never come back; now and then every connection is reset,
        // and once Redis itself blocks for 2 s (DEBUG SLEEP). None of it silences a consumer for long.
        await run.FaultAsync("cut connections after scripts", "5% of script calls, all connections every 3.5 s, DEBUG SLEEP 2", silencesConsumers: false, async () =>
        {
            foreach (var proxy in run.RedisProxies)
            {
                proxy.CutAfterScripts(0.05);
            }
            for (var i = 0; i < 3; i++)
            {
                await Task.Delay(TimeSpan.FromSeconds(3.5));
                foreach (var proxy in run.RedisProxies)
                {
                    proxy.CutAll();
                }
                if (i == 1)
                {
                    await run.RedisAdmin.ExecuteAsync("DEBUG", "SLEEP", "2");
                }
            }
            foreach (var proxy in run.RedisProxies)
            {
                proxy.CutAfterScripts(0);
            }
        });
        var (summary, findings) = await run.FinishAsync();

        var scriptCuts = run.RedisProxies.Sum(p => p.ScriptCuts);
        output.WriteLine($"connections cut right after a script call: {scriptCuts}; all cuts: {run.RedisProxies.Sum(p => p.Cuts)}");
        Assert.True(scriptCuts >= 10, $"only {scriptCuts} script calls were cut");
        AssertInvariants(run, summary, findings);
        run.Passed();
    }

    /// <summary>
    /// A clean shutdown and a quick return, well within the stale window; then a crash, and back (after WAL replay)
    /// only once every runtime looks stale to PostgreSQL, so flushes and sweeps of both instances race over the same
    /// rows.
    /// </summary>
    [Fact]
    public Task Postgres_stopped_during_flushes_and_sweeps() => PostgresOutagesAsync(
        nameof(Postgres_stopped_during_flushes_and_sweeps),
        run => StopPostgresAsync(run, crash: false, TimeSpan.FromSeconds(2)),
        run => StopPostgresAsync(run, crash: true, run.Settings.StaleWindow + TimeSpan.FromSeconds(4)));

    /// <summary>
    /// Frozen, not stopped: connections stay open and statements hang mid-flush and mid-sweep. First shorter than the
    /// stale window, then longer: afterwards every runtime looks stale to PostgreSQL while its beats wait in Redis.
    /// </summary>
    [Fact]
    public Task Postgres_frozen_during_flushes_and_sweeps() => PostgresOutagesAsync(
        nameof(Postgres_frozen_during_flushes_and_sweeps),
        run => FreezePostgresAsync(run, TimeSpan.FromSeconds(5)),
        run => FreezePostgresAsync(run, run.Settings.StaleWindow + TimeSpan.FromSeconds(4)));

    [Fact]
    public async Task Maintenance_on_two_instances_at_once_with_one_slowed()
    {
        // Every timer of both instances fires at the start of every second. Their Redis and PostgreSQL are 40 ms and
        // 150 ms away per chunk, so custodian, scheduler, flush and sweep passes outlast their tick and the two
        // instances' passes overlap at every step. Flushes of 10 beats per UPDATE take several batches each, and every
        // runtime stops beating at some moment of it, so its last beat (the one last_seen_at must end at) meets
        // overlapping flushes.
        var settings = new FaultSettings
        {
            Jobs = 2000,
            FeedFor = TimeSpan.FromSeconds(15),
            Runtimes = 200,
            FlushBatchSize = 10,
            InstanceLatency = [TimeSpan.FromMilliseconds(40), TimeSpan.FromMilliseconds(150)],
        };
        await using var run = await FaultRun.StartAsync(nameof(Maintenance_on_two_instances_at_once_with_one_slowed), settings, servers, output);
        run.StartLoad(_ => TimeSpan.FromSeconds(2 + run.Random.NextDouble() * 12));

        for (var i = 0; i < 3; i++)
        {
            await Task.Delay(TimeSpan.FromSeconds(3.5));
            await run.KillWorkerHoldingClaimsAsync();
        }
        var (summary, findings) = await run.FinishAsync();
        var deadlocks = await run.DeadlocksAsync();
        output.WriteLine($"deadlocks detected by PostgreSQL: {deadlocks}");

        AssertInvariants(run, summary, findings);
        Assert.True(deadlocks == 0, $"PostgreSQL detected {deadlocks} deadlocks between flushes and sweeps");
        run.Passed();
    }

    /// <summary>
    /// Two PostgreSQL outages, <paramref name="shorter"/> then <paramref name="longer"/>, under light job load and 150
    /// runtimes, half of which stop beating at random moments (many during an outage: their last beat is one
    /// PostgreSQL had not seen when it went away).
    /// </summary>
    private async Task PostgresOutagesAsync(string scenario, Func<FaultRun, Task<FaultWindow>> shorter, Func<FaultRun, Task<FaultWindow>> longer)
    {
        var settings = new FaultSettings { Jobs = 400, FeedFor = TimeSpan.FromSeconds(18), Workers = 2, Runtimes = 150 };
        await using var run = await FaultRun.StartAsync(scenario, settings, servers, output);
        run.StartLoad(HalfStopWithin(run, TimeSpan.FromSeconds(26)));

        await Task.Delay(TimeSpan.FromSeconds(3));
        var outages = new List<FaultWindow> { await shorter(run) };
        await Task.Delay(TimeSpan.FromSeconds(3));
        outages.Add(await longer(run));
        var (summary, findings) = await run.FinishAsync();
        var deadlocks = await run.DeadlocksAsync();
        output.WriteLine($"deadlocks detected by PostgreSQL: {deadlocks}");

        AssertPresenceOutlived(run, summary, findings, outages);
        Assert.True(deadlocks == 0, $"PostgreSQL detected {deadlocks} deadlocks between flushes and sweeps");
        run.Passed();
    }

    /// <summary>Every other runtime stops beating at a random moment within <paramref name="within"/>; the rest beat until the faults are over.</summary>
    private static Func<int, TimeSpan?> HalfStopWithin(FaultRun run, TimeSpan within) =>
        i => i % 2 == 0 ? TimeSpan.FromSeconds(2) + (within - TimeSpan.FromSeconds(2)) * run.Random.NextDouble() : null;

    private static async Task<FaultWindow> StopPostgresAsync(FaultRun run, bool crash, TimeSpan length) =>
        await run.FaultAsync(crash ? "PostgreSQL crashed (immediate stop)" : "PostgreSQL stopped (fast shutdown)", $"{length.TotalSeconds} s down", silencesConsumers: false, async () =>
        {
            await run.Cluster.StopAsync(crash);
            await Task.Delay(length);
            await run.Cluster.StartAgainAsync();
        });

    private static async Task<FaultWindow> FreezePostgresAsync(FaultRun run, TimeSpan length) =>
        await run.FaultAsync("SIGSTOP PostgreSQL", $"{length.TotalSeconds} s", silencesConsumers: false, async () =>
        {
            run.Cluster.Freeze();
            try
            {
                await Task.Delay(length);
            }
            finally
            {
                run.Cluster.Thaw();
            }
        });

    /// <summary>
    /// Presence outlived PostgreSQL's outages: beats were acknowledged while it was away (the buffered path does not
    /// need it), every invariant holds, and no runtime that kept beating was taken for offline.
    /// </summary>
    private static void AssertPresenceOutlived(FaultRun run, Summary summary, IReadOnlyList<string> findings, IReadOnlyList<FaultWindow> outages)
    {
        foreach (var outage in outages)
        {
            var buffered = run.Ledger.Beats.Count(b => b.Status == 202
                && b.SeenAt.ToUnixTimeMilliseconds() >= outage.StartMs && b.SeenAt.ToUnixTimeMilliseconds() <= outage.EndMs);
            Assert.True(buffered > 0, $"no beat was acknowledged during the outage {outage}");
        }
        AssertInvariants(run, summary, findings);
        Assert.True(summary.RuntimesBackOnline == 0, $"{summary.RuntimesBackOnline} beats found their runtime offline although it kept beating: {summary.ToJson()}");
    }

    /// <summary>The invariants of docs/reliability.md, all checked at once so a failure lists every violation.</summary>
    private static void AssertInvariants(FaultRun run, Summary summary, IReadOnlyList<string> findings)
    {
        var plannedDead = run.Ledger.Acknowledged.Values.Count(p => p.PlannedToDie);
        var violations = new List<string>();
        if (summary.Lost != 0)
        {
            violations.Add($"lost = {summary.Lost}: every acknowledged job must end done or dead");
        }
        if (summary.Stuck != 0)
        {
            violations.Add($"stuck = {summary.Stuck}: once the faults stop, every job must finish within ConsumerTimeout + {FaultRun.Margin.TotalSeconds} s");
        }
        if (summary.BeatsLost != 0)
        {
            violations.Add($"beatsLost = {summary.BeatsLost}: every beat answered 200/202 must end with last_seen_at at or after it");
        }
        if (summary.DuplicateRunsExplained != summary.DuplicateRuns)
        {
            violations.Add($"duplicateRuns = {summary.DuplicateRuns} but only {summary.DuplicateRunsExplained} are explained by a killed process or a silence longer than ConsumerTimeout");
        }
        if (summary.Dead != plannedDead)
        {
            violations.Add($"dead = {summary.Dead}, but {plannedDead} jobs were made to fail on every attempt they had");
        }
        if (summary.Enqueued < run.Settings.Jobs)
        {
            violations.Add($"only {summary.Enqueued} of {run.Settings.Jobs} enqueues were acknowledged within the producer's 2 min of retries");
        }
        Assert.True(violations.Count == 0, string.Join("\n", [summary.ToJson(), .. violations, .. findings]));
    }
}
