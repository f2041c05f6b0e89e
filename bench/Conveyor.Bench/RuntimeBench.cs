using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Conveyor.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using RedisServer = StackExchange.Redis.IServer;

namespace Conveyor.Bench;

/// <summary>
/// Remote runtimes over HTTP: the self-host in this process on a loopback port, R <see cref="RuntimeAgent"/>s of the real
/// client draining N no-op jobs (claims of at most 100, then of 1), idle pickup latency (enqueue call → the agent's
/// delegate), and recovery: from a runtime's last beat to its claimed jobs running on another agent. Prints one JSON line.
/// </summary>
internal static class RuntimeBench
{
    private const string Key = "bench-key";

    /// <summary>Presence fast enough to measure recovery in seconds: stale after 5 s, swept and visited every second.</summary>
    private static readonly Dictionary<string, string?> Presence = new()
    {
        ["Conveyor:Presence:BeatInterval"] = "00:00:01",
        ["Conveyor:Presence:FlushInterval"] = "00:00:01",
        ["Conveyor:Presence:SweepInterval"] = "00:00:01",
        ["Conveyor:Presence:StaleWindow"] = "00:00:05",
        ["ConveyorHeartbeatFlushSchedule"] = "* * * * * *",
        ["ConveyorStaleSweeperSchedule"] = "* * * * * *",
        ["ConveyorCustodianSchedule"] = "* * * * * *",
    };

    public static async Task<int> RunAsync(BenchArgs args)
    {
        var redis = args.String("redis", "127.0.0.1:6379");
        var postgres = args.String("postgres", "Host=127.0.0.1;Port=5432;Database=conveyor;Username=conveyor");
        var jobs = args.Int("jobs", 100_000);
        var jobsMax1 = args.Int("jobs-max1", 20_000);
        var agents = args.Int("agents", 4);
        var inFlight = args.Int("in-flight", 1);
        var pickups = args.Int("pickups", 500);
        var recoveryJobs = args.Int("recovery-jobs", 20);
        var loadBefore = LoadAverage();

        var settings = new Dictionary<string, string?>(Presence)
        {
            ["Conveyor:Redis:ConnectionString"] = redis,
            ["Conveyor:Postgres:ConnectionString"] = postgres,
            ["Conveyor:Postgres:MigrateOnStart"] = "true",
            ["Conveyor:Api:Keys:0"] = Key,
            ["Conveyor:Processor:Queues:0"] = "bench-processor-" + Guid.NewGuid().ToString("N")[..8],
        };
        var app = Conveyor.SelfHost.SelfHost.Build(
            ["--urls", "http://127.0.0.1:0"],
            customize: builder =>
            {
                builder.Configuration.AddInMemoryCollection(settings);
                builder.Logging.ClearProviders().AddConsole().SetMinimumLevel(LogLevel.Warning);
            });
        await app.StartAsync();
        var address = new Uri(app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.First());
        using var client = new ConveyorClient(address, Key);
        using var loggers = LoggerFactory.Create(logging => logging.AddConsole().SetMinimumLevel(LogLevel.Warning));
        await using var admin = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(redis + ",allowAdmin=true");
        var redisServer = admin.GetServer(admin.GetEndPoints()[0]);
        try
        {
            await DrainAsync(client, loggers, redisServer, 2_000, agents, maxPerClaim: 100, inFlight); // warm-up: JIT, connections, scripts
            Console.Error.WriteLine($"drain {jobs} jobs with {agents} agents, claims of at most 100, {inFlight} in flight per agent");
            var max100 = await DrainAsync(client, loggers, redisServer, jobs, agents, maxPerClaim: 100, inFlight);
            Console.Error.WriteLine($"drain {jobsMax1} jobs with {agents} agents, claims of 1, {inFlight} in flight per agent");
            var max1 = await DrainAsync(client, loggers, redisServer, jobsMax1, agents, maxPerClaim: 1, inFlight);
            Console.Error.WriteLine($"idle pickup, {pickups} samples");
            var (p50, p99) = await PickupAsync(client, loggers, pickups);
            Console.Error.WriteLine($"recovery of {recoveryJobs} jobs from a runtime that stops beating");
            var recovery = await RecoveryAsync(client, loggers, recoveryJobs);
            var line = new Dictionary<string, object?>
            {
                ["mode"] = "runtimes",
                ["agents"] = agents,
                ["claimsInFlight"] = inFlight,
                ["jobs"] = jobs,
                ["jobsPerSecMax100"] = Math.Round(max100.JobsPerSec),
                // CPU per job while draining, whatever else the machine runs: this process (server and agents) and Redis.
                ["cpuUsPerJobMax100"] = max100.CpuUsPerJob,
                ["jobsMax1"] = jobsMax1,
                ["jobsPerSecMax1"] = Math.Round(max1.JobsPerSec),
                ["cpuUsPerJobMax1"] = max1.CpuUsPerJob,
                ["pickupP50Ms"] = Math.Round(p50, 3),
                ["pickupP99Ms"] = Math.Round(p99, 3),
                ["recoverySec"] = Math.Round(recovery, 2),
                // Stale window + sweep interval + custodian interval (the flush does not count: the sweep reads buffered beats).
                ["recoveryBoundSec"] = RecoveryBound().TotalSeconds,
                ["loadAvgBefore"] = loadBefore,
                ["loadAvgAfter"] = LoadAverage(),
            };
            Console.WriteLine(JsonSerializer.Serialize(line));
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
        return 0;
    }

    /// <summary>
    /// Enqueues <paramref name="count"/> jobs (batches of 1,000 over HTTP), then times R agents draining them, each with
    /// <paramref name="inFlight"/> claims in flight and room for twice what they bring (a claim goes out while the jobs
    /// of the last one are acked): jobs per second, and the CPU time per job of this process and of Redis (µs).
    /// </summary>
    private static async Task<(double JobsPerSec, Dictionary<string, double> CpuUsPerJob)> DrainAsync(
        ConveyorClient client, ILoggerFactory loggers, RedisServer redis, int count, int agents, int maxPerClaim, int inFlight)
    {
        var queue = "bench-" + Guid.NewGuid().ToString("N")[..8];
        var next = -1;
        await Task.WhenAll(Enumerable.Range(0, 4).Select(async _ =>
        {
            int index;
            while ((index = Interlocked.Increment(ref next)) * 1000 < count)
            {
                var size = Math.Min(1000, count - index * 1000);
                await client.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, size).Select(n => NewJob.Of("noop", n))]);
            }
        }));
        using var stop = new CancellationTokenSource();
        var cpuBefore = await CpuTimes.ReadAsync(redis);
        var clock = Stopwatch.StartNew();
        var running = Enumerable.Range(0, agents).Select(async i =>
        {
            using var agent = new RuntimeAgent(
                client,
                new RuntimeAgentOptions
                {
                    Name = $"bench-{i}",
                    Queues = [queue],
                    Concurrency = 2 * inFlight * maxPerClaim,
                    MaxPerClaim = maxPerClaim,
                    ClaimsInFlight = inFlight,
                    ClaimWait = TimeSpan.FromSeconds(1),
                },
                (_, _) => Task.CompletedTask,
                loggers.CreateLogger<RuntimeAgent>());
            await agent.RunAsync(stop.Token);
        }).ToList();
        // Done when every job is acked: the queue holds nothing ready or running.
        while (true)
        {
            var stats = await client.GetQueueAsync(queue);
            if (stats.Ready + stats.Running + stats.Scheduled == 0)
            {
                break;
            }
            await Task.Delay(20);
        }
        var seconds = clock.Elapsed.TotalSeconds;
        var cpu = await CpuTimes.ReadAsync(redis) - cpuBefore;
        await stop.CancelAsync();
        await Task.WhenAll(running);
        return (count / seconds, new()
        {
            ["bench"] = Math.Round(cpu.Bench * 1e6 / count, 1),
            ["redis"] = Math.Round(cpu.Redis * 1e6 / count, 1),
        });
    }

    /// <summary>One idle agent; each sample enqueues one job and times the call's start to the delegate's start.</summary>
    private static async Task<(double P50, double P99)> PickupAsync(ConveyorClient client, ILoggerFactory loggers, int samples)
    {
        var queue = "bench-pickup-" + Guid.NewGuid().ToString("N")[..8];
        var started = new ConcurrentDictionary<string, long>();
        var arrived = new SemaphoreSlim(0);
        using var stop = new CancellationTokenSource();
        using var agent = new RuntimeAgent(
            client,
            new RuntimeAgentOptions { Name = "bench-pickup", Queues = [queue], Concurrency = 1, MaxPerClaim = 1, ClaimWait = TimeSpan.FromSeconds(20) },
            (job, _) =>
            {
                started[job.Id] = Stopwatch.GetTimestamp();
                arrived.Release();
                return Task.CompletedTask;
            },
            loggers.CreateLogger<RuntimeAgent>());
        var running = agent.RunAsync(stop.Token);
        var latencies = new List<double>(samples);
        for (var i = -20; i < samples; i++) // the first 20 warm up
        {
            await Task.Delay(20); // let the agent's ack go out and its next claim wait again
            var id = $"pickup-{i + 20}";
            var sent = Stopwatch.GetTimestamp();
            await client.EnqueueAsync(queue, NewJob.Of("noop", i) with { Id = id });
            await arrived.WaitAsync();
            if (i >= 0)
            {
                latencies.Add(Stopwatch.GetElapsedTime(sent, started[id]).TotalMilliseconds);
            }
        }
        await stop.CancelAsync();
        await running;
        latencies.Sort();
        return (Latency.Percentile(latencies, 0.50), Latency.Percentile(latencies, 0.99));
    }

    /// <summary>
    /// A runtime claims K jobs and stops beating (killed); another agent runs. Seconds from the dead runtime's last beat to
    /// the last of its K jobs starting on the other agent.
    /// </summary>
    private static async Task<double> RecoveryAsync(ConveyorClient client, ILoggerFactory loggers, int count)
    {
        var queue = "bench-recovery-" + Guid.NewGuid().ToString("N")[..8];
        await client.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, count).Select(n => NewJob.Of("noop", n))]);
        var dead = await client.RegisterRuntimeAsync("bench-killed");
        await client.BeatAsync(dead);
        var claimed = await client.ClaimAsync(dead, queue, count, TimeSpan.Zero);
        await client.BeatAsync(dead);
        var lastBeat = Stopwatch.GetTimestamp();
        var pending = new ConcurrentDictionary<string, bool>(claimed.Jobs.ToDictionary(j => j.Id, _ => true));
        var allRan = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var stop = new CancellationTokenSource();
        using var agent = new RuntimeAgent(
            client,
            new RuntimeAgentOptions { Name = "bench-survivor", Queues = [queue], Concurrency = count, ClaimWait = TimeSpan.FromSeconds(20) },
            (job, _) =>
            {
                if (pending.TryRemove(job.Id, out var _) && pending.IsEmpty)
                {
                    allRan.TrySetResult(Stopwatch.GetTimestamp());
                }
                return Task.CompletedTask;
            },
            loggers.CreateLogger<RuntimeAgent>());
        var running = agent.RunAsync(stop.Token);
        var end = await allRan.Task.WaitAsync(TimeSpan.FromMinutes(5));
        await stop.CancelAsync();
        await running;
        return Stopwatch.GetElapsedTime(lastBeat, end).TotalSeconds;
    }

    /// <summary>The documented bound of recovery under <see cref="Presence"/>: stale window + sweep interval + custodian interval.</summary>
    private static TimeSpan RecoveryBound() =>
        TimeSpan.Parse(Presence["Conveyor:Presence:StaleWindow"]!, CultureInfo.InvariantCulture)
        + TimeSpan.Parse(Presence["Conveyor:Presence:SweepInterval"]!, CultureInfo.InvariantCulture)
        + TimeSpan.FromSeconds(1); // ConveyorCustodianSchedule: every second

    /// <summary>The 1-minute load average of the machine (other engineers share it), or null off Linux.</summary>
    private static double? LoadAverage() =>
        File.Exists("/proc/loadavg")
            ? double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], CultureInfo.InvariantCulture)
            : null;
}
