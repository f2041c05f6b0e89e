using System.Diagnostics;
using Conveyor.Faults.Infrastructure;
using Conveyor.Faults.Ledger;
using Conveyor.Faults.Load;
using Conveyor.Hosting;
using Conveyor.Testing;
using Npgsql;
using StackExchange.Redis;

namespace Conveyor.Faults;

/// <summary>
/// One scenario's world: its own redis-server, its own database in the suite's PostgreSQL cluster, a fault proxy in
/// front of each of them per client, two self-host instances (API and every timer), several worker processes, a
/// producer and a fleet of runtimes over HTTP, and the ledger. The test injects faults through it, then
/// <see cref="FinishAsync"/> waits for the queue and the heartbeat buffer to drain (bounded), and judges.
/// Its folder (.dev/faults/&lt;scenario&gt;-&lt;time&gt;: ledgers, worker and host logs, Redis and PostgreSQL
/// state) is deleted when the scenario passes and kept when it fails.
/// </summary>
internal sealed class FaultRun : IAsyncDisposable
{
    public const string Queue = "faults";

    private const string EverySecond = "* * * * * *";

    /// <summary>Processor heartbeat, and the beat, flush and sweep intervals of presence.</summary>
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);

    /// <summary>Added to ConsumerTimeout for everything to finish once the faults stop.</summary>
    public static readonly TimeSpan Margin = TimeSpan.FromSeconds(30);

    private readonly ITestOutputHelper _output;
    private readonly FaultServers _servers;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly List<WorkerProcess> _workers = [];
    private readonly List<FaultProxy> _instanceRedisProxies = [];
    private readonly Dictionary<WorkerProcess, FaultProxy> _workerProxies = [];
    private readonly List<FaultProxy> _postgresProxies = [];
    private readonly List<ApiInstance> _apis = [];
    private readonly CancellationTokenSource _stopLoad = new();
    private readonly CancellationTokenSource _faultsOver = new();
    private RedisServer? _redis;
    private ConnectionMultiplexer? _observer;
    private JobFeeder? _feeder;
    private RuntimeFleet? _fleet;
    private Task _feeding = Task.CompletedTask;
    private int _workerCount;
    private bool _passed;

    private FaultRun(string scenario, FaultSettings settings, FaultServers servers, ITestOutputHelper output, int seed, string dir)
    {
        Scenario = scenario;
        Settings = settings;
        _servers = servers;
        _output = output;
        Seed = seed;
        Dir = dir;
        Random = new Random(seed);
    }

    public string Scenario { get; }
    public FaultSettings Settings { get; }
    public PostgresCluster Cluster => _servers.Cluster;
    public int Seed { get; }
    public string Dir { get; }
    public Random Random { get; }
    public Ledger.Ledger Ledger { get; } = new();
    public RedisServer Redis => _redis ?? throw new InvalidOperationException("not started");
    public IDatabase Db => (_observer ?? throw new InvalidOperationException("not started")).GetDatabase();
    public IServer RedisAdmin => _observer!.GetServer(Redis.Endpoint);
    public string DatabaseConnectionString { get; private set; } = "";

    /// <summary>Every proxy between the engine and Redis (each worker's, each API instance's).</summary>
    public IReadOnlyList<FaultProxy> RedisProxies => [.. _workerProxies.Values, .. _instanceRedisProxies];

    public IReadOnlyList<WorkerProcess> LiveWorkers => [.. _workers.Where(w => !w.HasExited)];

    public static async Task<FaultRun> StartAsync(string scenario, FaultSettings settings, FaultServers servers, ITestOutputHelper output)
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("FAULT_SEED"), out var fixedSeed) ? fixedSeed : Random.Shared.Next(1, int.MaxValue);
        var dir = Path.Combine(ResultsRoot(), $"{scenario}-{DateTime.UtcNow:yyyyMMdd-HHmmss}");
        Directory.CreateDirectory(dir);
        var run = new FaultRun(scenario, settings, servers, output, seed, dir);
        try
        {
            await run.StartAsync();
        }
        catch
        {
            await run.DisposeAsync();
            throw;
        }
        return run;
    }

    private async Task StartAsync()
    {
        var clock = Stopwatch.StartNew();
        _redis = await RedisServer.StartAsync(Path.Combine(Dir, "redis"), Settings.Aof);
        _observer = await ConnectionMultiplexer.ConnectAsync($"{Redis.Endpoint},allowAdmin=true,abortConnect=false,syncTimeout=30000,asyncTimeout=30000");
        // The workers need only Redis: they start (a few seconds of process start-up) while the instances do.
        for (var i = 0; i < Settings.Workers; i++)
        {
            StartWorker();
        }
        var database = await Cluster.CreateDatabaseAsync($"faults_{Guid.NewGuid():N}");
        DatabaseConnectionString = database;
        var postgresPort = new NpgsqlConnectionStringBuilder(database).Port;
        for (var i = 0; i < 2; i++)
        {
            _instanceRedisProxies.Add(FaultProxy.Start("127.0.0.1", Redis.Port, Seed + 1 + i));
            _postgresProxies.Add(FaultProxy.Start("127.0.0.1", postgresPort, Seed + 3 + i));
        }
        _apis.AddRange(await Task.WhenAll(Enumerable.Range(0, 2).Select(i => ApiInstance.StartAsync(
            $"api-{i}",
            _instanceRedisProxies[i].Endpoint,
            new NpgsqlConnectionStringBuilder(database) { Port = _postgresProxies[i].Port }.ConnectionString,
            EngineSettings(),
            Path.Combine(Dir, $"api-{i}.log")))));
        await WaitUntilAsync(() => Task.FromResult(_workers.All(Started)), $"{Settings.Workers} workers started their sessions", 90);
        _feeder = new JobFeeder(Ledger, _apis, Queue, Seed);
        _fleet = new RuntimeFleet(Ledger, _apis, Interval);
        await _fleet.RegisterAsync(Settings.Runtimes, _faultsOver.Token, _stopLoad.Token);
        _output.WriteLine($"{Scenario}: seed {Seed}, set up in {clock.Elapsed.TotalSeconds:F1} s (Redis, 2 instances, {Settings.Workers} workers, {Settings.Runtimes} runtimes)");
    }

    /// <summary>
    /// The engine's options and timer schedules (every second), the same for the workers and the API instances: a
    /// worker checks the custodian's schedule against ConsumerTimeout too.
    /// </summary>
    private Dictionary<string, string> EngineSettings() => new()
    {
        [Schedules.Scheduler] = EverySecond,
        [Schedules.Custodian] = EverySecond,
        [Schedules.HeartbeatFlush] = EverySecond,
        [Schedules.StaleSweeper] = EverySecond,
        ["Conveyor__Processor__HeartbeatInterval"] = $"{Interval}",
        ["Conveyor__Processor__IdlePollInterval"] = "00:00:00.1",
        ["Conveyor__Processor__ShutdownGrace"] = "00:00:02",
        ["Conveyor__Processor__Concurrency"] = "8",
        ["Conveyor__Processor__Prefetch"] = "8",
        ["Conveyor__Custodian__ConsumerTimeout"] = $"{Settings.ConsumerTimeout}",
        ["Conveyor__Queue__RetryBaseDelay"] = "00:00:00.2",
        ["Conveyor__Queue__MaxBackoff"] = "00:00:01",
        ["Conveyor__Presence__BeatInterval"] = $"{Interval}",
        ["Conveyor__Presence__FlushInterval"] = $"{Interval}",
        ["Conveyor__Presence__SweepInterval"] = $"{Interval}",
        ["Conveyor__Presence__StaleWindow"] = $"{Settings.StaleWindow}",
        ["Conveyor__Presence__FlushBatchSize"] = $"{Settings.FlushBatchSize}",
        ["Conveyor__Presence__SweepBatchSize"] = $"{Settings.FlushBatchSize}",
    };

    /// <summary>Starts a worker process, with a proxy of its own in front of Redis (so its network can fail alone).</summary>
    public WorkerProcess StartWorker()
    {
        var proxy = FaultProxy.Start("127.0.0.1", Redis.Port, Seed + 10 + _workerCount);
        var environment = EngineSettings();
        environment["Conveyor__Redis__ConnectionString"] = proxy.Endpoint;
        environment["FAULT_QUEUE"] = Queue;
        var worker = WorkerProcess.Start(Dir, $"worker-{++_workerCount}", environment);
        _workers.Add(worker);
        _workerProxies[worker] = proxy;
        return worker;
    }

    /// <summary>
    /// Cuts <paramref name="worker"/> off from Redis for <paramref name="length"/>, while handlers run in it: its proxy
    /// stops forwarding (connections stay open, as in a network partition); the process itself runs on.
    /// </summary>
    public Task CutOffFromRedisAsync(WorkerProcess worker, TimeSpan length)
    {
        var proxy = _workerProxies[worker];
        return SilenceAsync(worker, "network to Redis stalled", length, proxy.Stall, proxy.Resume);
    }

    private bool Started(WorkerProcess worker) =>
        File.Exists(worker.LogPath) && File.ReadLines(worker.LogPath).Any(l => l.Contains($"started on queue {Queue}", StringComparison.Ordinal));

    /// <summary>
    /// Starts the producer (<see cref="FaultSettings.Jobs"/> over <see cref="FaultSettings.FeedFor"/>). The runtimes
    /// beat from their registration on; each stops when <paramref name="runtimeStopsAfter"/> says (by index, from
    /// now), or, when it says null, once the faults are over (<see cref="FinishAsync"/>).
    /// </summary>
    public void StartLoad(Func<int, TimeSpan?> runtimeStopsAfter)
    {
        // Set up at full speed; the instances' paths slow down only now.
        for (var i = 0; i < _apis.Count; i++)
        {
            _instanceRedisProxies[i].Latency = _postgresProxies[i].Latency = Settings.InstanceLatency[i];
        }
        var start = DateTime.UtcNow;
        for (var i = 0; i < Settings.Runtimes; i++)
        {
            if (runtimeStopsAfter(i) is { } after)
            {
                _fleet!.StopAt(i, start + after);
            }
        }
        _feeding = Task.Run(() => _feeder!.RunAsync(Settings.Jobs, Settings.FeedFor, _stopLoad.Token));
    }

    /// <summary>Handlers running now in <paramref name="worker"/>: runs its ledger started and did not end. Each holds a claim.</summary>
    public static int RunningIn(WorkerProcess worker)
    {
        var open = 0;
        foreach (var line in File.Exists(worker.LedgerPath) ? File.ReadLines(worker.LedgerPath) : [])
        {
            open += line.StartsWith('S') ? 1 : line.Length > 0 ? -1 : 0;
        }
        return open;
    }

    /// <summary>
    /// Until every live worker runs a handler: a fault that starts then hits claims, runs and completions in flight
    /// everywhere. Fails at once when the producer is done first: the scenario's faults outlast its load.
    /// </summary>
    public Task WaitUntilEveryWorkerIsBusyAsync() =>
        WaitUntilAsync(() => Task.FromResult(LiveWorkers.All(w => RunningIn(w) > 0) || (_feeding.IsCompleted
            ? throw new InvalidOperationException($"the producer finished ({Settings.Jobs} jobs over {Settings.FeedFor.TotalSeconds} s) before the next fault: the scenario's faults outlast its load")
            : false)), "every worker runs a handler", 30);

    /// <summary>SIGKILLs a live worker (not <paramref name="spare"/>) while handlers run in it, and starts a replacement.</summary>
    public async Task<int> KillWorkerHoldingClaimsAsync(WorkerProcess? spare = null)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (DateTime.UtcNow < deadline)
        {
            foreach (var worker in LiveWorkers.Where(w => w != spare).OrderBy(_ => Random.Next()))
            {
                var running = RunningIn(worker);
                if (running > 0)
                {
                    worker.Kill();
                    Ledger.Instant("kill -9 worker", worker.Pid, explainsDuplicates: true, $"{running} handlers running");
                    StartWorker();
                    return running;
                }
            }
            await Task.Delay(20);
        }
        throw new TimeoutException("Timed out after 30 s waiting for a worker with a handler running, to kill it");
    }

    /// <summary>Freezes one worker (SIGSTOP) for <paramref name="length"/>, while handlers run in it.</summary>
    public Task FreezeWorkerAsync(WorkerProcess worker, TimeSpan length) =>
        SilenceAsync(worker, "SIGSTOP worker", length, worker.Freeze, worker.Thaw);

    /// <summary>
    /// Silences <paramref name="worker"/> (<paramref name="begin"/> .. <paramref name="end"/>) for
    /// <paramref name="length"/>, once a handler runs in it, and records the fault: it explains duplicate runs of
    /// that process when it lasted longer than ConsumerTimeout.
    /// </summary>
    private async Task SilenceAsync(WorkerProcess worker, string kind, TimeSpan length, Action begin, Action end)
    {
        await WaitUntilAsync(() => Task.FromResult(RunningIn(worker) > 0), $"worker {worker.Pid} runs a handler, before: {kind}", 30);
        var fault = Ledger.Begin(kind, worker.Pid, $"{length.TotalSeconds} s", silencesConsumers: true);
        begin();
        try
        {
            await Task.Delay(length);
        }
        finally
        {
            end();
            fault.End(Settings.ConsumerTimeout);
        }
    }

    /// <summary>Records a fault of everything for as long as <paramref name="body"/> runs.</summary>
    public async Task<FaultWindow> FaultAsync(string kind, string detail, bool silencesConsumers, Func<Task> body)
    {
        var fault = Ledger.Begin(kind, pid: null, detail, silencesConsumers);
        FaultWindow window;
        try
        {
            await body();
        }
        finally
        {
            window = fault.End(Settings.ConsumerTimeout);
        }
        return window;
    }

    /// <summary>
    /// Stops the load once it is done, waits (bounded) until every acknowledged job finished and every buffered beat
    /// was flushed, then judges, prints the summary line and appends it to .dev/faults/results.jsonl.
    /// </summary>
    public async Task<(Summary Summary, IReadOnlyList<string> Findings)> FinishAsync()
    {
        var faultsEnded = Stopwatch.StartNew();
        await _faultsOver.CancelAsync();
        await WaitForLoadAsync();
        var bound = Settings.ConsumerTimeout + Margin;
        var drained = await PollAsync(async () => IsDrained(await ReadQueueAsync()), bound);
        _output.WriteLine($"queue {(drained ? "drained" : "NOT drained")} {faultsEnded.Elapsed.TotalSeconds:F1} s after the faults ended (bound: load done + {bound.TotalSeconds} s)");
        var flushed = await PollAsync(BeatsFlushedAsync, Margin);
        _output.WriteLine($"heartbeat buffer {(flushed ? "flushed" : "NOT flushed")} {faultsEnded.Elapsed.TotalSeconds:F1} s after the faults ended");

        var queue = await ReadQueueAsync();
        var lastSeen = await LastSeenAsync();
        var runs = Verdict.PairRuns(_workers.Select(w => w.LedgerPath).Where(File.Exists));
        var crashes = CountInLogs("*worker-*.log", "stopped unexpectedly");
        var timerFailures = CountInLogs("api-*.log", "runs again at its next occurrence");
        var (summary, findings) = Verdict.Judge(Scenario, Seed, Ledger, runs, queue, lastSeen, crashes, timerFailures, _clock.Elapsed.TotalSeconds);
        var json = summary.ToJson();
        _output.WriteLine(json);
        foreach (var fault in Ledger.Faults.OrderBy(f => f.StartMs))
        {
            _output.WriteLine($"fault: {fault.Kind} {(fault.Pid is { } pid ? $"pid {pid} " : "")}{fault.Detail}, {(fault.EndMs - fault.StartMs) / 1000.0:F1} s{(fault.ExplainsDuplicates ? ", may explain duplicates" : "")}");
        }
        foreach (var finding in findings)
        {
            _output.WriteLine(finding);
        }
        await File.AppendAllTextAsync(Path.Combine(ResultsRoot(), "results.jsonl"), json + "\n");
        await Ledger.SaveAsync(Dir);
        return (summary, findings);
    }

    private async Task WaitForLoadAsync()
    {
        var load = Task.WhenAll(_feeding, _fleet?.Beating ?? Task.CompletedTask);
        if (await Task.WhenAny(load, Task.Delay(TimeSpan.FromMinutes(3))) != load)
        {
            await _stopLoad.CancelAsync();
            throw new TimeoutException("Timed out after 3 min waiting for the producer and the runtimes to finish");
        }
        await load;
    }

    private bool IsDrained(QueueState queue) =>
        Ledger.Acknowledged.Keys.All(id => !queue.Waiting.ContainsKey(id) && (queue.Dead.Contains(id) || !queue.Records.Contains(id)));

    /// <summary>The queue's jobs, read straight from Redis (never through a proxy).</summary>
    public async Task<QueueState> ReadQueueAsync()
    {
        var prefix = $"conveyor:{{{Queue}}}:";
        var records = await Db.HashKeysAsync(prefix + "jobs");
        var dead = await Db.SortedSetRangeByRankAsync(prefix + "dead");
        var waiting = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var id in await Db.ListRangeAsync(prefix + "ready"))
        {
            waiting[id!] = "ready";
        }
        foreach (var id in await Db.SortedSetRangeByRankAsync(prefix + "scheduled"))
        {
            waiting[id!] = "scheduled";
        }
        var time = (RedisResult[])(await Db.ExecuteAsync("TIME"))!;
        var nowMs = (long)time[0] * 1000 + (long)time[1] / 1000;
        await foreach (var key in RedisAdmin.KeysAsync(pattern: prefix + "inflight*"))
        {
            var consumer = key.ToString()[(prefix.Length + "inflight".Length)..].TrimStart(':');
            var beat = consumer.Length > 0 ? await Db.SortedSetScoreAsync(prefix + "consumers", consumer) : null;
            var holder = beat is { } at
                ? $"claimed by consumer {consumer}, which heartbeat {(nowMs - at) / 1000:F1} s ago"
                : $"claimed by consumer {consumer}, which is not registered";
            foreach (var id in await Db.SortedSetRangeByRankAsync(key))
            {
                waiting[id!] = holder;
            }
        }
        return new QueueState(
            records.Select(v => v.ToString()).ToHashSet(StringComparer.Ordinal),
            waiting,
            dead.Select(v => v.ToString()).ToHashSet(StringComparer.Ordinal));
    }

    /// <summary>No beat waits in Redis any more: every sorted set under the presence tag is empty.</summary>
    private async Task<bool> BeatsFlushedAsync()
    {
        await foreach (var key in RedisAdmin.KeysAsync(pattern: "conveyor:{presence}:*"))
        {
            if (await Db.KeyTypeAsync(key) == RedisType.SortedSet && await Db.SortedSetLengthAsync(key) > 0)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>last_seen_at of every runtime, read straight from PostgreSQL (never through a proxy).</summary>
    public async Task<Dictionary<Guid, DateTimeOffset?>> LastSeenAsync()
    {
        var seen = new Dictionary<Guid, DateTimeOffset?>();
        await using var dataSource = NpgsqlDataSource.Create(DatabaseConnectionString);
        await using var command = dataSource.CreateCommand("SELECT id, last_seen_at FROM runtimes");
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            seen[reader.GetGuid(0)] = reader.IsDBNull(1) ? null : new DateTimeOffset(reader.GetDateTime(1), TimeSpan.Zero);
        }
        return seen;
    }

    /// <summary>Deadlocks PostgreSQL detected (and broke by aborting a transaction) in the scenario's database.</summary>
    public async Task<long> DeadlocksAsync()
    {
        await using var dataSource = NpgsqlDataSource.Create(DatabaseConnectionString);
        await using var command = dataSource.CreateCommand("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()");
        return (long)(await command.ExecuteScalarAsync())!;
    }

    private int CountInLogs(string pattern, string text) =>
        Directory.GetFiles(Dir, pattern).Sum(file => File.ReadLines(file).Count(line => line.Contains(text, StringComparison.Ordinal)));

    /// <summary>Marks the scenario passed: its folder is deleted on dispose.</summary>
    public void Passed() => _passed = true;

    /// <summary>Polls <paramref name="condition"/> every 200 ms; false once <paramref name="bound"/> passed.</summary>
    public static async Task<bool> PollAsync(Func<Task<bool>> condition, TimeSpan bound)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                if (await condition())
                {
                    return true;
                }
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException or NpgsqlException)
            {
                // The store may still be coming back from the last fault.
            }
            if (deadline.Elapsed > bound)
            {
                return false;
            }
            await Task.Delay(200);
        }
    }

    public static async Task WaitUntilAsync(Func<Task<bool>> condition, string what, int seconds)
    {
        if (!await PollAsync(condition, TimeSpan.FromSeconds(seconds)))
        {
            throw new TimeoutException($"Timed out after {seconds} s waiting until {what}");
        }
    }

    /// <summary><c>.dev/faults</c> of the repository (ignored by git), where summaries and failed scenarios' folders go.</summary>
    private static string ResultsRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Functions.sln")))
            {
                var root = Path.Combine(dir.FullName, ".dev", "faults");
                Directory.CreateDirectory(root);
                return root;
            }
        }
        return Directory.CreateTempSubdirectory("conveyor-faults-").FullName;
    }

    public async ValueTask DisposeAsync()
    {
        await _stopLoad.CancelAsync();
        try
        {
            await Task.WhenAll(_feeding, _fleet?.Beating ?? Task.CompletedTask).WaitAsync(TimeSpan.FromSeconds(30));
        }
        catch (Exception ex) when (ex is OperationCanceledException or TimeoutException or HttpRequestException)
        {
        }
        foreach (var worker in _workers)
        {
            worker.Dispose();
        }
        foreach (var api in _apis)
        {
            await api.DisposeAsync();
        }
        foreach (var proxy in RedisProxies.Concat(_postgresProxies))
        {
            await proxy.DisposeAsync();
        }
        if (_observer is not null)
        {
            await _observer.DisposeAsync();
        }
        _redis?.Dispose();
        _stopLoad.Dispose();
        _faultsOver.Dispose();
        if (_passed)
        {
            Directory.Delete(Dir, recursive: true);
        }
        else
        {
            _output.WriteLine($"the scenario's ledgers and logs are kept in {Dir}");
        }
    }
}
