using System.Collections.Concurrent;
using Conveyor.Hosting;
using Conveyor.Queue;
using Conveyor.Storage;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Conveyor.Tests.Infrastructure;

/// <summary>
/// Conveyor wired the way hosts wire it (<c>AddConveyor</c>), against the test Redis, with a
/// <see cref="Probe"/> handler registered for job type <c>probe</c>.
/// </summary>
public sealed class EngineHost : IAsyncDisposable
{
    private EngineHost(ServiceProvider services, IDatabase db, Probe probe)
    {
        Services = services;
        Db = db;
        Probe = probe;
    }

    public ServiceProvider Services { get; }
    public IDatabase Db { get; }
    public Probe Probe { get; }
    public Producer Producer => Services.GetRequiredService<Producer>();
    public Processor Processor => Services.GetRequiredService<Processor>();
    public Scheduler Scheduler => Services.GetRequiredService<Scheduler>();
    public Custodian Custodian => Services.GetRequiredService<Custodian>();
    public QueueAdmin Admin => Services.GetRequiredService<QueueAdmin>();

    public static async Task<EngineHost> StartAsync(Dictionary<string, string?>? settings = null, bool cluster = false)
    {
        var multiplexer = cluster ? await TestRedis.GetClusterAsync() : await TestRedis.GetAsync();
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
        var services = new ServiceCollection();
        services.AddLogging(logging => logging.SetMinimumLevel(LogLevel.Warning));
        services.AddSingleton(probe);
        services.AddSingleton(new RedisConnection(multiplexer));
        services.AddConveyor(configuration).AddJobHandler<ProbeHandler>("probe");
        var provider = services.BuildServiceProvider(new ServiceProviderOptions { ValidateOnBuild = true, ValidateScopes = true });
        return new EngineHost(provider, multiplexer.GetDatabase(), probe);
    }

    public ValueTask DisposeAsync() => Services.DisposeAsync();
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
