using System.Diagnostics;
using Azure.Storage.Queues;
using Azure.Storage.Queues.Models;
using Conveyor.Hosting;
using Conveyor.Queue;
using Conveyor.Storage;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Conveyor.Bench;

/// <summary>
/// One simulated Functions instance (<c>bench scale-instance</c>, a process the scale bench starts): it plays the host's
/// queue listener with host.json's settings (batchSize 1, newBatchThreshold 0: one message at a time; polls back off to
/// maxPollingInterval 2 s; a failed message becomes visible again after visibilityTimeout 5 s and is dropped after
/// maxDequeueCount 2) and runs each message as the Wake function does, <see cref="Processor.RunWokenSessionAsync"/>.
/// With <c>--timer-only 1</c> it is the app before issue 11 instead: every 10 s tick, a full-length session unless one
/// is still running. Handler <c>sleep</c> awaits <c>--handler-ms</c>. Tells the bench on stdout: <c>ready</c>,
/// <c>start</c>, <c>end EMPTY CLAIMED LASTACK</c> (EMPTY 1: a wake-up that found nothing ready), and the cold-start marks
/// of <see cref="Marks"/> (<c>mark NAME TIMESTAMP</c>). Stops when stdin closes.
/// </summary>
internal static class ScaleInstance
{
    public const string JobType = "sleep";

    private static readonly TimeSpan MinPoll = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan MaxPoll = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan RetryVisibility = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan TimerTick = TimeSpan.FromSeconds(10);
    private const int MaxDequeueCount = 2;

    public static async Task<int> RunAsync(BenchArgs args)
    {
        Marks.Mark("main");
        var settings = new ScaleSettings(args);
        var queue = args.String("queue", "");
        using var stop = new CancellationTokenSource();
        _ = Task.Run(async () =>
        {
            await Console.In.ReadToEndAsync();
            await stop.CancelAsync();
        });
        var services = new ServiceCollection()
            .AddLogging(logging => logging.AddConsole(c => c.LogToStandardErrorThreshold = LogLevel.Trace).SetMinimumLevel(LogLevel.Warning))
            .AddSingleton(new SleepHandler.Options(TimeSpan.FromMilliseconds(settings.HandlerMs)));
        services.AddConveyor(settings.Configuration(queue)).AddJobHandler<SleepHandler>(JobType);
        services.AddLogging(logging => logging.AddProvider(new Marks.SessionLog()).AddFilter<Marks.SessionLog>(typeof(Processor).FullName, LogLevel.Information));
        await using var provider = services.BuildServiceProvider();
        var processor = provider.GetRequiredService<Processor>();
        Marks.Mark("host");
        using var marks = new Marks();
        // Connecting to Redis runs beside the listener's first poll, as in the Functions app, whose StartupChecks (a hosted
        // service, run as a task of its own) connect when the worker starts while the host's listener polls; a session
        // awaits the connection.
        var redis = provider.GetRequiredService<RedisConnection>();
        var connecting = Task.Run(async () =>
        {
            await redis.GetDatabaseAsync();
            Marks.Mark("redis");
        });
        Console.Out.WriteLine("ready");
        if (args.Int("timer-only", 0) == 1)
        {
            await RunTimerAsync(processor, queue, settings.SessionDuration, marks, stop.Token);
        }
        else
        {
            var wakeQueue = new QueueClient(args.String("azurite", ""), args.String("wake-queue", ""),
                new QueueClientOptions { MessageEncoding = QueueMessageEncoding.Base64 });
            await ListenAsync(processor, wakeQueue, marks, stop.Token);
        }
        await connecting;
        return 0;
    }

    private static async Task ListenAsync(Processor processor, QueueClient wakeQueue, Marks marks, CancellationToken stop)
    {
        var poll = MinPoll;
        var polled = false;
        while (!stop.IsCancellationRequested)
        {
            QueueMessage? message;
            try
            {
                // Invisible to other instances while its session runs (sessions end well within 10 min).
                message = (await wakeQueue.ReceiveMessageAsync(TimeSpan.FromMinutes(10), stop)).Value;
                if (!polled)
                {
                    polled = true;
                    Marks.Mark("poll");
                }
                if (message is null)
                {
                    await Task.Delay(poll, stop);
                    poll = poll * 2 > MaxPoll ? MaxPoll : poll * 2;
                    continue;
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }
            poll = MinPoll;
            marks.SessionStarts();
            Console.Out.WriteLine("start");
            try
            {
                var result = await processor.RunWokenSessionAsync(message.Body.ToString(), stop);
                Console.Out.WriteLine($"end {(result.ConsumerId.Length == 0 ? 1 : 0)} {result.Claimed} {marks.LastAck}");
                await wakeQueue.DeleteMessageAsync(message.MessageId, message.PopReceipt, CancellationToken.None);
            }
#pragma warning disable CA1031 // The host's listener outlives a failed invocation: the message is retried, then dropped.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                Console.Out.WriteLine($"end 0 0 {marks.LastAck}");
                await Console.Error.WriteLineAsync($"instance {Environment.ProcessId}: the Wake session failed: {ex.Message}");
                if (message.DequeueCount >= MaxDequeueCount)
                {
                    await wakeQueue.DeleteMessageAsync(message.MessageId, message.PopReceipt, CancellationToken.None);
                }
                else
                {
                    await wakeQueue.UpdateMessageAsync(message.MessageId, message.PopReceipt, message.Body, RetryVisibility, CancellationToken.None);
                }
            }
        }
    }

    private static async Task RunTimerAsync(Processor processor, string queue, TimeSpan sessionDuration, Marks marks, CancellationToken stop)
    {
        var clock = Stopwatch.StartNew();
        while (!stop.IsCancellationRequested)
        {
            marks.SessionStarts();
            Console.Out.WriteLine("start");
            var result = await processor.RunSessionAsync(queue, sessionDuration, stop);
            Console.Out.WriteLine($"end 0 {result.Claimed} {marks.LastAck}");
            try
            {
                await Task.Delay(TimerTick - TimeSpan.FromTicks(clock.Elapsed.Ticks % TimerTick.Ticks), stop);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>An IO-bound job: it awaits a fixed delay and uses no CPU meanwhile, so instances share two cores.</summary>
    private sealed class SleepHandler(SleepHandler.Options options) : IJobHandler
    {
        public Task HandleAsync(Job job, CancellationToken cancellationToken) => Task.Delay(options.Delay, cancellationToken);

        public sealed record Options(TimeSpan Delay);
    }
}

/// <summary>
/// The instance processes of one scale run, as the bench sees them: started and stopped by the scaler, their sessions
/// timed by the bench's clock from the lines they print.
/// </summary>
internal sealed class Fleet(ScaleSettings settings, string storage, string wakeQueue, string queue, Stopwatch clock) : IAsyncDisposable
{
    private readonly Lock _gate = new();
    private readonly List<Instance> _instances = [];
    private readonly List<Session> _sessions = [];
    private readonly TaskCompletionSource _firstSession = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The bench clock's start as a <see cref="Stopwatch"/> timestamp: instances' marks are placed on it.</summary>
    private readonly long _origin = Stopwatch.GetTimestamp() - clock.ElapsedTicks;
    private int _peak;

    public int Running
    {
        get
        {
            lock (_gate)
            {
                return _instances.Count(i => !i.Stopping);
            }
        }
    }

    public int Peak => Volatile.Read(ref _peak);

    public TimeSpan? FirstLaunch
    {
        get
        {
            lock (_gate)
            {
                return _instances.Count == 0 ? null : _instances.Min(i => i.LaunchedAt);
            }
        }
    }

    public int Sessions
    {
        get
        {
            lock (_gate)
            {
                return _sessions.Count;
            }
        }
    }

    public int SessionsRunning
    {
        get
        {
            lock (_gate)
            {
                return _sessions.Count(s => s.End is null);
            }
        }
    }

    public int EmptySessions
    {
        get
        {
            lock (_gate)
            {
                return _sessions.Count(s => s.Empty);
            }
        }
    }

    public double? StartupMsAverage
    {
        get
        {
            lock (_gate)
            {
                var ready = _instances.Where(i => i.ReadyAt is not null).Select(i => (i.ReadyAt!.Value - i.LaunchedAt).TotalMilliseconds).ToList();
                return ready.Count == 0 ? null : Math.Round(ready.Average());
            }
        }
    }

    /// <summary>
    /// Where an instance's time went from its launch to its first job, averaged (ms) over the instances whose first wake-up
    /// ran a session: launch → main (the runtime starts the process) → host (services built); from there, side by side,
    /// Redis connected (hostToRedis) and the wake queue's first receive answered (hostToPoll); poll → session (a message
    /// in hand: the session starts) → registered (the consumer's first beat recorded; this waits for the connection if
    /// it is not there yet) → claim (first jobs claimed) → ack (first acks recorded). launchToClaim is the sum up to the
    /// claim; cpuToClaim the CPU time the process had used by then. Null when no instance got that far.
    /// </summary>
    public Dictionary<string, double>? ColdStartMs()
    {
        lock (_gate)
        {
            var steps = new List<(string Name, List<double> Values)>
            {
                ("launchToMain", []), ("mainToHost", []), ("hostToRedis", []), ("hostToPoll", []), ("pollToSession", []),
                ("sessionToRegistered", []), ("registeredToClaim", []), ("claimToAck", []), ("launchToClaim", []), ("cpuToClaim", []),
            };
            foreach (var instance in _instances)
            {
                if (instance.Sessions.FirstOrDefault() is not { Empty: false, Registered: { } registered, FirstClaim: { } claim, FirstAck: { } ack } session
                    || !instance.Marks.TryGetValue("main", out var main) || !instance.Marks.TryGetValue("host", out var host)
                    || !instance.Marks.TryGetValue("redis", out var connected) || !instance.Marks.TryGetValue("poll", out var poll))
                {
                    continue;
                }
                TimeSpan[] spans =
                [
                    main - instance.LaunchedAt, host - main, connected - host, poll - host, session.Start - poll,
                    registered - session.Start, claim - registered, ack - claim, claim - instance.LaunchedAt,
                ];
                for (var i = 0; i < spans.Length; i++)
                {
                    steps[i].Values.Add(spans[i].TotalMilliseconds);
                }
                if (instance.Cpu.TryGetValue("claim", out var cpu))
                {
                    steps[^1].Values.Add(cpu);
                }
            }
            return steps[0].Values.Count == 0 ? null : steps.Where(s => s.Values.Count > 0).ToDictionary(s => s.Name, s => Math.Round(s.Values.Average()));
        }
    }

    /// <summary>
    /// CPU time (ms) an instance's process had used by each mark (cumulative: main, host, redis, poll, registered, claim,
    /// ack), averaged over the instances <see cref="ColdStartMs"/> counts: the cold start's cost whatever the machine's load.
    /// </summary>
    public Dictionary<string, double>? ColdStartCpuMs()
    {
        lock (_gate)
        {
            var counted = _instances.Where(i => i.Sessions.FirstOrDefault() is { Empty: false, FirstAck: not null }).ToList();
            var names = new[] { "main", "host", "redis", "poll", "registered", "claim", "ack" };
            var result = names.Select(n => (Name: n, Values: counted.Where(i => i.Cpu.ContainsKey(n)).Select(i => i.Cpu[n]).ToList()))
                .Where(n => n.Values.Count > 0).ToDictionary(n => n.Name, n => Math.Round(n.Values.Average()));
            return result.Count == 0 ? null : result;
        }
    }

    /// <summary>
    /// Each session that claimed jobs: jobs per second from its first claim to its last ack, and when (s, bench clock)
    /// its first claim and last ack came: whether the fleet drained slower because sessions were slow or because they
    /// overlapped only part of the drain.
    /// </summary>
    public List<SessionFigures> SessionRates(TimeSpan from)
    {
        lock (_gate)
        {
            return [.. _sessions.Where(s => s.Claimed > 0 && s.FirstClaim is not null && s.LastAck is not null && s.LastAck > s.FirstClaim)
                .OrderBy(s => s.FirstClaim)
                .Select(s => new SessionFigures(
                    s.Claimed,
                    Math.Round(s.Claimed / (s.LastAck!.Value - s.FirstClaim!.Value).TotalSeconds),
                    Math.Round((s.FirstClaim.Value - from).TotalSeconds, 2),
                    Math.Round((s.LastAck.Value - from).TotalSeconds, 2)))];
        }
    }

    public Task WaitForSessionAsync() => _firstSession.Task.WaitAsync(TimeSpan.FromSeconds(60));

    public void Start(bool timerOnly)
    {
        var path = Environment.ProcessPath ?? throw new InvalidOperationException("no process path to start instances from");
        var start = new ProcessStartInfo(path)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (Path.GetFileNameWithoutExtension(path) == "dotnet")
        {
            start.ArgumentList.Add(typeof(Fleet).Assembly.Location);
        }
        foreach (var argument in (string[])["scale-instance", "--redis", settings.Redis, "--azurite", storage, "--wake-queue", wakeQueue,
                     "--queue", queue, "--handler-ms", Invariant(settings.HandlerMs), "--concurrency", Invariant(settings.Concurrency),
                     "--idle-timeout-sec", Invariant((int)settings.IdleTimeout.TotalSeconds),
                     "--session-sec", Invariant((int)settings.SessionDuration.TotalSeconds), "--timer-only", timerOnly ? "1" : "0"])
        {
            start.ArgumentList.Add(argument);
        }
        // A small instance: workstation GC, as a Functions worker on one vCPU would pick.
        start.Environment["DOTNET_gcServer"] = "0";
        var instance = new Instance(clock.Elapsed);
        var process = Process.Start(start) ?? throw new InvalidOperationException("an instance did not start");
        instance.Process = process;
        process.OutputDataReceived += (_, line) => OnLine(instance, line.Data);
        process.ErrorDataReceived += (_, line) =>
        {
            if (line.Data is { } text)
            {
                Console.Error.WriteLine($"  [instance {process.Id}] {text}");
            }
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        lock (_gate)
        {
            _instances.Add(instance);
            _peak = Math.Max(_peak, _instances.Count(i => !i.Stopping));
        }
        Console.Error.WriteLine($"scale:   {clock.Elapsed.TotalSeconds:F2} s: instance {process.Id} started ({Running} running)");
    }

    /// <summary>Stops up to <paramref name="count"/> instances that have run no session for <paramref name="after"/>.</summary>
    public void StopIdle(int count, TimeSpan after)
    {
        List<Instance> stopping;
        lock (_gate)
        {
            var now = clock.Elapsed;
            stopping = [.. _instances.Where(i => !i.Stopping && i.Current is null && i.ReadyAt is not null && now - i.LastActivity >= after).Take(count)];
            foreach (var instance in stopping)
            {
                instance.Stopping = true;
            }
        }
        foreach (var instance in stopping)
        {
            instance.Process!.StandardInput.Close();
            Console.Error.WriteLine($"scale:   {clock.Elapsed.TotalSeconds:F2} s: instance {instance.Process.Id} scaled in ({Running} running)");
        }
    }

    /// <summary>Session time (seconds, all instances) between <paramref name="from"/> and <paramref name="to"/>; running sessions count up to now.</summary>
    public double SessionSecondsWithin(TimeSpan from, TimeSpan to)
    {
        lock (_gate)
        {
            var now = clock.Elapsed;
            return _sessions.Sum(s =>
            {
                var start = s.Start > from ? s.Start : from;
                var end = s.End ?? now;
                end = end < to ? end : to;
                return end > start ? (end - start).TotalSeconds : 0;
            });
        }
    }

    public TimeSpan? FirstSessionAfter(TimeSpan time)
    {
        lock (_gate)
        {
            return _sessions.Where(s => s.Start >= time).Select(s => (TimeSpan?)s.Start).Min();
        }
    }

    public async ValueTask DisposeAsync()
    {
        List<Instance> all;
        lock (_gate)
        {
            all = [.. _instances];
            foreach (var instance in all)
            {
                instance.Stopping = true;
            }
        }
        await Task.WhenAll(all.Select(async instance =>
        {
            var process = instance.Process!;
            try
            {
                process.StandardInput.Close();
                await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(45));
            }
            catch (Exception e) when (e is TimeoutException or IOException or InvalidOperationException)
            {
                try
                {
                    process.Kill(entireProcessTree: true);
                }
                catch (InvalidOperationException)
                {
                    // Already gone.
                }
            }
        }));
        foreach (var instance in all)
        {
            instance.Process!.Dispose();
        }
        lock (_gate)
        {
            _instances.Clear();
        }
    }

    private void OnLine(Instance instance, string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_gate)
        {
            var now = clock.Elapsed;
            var words = line.Split(' ');
            if (line == "ready")
            {
                instance.ReadyAt = now;
                instance.LastActivity = now;
            }
            else if (line == "start")
            {
                instance.Current = new Session(now);
                instance.Sessions.Add(instance.Current);
                _sessions.Add(instance.Current);
                _firstSession.TrySetResult();
            }
            else if (words is ["mark", var name, var stamp, var cpuMs])
            {
                var at = Stopwatch.GetElapsedTime(_origin, long.Parse(stamp, System.Globalization.CultureInfo.InvariantCulture));
                instance.Cpu.TryAdd(name, double.Parse(cpuMs, System.Globalization.CultureInfo.InvariantCulture));
                switch (name)
                {
                    case "registered" when instance.Current is { } session:
                        session.Registered = at;
                        break;
                    case "claim" when instance.Current is { } session:
                        session.FirstClaim = at;
                        break;
                    case "ack" when instance.Current is { } session:
                        session.FirstAck = at;
                        break;
                    default:
                        instance.Marks.TryAdd(name, at);
                        break;
                }
            }
            else if (words is ["end", var empty, var claimed, var lastAck] && instance.Current is { } session)
            {
                session.End = now;
                session.Empty = empty == "1";
                session.Claimed = long.Parse(claimed, System.Globalization.CultureInfo.InvariantCulture);
                var last = long.Parse(lastAck, System.Globalization.CultureInfo.InvariantCulture);
                session.LastAck = last == 0 ? null : Stopwatch.GetElapsedTime(_origin, last);
                instance.Current = null;
                instance.LastActivity = now;
            }
        }
    }

    private static string Invariant(int value) => value.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private sealed class Instance(TimeSpan launchedAt)
    {
        public TimeSpan LaunchedAt { get; } = launchedAt;

        public Process? Process { get; set; }

        public TimeSpan? ReadyAt { get; set; }

        public TimeSpan LastActivity { get; set; } = launchedAt;

        public Session? Current { get; set; }

        public bool Stopping { get; set; }

        /// <summary>Its start-up marks (main, host, redis, poll) on the bench clock.</summary>
        public Dictionary<string, TimeSpan> Marks { get; } = new(StringComparer.Ordinal);

        public List<Session> Sessions { get; } = [];

        /// <summary>CPU time (ms) the process had used at each mark (its first of each name).</summary>
        public Dictionary<string, double> Cpu { get; } = new(StringComparer.Ordinal);
    }

    private sealed class Session(TimeSpan start)
    {
        public TimeSpan Start { get; } = start;

        public TimeSpan? End { get; set; }

        public bool Empty { get; set; }

        public long Claimed { get; set; }

        public TimeSpan? Registered { get; set; }

        public TimeSpan? FirstClaim { get; set; }

        public TimeSpan? FirstAck { get; set; }

        public TimeSpan? LastAck { get; set; }
    }
}

/// <summary>One session that claimed jobs: how many, its rate from first claim to last ack, and when those came (s from the first enqueue).</summary>
internal sealed record SessionFigures(long Jobs, double JobsPerSec, double FirstClaimSec, double LastAckSec);
