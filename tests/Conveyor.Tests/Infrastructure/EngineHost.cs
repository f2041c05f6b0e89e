using System.Collections.Concurrent;
using Conveyor.Hosting;
using Conveyor.Queue;
using Conveyor.Storage;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Conveyor.Tests.Infrastructure;

/// <summary>
/// Conveyor wired the way hosts wire it (<c>AddConveyor</c>), against the test Redis, with a
/// <see cref="Probe"/> handler registered for job type <c>probe</c>.
/// </summary>
public sealed class EngineHost : IAsyncDisposable
{
    private readonly ConnectionMultiplexer? _own;

    private EngineHost(ServiceProvider services, IDatabase db, Probe probe, LogCapture logs, ConnectionMultiplexer? own)
    {
        Services = services;
        Db = db;
        Probe = probe;
        Logs = logs;
        _own = own;
    }

    public ServiceProvider Services { get; }
    public IDatabase Db { get; }
    public Probe Probe { get; }

    /// <summary>Every log entry of the engine, Debug and up.</summary>
    public LogCapture Logs { get; }
    public Producer Producer => Services.GetRequiredService<Producer>();
    public Processor Processor => Services.GetRequiredService<Processor>();
    public Scheduler Scheduler => Services.GetRequiredService<Scheduler>();
    public Custodian Custodian => Services.GetRequiredService<Custodian>();
    public QueueAdmin Admin => Services.GetRequiredService<QueueAdmin>();

    /// <summary>The engine on the shared test Redis; with <paramref name="wake"/>, posting wake-ups through it.</summary>
    public static async Task<EngineHost> StartAsync(Dictionary<string, string?>? settings = null, bool cluster = false, IWakeSender? wake = null) =>
        Build(cluster ? await TestRedis.GetClusterAsync() : await TestRedis.GetAsync(), settings, own: false, wake);

    /// <summary>
    /// The engine on a Redis of the test's own (a dedicated server, or a <see cref="Conveyor.Testing.FaultProxy"/> in front of one), with
    /// client timeouts of <paramref name="timeoutMs"/> so that a stalled Redis times calls out quickly. <see cref="Db"/>
    /// goes through the same connection.
    /// </summary>
    public static async Task<EngineHost> StartOnAsync(
        string endpoint, Dictionary<string, string?>? settings = null, int timeoutMs = 500, IWakeSender? wake = null)
    {
        var options = ConfigurationOptions.Parse(endpoint);
        options.AbortOnConnectFail = false;
        options.AsyncTimeout = timeoutMs;
        options.SyncTimeout = timeoutMs;
        options.ConnectTimeout = 5000;
        return Build(await ConnectionMultiplexer.ConnectAsync(options), settings, own: true, wake);
    }

    private static EngineHost Build(ConnectionMultiplexer multiplexer, Dictionary<string, string?>? settings, bool own, IWakeSender? wake = null)
    {
        var values = new Dictionary<string, string?>
        {
            ["Conveyor:Processor:IdlePollInterval"] = "00:00:00.05",
            ["Conveyor:Processor:HeartbeatInterval"] = "00:00:00.2",
            ["Conveyor:Processor:ShutdownGrace"] = "00:00:05",
            ["Conveyor:Queue:RetryBaseDelay"] = "00:00:00.001",
            ["Conveyor:Queue:MaxBackoff"] = "00:00:01",
        };
        foreach (var (key, value) in settings ?? [])
        {
            values[key] = value;
        }
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(values).Build();
        var probe = new Probe();
        var logs = new LogCapture();
        var services = new ServiceCollection();
        services.AddLogging(logging => logging.SetMinimumLevel(LogLevel.Debug).AddProvider(logs));
        services.AddSingleton(probe);
        services.AddSingleton(new RedisConnection(multiplexer));
        services.AddConveyor(configuration).AddJobHandler<ProbeHandler>("probe");
        if (wake is not null)
        {
            services.Replace(ServiceDescriptor.Singleton(wake));
        }
        var provider = services.BuildServiceProvider(new ServiceProviderOptions { ValidateOnBuild = true, ValidateScopes = true });
        return new EngineHost(provider, multiplexer.GetDatabase(), probe, logs, own ? multiplexer : null);
    }

    public async ValueTask DisposeAsync()
    {
        await Services.DisposeAsync();
        if (_own is not null)
        {
            await _own.DisposeAsync();
        }
    }
}

/// <summary>Records every run of the <c>probe</c> job type and lets a test decide what a run does.</summary>
public sealed class Probe
{
    private int _running;
    private int _maxRunning;

    public ConcurrentQueue<Job> Runs { get; } = new();

    /// <summary>What a run does; default: succeed at once.</summary>
    public Func<Job, CancellationToken, Task> Behavior { get; set; } = (_, _) => Task.CompletedTask;

    public int Running => Volatile.Read(ref _running);
    public int MaxRunning => Volatile.Read(ref _maxRunning);

    public int RunsOf(string id) => Runs.Count(r => r.Id == id);

    internal async Task RunAsync(Job job, CancellationToken cancellationToken)
    {
        var running = Interlocked.Increment(ref _running);
        int max;
        while (running > (max = Volatile.Read(ref _maxRunning)) && Interlocked.CompareExchange(ref _maxRunning, running, max) != max)
        {
        }
        Runs.Enqueue(job);
        try
        {
            await Behavior(job, cancellationToken);
        }
        finally
        {
            Interlocked.Decrement(ref _running);
        }
    }
}

public sealed class ProbeHandler(Probe probe) : IJobHandler
{
    public Task HandleAsync(Job job, CancellationToken cancellationToken) => probe.RunAsync(job, cancellationToken);
}
