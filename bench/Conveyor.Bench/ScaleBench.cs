using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Azure.Storage.Queues;
using Conveyor.Hosting;
using Conveyor.Queue;
using Conveyor.Storage;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Conveyor.Bench;

/// <summary>
/// Simulates the Functions platform scaling the Wake function on this machine. The bench enqueues N jobs through the
/// engine's <see cref="Producer"/>, whose <see cref="WakeGate"/> posts wake-ups to an Azure Storage queue in Azurite
/// (Base64, as the app's sender writes them). A scaler reads that queue's length as the scale controller does for a
/// queue trigger (desired instances = length / target executions per instance, host.json's batchSize 1; at most four
/// added per decision; capped at a maximum) and starts instance processes (<see cref="ScaleInstance"/>): each plays one
/// Functions instance with batchSize 1 / newBatchThreshold 0, one wake-up message at a time, each run through
/// <see cref="Processor.RunWokenSessionAsync"/> as the Wake function does. Instances idle for a while are stopped
/// (scale-in). It runs once per maximum (1, 2, 4 by default), then once as the timer-only app of before issue 11
/// (one instance, one full-length session per tick, no wake-ups). Prints one JSON line.
/// </summary>
internal static class ScaleBench
{
    /// <summary>Azurite's well-known development account key (public: the same in every Azurite).</summary>
    private const string DevelopmentKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    public static async Task<int> RunAsync(BenchArgs args)
    {
        var settings = new ScaleSettings(args);
        var load = LoadAverage();
        var readyToRun = IsReadyToRun(typeof(Processor).Assembly.Location);
        if (!readyToRun)
        {
            Console.Error.WriteLine(
                "scale: instances run a JIT build of the engine; the deployed Functions app is ReadyToRun. For figures that start instances as Azure does: "
                + "dotnet publish bench/Conveyor.Bench -c Release -o .dev/bench && .dev/bench/Conveyor.Bench scale ...");
        }
        await using var azurite = await Azurite.FindOrStartAsync(args.String("azurite", ""));
        // Unmeasured: JIT in this process, the instance binaries in the page cache, Azurite's and Redis' first requests.
        var warmUp = settings.WarmUpJobs;
        Console.Error.WriteLine($"scale: warm-up, {warmUp} jobs, one instance (not reported)");
        await RunOnceAsync(settings, azurite.ConnectionString, 1, timerOnly: false, warmUp, TimeSpan.FromSeconds(1));
        var runs = new List<RunFigures>();
        foreach (var max in settings.MaxInstances)
        {
            Console.Error.WriteLine($"scale: {settings.Jobs} jobs, at most {max} instance(s)");
            runs.Add(await RunOnceAsync(settings, azurite.ConnectionString, max, timerOnly: false, settings.Jobs, settings.IdleWindow));
        }
        Console.Error.WriteLine("scale: timer-only (one instance, full-length sessions, no wake-ups)");
        var timer = await RunOnceAsync(settings, azurite.ConnectionString, 1, timerOnly: true, settings.Jobs, settings.IdleWindow);

        var widest = runs[^1];
        double? Drain(int max) => runs.FirstOrDefault(r => r.MaxInstances == max)?.DrainSec;
        var line = new Dictionary<string, object?>
        {
            ["mode"] = "scale",
            ["jobs"] = settings.Jobs,
            ["handlerMs"] = settings.HandlerMs,
            ["concurrency"] = settings.Concurrency,
            ["idleTimeoutSec"] = settings.IdleTimeout.TotalSeconds,
            ["worker"] = "engine processor host (bench scale-instance processes)",
            ["instanceBuild"] = readyToRun ? "ReadyToRun" : "JIT",
            ["wakeMessages"] = widest.WakeMessages,
            ["instancesPeak"] = widest.InstancesPeak,
            ["drainSec"] = runs.ToDictionary(r => r.MaxInstances.ToString(CultureInfo.InvariantCulture), r => r.DrainSec),
            ["speedup4"] = Drain(1) is { } one && Drain(4) is { } four ? Math.Round(one / four, 2) : null,
            ["idleSessionSec"] = widest.IdleSessionSec,
            ["idleSessionTargetSec"] = (settings.IdleTimeout.TotalSeconds + 1) * widest.InstancesPeak,
            ["idleWindowSec"] = settings.IdleWindow.TotalSeconds,
            ["timerOnly"] = new Dictionary<string, object>
            {
                ["drainSec"] = timer.DrainSec,
                ["idleSessionSec"] = timer.IdleSessionSec,
                ["sessionsRunningAfterWindow"] = timer.SessionsRunningAfterWindow,
                ["sessionSec"] = settings.SessionDuration.TotalSeconds,
            },
            ["runs"] = runs,
            ["loadAvgBefore"] = load,
            ["loadAvgAfter"] = LoadAverage(),
        };
        Console.WriteLine(JsonSerializer.Serialize(line, JsonSerializerOptions.Web));
        return 0;
    }

    private static async Task<RunFigures> RunOnceAsync(
        ScaleSettings settings, string storage, int maxInstances, bool timerOnly, int jobs, TimeSpan idleWindow)
    {
        var queue = "scale-" + Guid.NewGuid().ToString("N")[..8];
        var wakeQueue = new QueueClient(storage, "bench-wake-" + Guid.NewGuid().ToString("N"),
            new QueueClientOptions { MessageEncoding = QueueMessageEncoding.Base64 });
        await wakeQueue.CreateAsync();
        var sender = new CountingWakeSender(wakeQueue);
        var services = new ServiceCollection()
            .AddLogging(logging => logging.AddConsole(c => c.LogToStandardErrorThreshold = LogLevel.Trace).SetMinimumLevel(LogLevel.Warning));
        var builder = services.AddConveyor(settings.Configuration(queue));
        if (!timerOnly)
        {
            builder.UseWakeSender(_ => sender);
        }
        await using var provider = services.BuildServiceProvider();
        var producer = provider.GetRequiredService<Producer>();
        var db = await provider.GetRequiredService<RedisConnection>().GetDatabaseAsync();
        var clock = Stopwatch.StartNew();
        sender.Clock = clock;
        await using var fleet = new Fleet(settings, storage, wakeQueue.Name, queue, clock);

        using var stop = new CancellationTokenSource();
        Task scaler;
        if (timerOnly)
        {
            // The app before issue 11: its timer runs one session at a time, all the time; jobs arrive while one runs.
            fleet.Start(timerOnly: true);
            await fleet.WaitForSessionAsync();
            scaler = Task.CompletedTask;
        }
        else
        {
            scaler = ScaleAsync(fleet, wakeQueue, maxInstances, settings, stop.Token);
        }

        var enqueueStart = clock.Elapsed;
        await EnqueueAsync(producer, queue, jobs);
        var jobsKey = new QueueKeys(queue).Jobs;
        while (await db.HashLengthAsync(jobsKey) > 0)
        {
            await Task.Delay(20);
        }
        var drained = clock.Elapsed;
        Console.Error.WriteLine($"scale:   drained in {(drained - enqueueStart).TotalSeconds:F2} s; watching {idleWindow.TotalSeconds} s of idle");
        await Task.Delay(idleWindow);
        var window = (From: drained, To: drained + idleWindow);
        var idle = fleet.SessionSecondsWithin(window.From, window.To);
        var (sessionsLeft, instancesLeft) = (fleet.SessionsRunning, fleet.Running);
        await stop.CancelAsync();
        await scaler;
        var figures = new RunFigures(
            maxInstances,
            Math.Round((drained - enqueueStart).TotalSeconds, 2),
            fleet.Peak,
            sender.Count,
            fleet.Sessions,
            fleet.EmptySessions,
            Math.Round(idle, 2),
            fleet.FirstSessionAfter(enqueueStart) is { } first ? Math.Round((first - enqueueStart).TotalSeconds, 2) : null,
            fleet.StartupMsAverage,
            await QueueLengthAsync(wakeQueue),
            sessionsLeft,
            instancesLeft)
        {
            WakePostedSec = sender.FirstSentAt is { } posted ? Math.Round((posted - enqueueStart).TotalSeconds, 2) : null,
            FirstLaunchSec = fleet.FirstLaunch is { } launch ? Math.Round((launch - enqueueStart).TotalSeconds, 2) : null,
            ColdStartMs = fleet.ColdStartMs(),
            ColdStartCpuMs = fleet.ColdStartCpuMs(),
            SessionDrain = fleet.SessionRates(enqueueStart),
        };
        await fleet.DisposeAsync();
        await wakeQueue.DeleteAsync();
        Console.Error.WriteLine($"scale:   {JsonSerializer.Serialize(figures, JsonSerializerOptions.Web)}");
        return figures;
    }

    /// <summary>
    /// The scale controller: every decision interval, desired = ceil(wake-queue length / target executions per instance),
    /// capped at <paramref name="maxInstances"/>; at most four instances added per decision; instances that have run no
    /// session for the scale-in delay are stopped while more run than desired.
    /// </summary>
    private static async Task ScaleAsync(Fleet fleet, QueueClient wakeQueue, int maxInstances, ScaleSettings settings, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            var length = await QueueLengthAsync(wakeQueue);
            var desired = Math.Min(maxInstances, (int)Math.Ceiling(length / (double)settings.TargetPerInstance));
            var running = fleet.Running;
            if (desired > running)
            {
                for (var i = 0; i < Math.Min(desired - running, 4); i++)
                {
                    fleet.Start(timerOnly: false);
                }
            }
            else if (desired < running)
            {
                fleet.StopIdle(running - desired, settings.ScaleInAfter);
            }
            try
            {
                await Task.Delay(settings.ScalerInterval, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>The queue's approximate length, as the scale controller reads it (messages being processed count too).</summary>
    private static async Task<int> QueueLengthAsync(QueueClient queue) => (await queue.GetPropertiesAsync()).Value.ApproximateMessagesCount;

    private static async Task EnqueueAsync(Producer producer, string queue, int jobs)
    {
        const int Batch = 1000;
        var next = -1;
        await Task.WhenAll(Enumerable.Range(0, 4).Select(async _ =>
        {
            int index;
            while ((index = Interlocked.Increment(ref next)) * Batch < jobs)
            {
                var count = Math.Min(Batch, jobs - index * Batch);
                await producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, count).Select(_ => new JobRequest(ScaleInstance.JobType, "{}"))]);
            }
        }));
    }

    /// <summary>Whether the assembly at <paramref name="path"/> holds ReadyToRun code (a managed native header), as <c>dotnet publish</c> makes it here.</summary>
    private static bool IsReadyToRun(string path)
    {
        using var reader = new System.Reflection.PortableExecutable.PEReader(File.OpenRead(path));
        return reader.PEHeaders.CorHeader?.ManagedNativeHeaderDirectory.Size > 0;
    }

    private static double? LoadAverage()
    {
        try
        {
            return double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
    }

    /// <summary>What one run measured; times from the first enqueue call.</summary>
    private sealed record RunFigures(
        int MaxInstances,
        double DrainSec,
        int InstancesPeak,
        int WakeMessages,
        int Sessions,
        int EmptyWakeUps,
        double IdleSessionSec,
        double? FirstSessionSec,
        double? InstanceStartMs,
        int WakeMessagesLeft,
        int SessionsRunningAfterWindow,
        int InstancesRunningAfterWindow)
    {
        /// <summary>From the first enqueue to the first wake-up posted.</summary>
        public double? WakePostedSec { get; init; }

        /// <summary>From the first enqueue to the first instance launched (the scaler saw the wake-up).</summary>
        public double? FirstLaunchSec { get; init; }

        /// <summary>Launch to first ack, step by step (see <see cref="Fleet.ColdStartMs"/>).</summary>
        public Dictionary<string, double>? ColdStartMs { get; init; }

        /// <summary>CPU used by each cold-start mark (see <see cref="Fleet.ColdStartCpuMs"/>).</summary>
        public Dictionary<string, double>? ColdStartCpuMs { get; init; }

        /// <summary>Sessions that claimed jobs, in the order they began claiming (see <see cref="Fleet.SessionRates"/>).</summary>
        public List<SessionFigures>? SessionDrain { get; init; }
    }

    /// <summary>Posts wake-ups as the Functions app's StorageWakeSender does (one Base64 message per wake-up), and counts them.</summary>
    private sealed class CountingWakeSender(QueueClient queue) : IWakeSender
    {
        private int _count;

        public int Count => Volatile.Read(ref _count);

        public Stopwatch? Clock { get; set; }

        /// <summary>When (on <see cref="Clock"/>) the first wake-up was posted.</summary>
        public TimeSpan? FirstSentAt { get; private set; }

        public async Task SendAsync(string queueName, int count, CancellationToken cancellationToken)
        {
            for (var i = 0; i < count; i++)
            {
                await queue.SendMessageAsync(queueName, cancellationToken);
                if (Interlocked.Increment(ref _count) == 1)
                {
                    FirstSentAt = Clock?.Elapsed;
                }
            }
        }
    }

    /// <summary>Azurite's queue service: the one <c>--azurite</c> names, or <c>.dev/azurite</c>'s (what <c>./dev</c> installs) on a free port.</summary>
    private sealed class Azurite : IAsyncDisposable
    {
        private readonly Process? _process;

        private Azurite(string connectionString, Process? process)
        {
            ConnectionString = connectionString;
            _process = process;
        }

        public string ConnectionString { get; }

        public static async Task<Azurite> FindOrStartAsync(string configured)
        {
            if (configured.Length > 0)
            {
                return new Azurite(configured, null);
            }
            var root = AppContext.BaseDirectory;
            while (!File.Exists(Path.Combine(root, "Functions.sln")))
            {
                root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("no Functions.sln above the bench");
            }
            var azurite = Path.Combine(root, ".dev", "azurite", "node_modules", ".bin", "azurite-queue");
            if (!File.Exists(azurite))
            {
                throw new InvalidOperationException(
                    $"{azurite} is not installed: run ./dev test or ./dev up once (they install Azurite from npm into .dev/azurite), or pass --azurite \"<connection string>\"");
            }
            var port = FreePort();
            var process = Process.Start(new ProcessStartInfo(azurite,
                $"--silent --queueHost 127.0.0.1 --queuePort {port} --skipApiVersionCheck --disableTelemetry --inMemoryPersistence")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            }) ?? throw new InvalidOperationException("Azurite did not start");
            process.OutputDataReceived += (_, _) => { };
            process.ErrorDataReceived += (_, _) => { };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            var started = new Azurite(
                $"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DevelopmentKey};QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;",
                process);
            var deadline = Stopwatch.StartNew();
            while (true)
            {
                try
                {
                    using var client = new System.Net.Sockets.TcpClient();
                    await client.ConnectAsync(System.Net.IPAddress.Loopback, port);
                    Console.Error.WriteLine($"scale: started Azurite's queue service on port {port}");
                    return started;
                }
                catch (System.Net.Sockets.SocketException) when (deadline.Elapsed < TimeSpan.FromSeconds(30) && !process.HasExited)
                {
                    await Task.Delay(100);
                }
                catch (System.Net.Sockets.SocketException ex)
                {
                    await started.DisposeAsync();
                    throw new InvalidOperationException($"Azurite on port {port} did not accept connections within 30 s", ex);
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (_process is null)
            {
                return;
            }
            try
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
            catch (InvalidOperationException)
            {
                // Already gone.
            }
            _process.Dispose();
        }

        private static int FreePort()
        {
            using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
            listener.Start();
            return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        }
    }
}

/// <summary>The scale bench's options, shared by the orchestrator and the instance processes it starts.</summary>
internal sealed class ScaleSettings
{
    public ScaleSettings(BenchArgs args)
    {
        Redis = args.String("redis", "127.0.0.1:6379");
        Jobs = args.Int("jobs", 20_000);
        HandlerMs = args.Int("handler-ms", 20);
        Concurrency = args.Int("concurrency", 16);
        IdleTimeout = TimeSpan.FromSeconds(args.Int("idle-timeout-sec", 10));
        SessionDuration = TimeSpan.FromSeconds(args.Int("session-sec", 270));
        MaxInstances = [.. args.String("max-instances", "1,2,4").Split(',').Select(v => int.Parse(v, CultureInfo.InvariantCulture))];
        TargetPerInstance = args.Int("target-per-instance", 1);
        ScalerInterval = TimeSpan.FromMilliseconds(args.Int("scaler-ms", 500));
        ScaleInAfter = TimeSpan.FromMilliseconds(args.Int("scale-in-ms", 5000));
        IdleWindow = TimeSpan.FromSeconds(args.Int("idle-window-sec", 30));
        WarmUpJobs = args.Int("warm-up-jobs", 2000);
    }

    public string Redis { get; }

    public int Jobs { get; }

    public int HandlerMs { get; }

    public int Concurrency { get; }

    public TimeSpan IdleTimeout { get; }

    public TimeSpan SessionDuration { get; }

    public int[] MaxInstances { get; }

    /// <summary>Target executions per instance: host.json's <c>extensions.queues.batchSize</c> (1).</summary>
    public int TargetPerInstance { get; }

    /// <summary>How often the simulated scale controller decides.</summary>
    public TimeSpan ScalerInterval { get; }

    /// <summary>An instance that has run no session for this long may be stopped when fewer are desired.</summary>
    public TimeSpan ScaleInAfter { get; }

    /// <summary>How long after the drain session time is counted as idle.</summary>
    public TimeSpan IdleWindow { get; }

    /// <summary>Jobs of the unmeasured first run.</summary>
    public int WarmUpJobs { get; }

    public IConfiguration Configuration(string queue) => new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
    {
        ["Conveyor:Redis:ConnectionString"] = Redis,
        ["Conveyor:Processor:Queues:0"] = queue,
        ["Conveyor:Processor:Concurrency"] = Concurrency.ToString(CultureInfo.InvariantCulture),
        ["Conveyor:Processor:IdleTimeout"] = IdleTimeout.ToString("c", CultureInfo.InvariantCulture),
        ["Conveyor:Processor:SessionDuration"] = SessionDuration.ToString("c", CultureInfo.InvariantCulture),
    }).Build();
}
