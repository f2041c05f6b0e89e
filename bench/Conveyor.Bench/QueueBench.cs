using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Conveyor.Hosting;
using Conveyor.Queue;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Conveyor.Bench;

/// <summary>
/// After a warm-up lot (enqueued and drained the same way), enqueues N no-op jobs in batches, drains them with one
/// processor session at concurrency C, then
/// measures enqueue-to-start latency on an idle queue, then the slowest script call at the largest batches
/// with the largest payloads (<see cref="ScriptCost"/>). Prints one JSON line.
/// </summary>
internal static class QueueBench
{
    public static async Task<int> RunAsync(BenchArgs args)
    {
        var redis = args.String("redis", "127.0.0.1:6379");
        var jobs = args.Int("jobs", 200_000);
        var concurrency = args.Int("concurrency", 64);
        var prefetch = args.Int("prefetch", 500);
        var batch = args.Int("batch", 1000);
        var producers = args.Int("producers", 4);
        var pickupSamples = args.Int("pickups", 500);
        var warmup = args.Int("warmup", 80_000);
        var queue = "bench-" + Guid.NewGuid().ToString("N")[..8];

        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Conveyor:Redis:ConnectionString"] = redis + ",allowAdmin=true",
            ["Conveyor:Processor:Concurrency"] = concurrency.ToString(CultureInfo.InvariantCulture),
            ["Conveyor:Processor:Prefetch"] = prefetch.ToString(CultureInfo.InvariantCulture),
            ["Conveyor:Processor:Queues:0"] = queue,
        }).Build();
        var probe = new PickupProbe();
        var services = new ServiceCollection()
            .AddLogging(logging => logging.AddConsole().SetMinimumLevel(LogLevel.Warning))
            .AddSingleton(probe);
        services.AddConveyor(configuration).AddJobHandler<NoopHandler>("noop");
        await using var provider = services.BuildServiceProvider();
        var producer = provider.GetRequiredService<Producer>();
        var processor = provider.GetRequiredService<Processor>();
        var admin = provider.GetRequiredService<QueueAdmin>();
        var multiplexer = await provider.GetRequiredService<Conveyor.Storage.RedisConnection>().GetMultiplexerAsync();
        var server = multiplexer.GetServers()[0];
        var db = multiplexer.GetDatabase();

        // Warm up: enqueue and drain a first lot the same way, in rounds with pauses, so that the figures below are the
        // steady state of a processor that has run for a while, not the JIT tiering the hot paths up (each tier needs
        // calls after a pause, and its compiles take CPU the drain would otherwise have on 2 cores).
        Console.Error.WriteLine($"warm up on {warmup} jobs");
        const int WarmupRounds = 4;
        for (var round = 0; round < WarmupRounds; round++)
        {
            var lot = warmup / WarmupRounds;
            for (var done = 0; done < lot; done += batch)
            {
                await producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, Math.Min(batch, lot - done)).Select(_ => new JobRequest("noop", "{}"))]);
            }
            using var warm = new CancellationTokenSource();
            var warming = processor.RunSessionAsync(queue, null, warm.Token);
            while (await db.HashLengthAsync($"conveyor:{{{queue}}}:jobs") > 0)
            {
                await Task.Delay(5);
            }
            await warm.CancelAsync();
            await warming;
            await Task.Delay(500);
        }

        // 1. Enqueue N jobs in batches, a few batches in flight at once.
        Console.Error.WriteLine($"enqueue {jobs} jobs in batches of {batch}, {producers} producers");
        var before = await RedisStats.ReadAsync(server);
        var cpuBefore = ClientCpuSeconds();
        var clock = Stopwatch.StartNew();
        var next = -1;
        var payload = """{"n":12345,"kind":"bench"}""";
        await Task.WhenAll(Enumerable.Range(0, producers).Select(async _ =>
        {
            int index;
            while ((index = Interlocked.Increment(ref next)) * batch < jobs)
            {
                var count = Math.Min(batch, jobs - index * batch);
                await producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, count).Select(_ => new JobRequest("noop", payload))]);
            }
        }));
        var enqueueSeconds = clock.Elapsed.TotalSeconds;
        var cpuAfterEnqueue = ClientCpuSeconds();
        var afterEnqueue = await RedisStats.ReadAsync(server);

        // 2. Drain them with one processor session.
        Console.Error.WriteLine($"drain with concurrency {concurrency}, prefetch {prefetch}");
        using var stop = new CancellationTokenSource();
        clock.Restart();
        var session = processor.RunSessionAsync(queue, null, stop.Token);
        var jobsKey = $"conveyor:{{{queue}}}:jobs";
        while (await db.HashLengthAsync(jobsKey) > 0)
        {
            await Task.Delay(5);
        }
        var drainSeconds = clock.Elapsed.TotalSeconds;
        var cpuAfterDrain = ClientCpuSeconds();
        var afterDrain = await RedisStats.ReadAsync(server);

        // 3. Idle pickup: one job at a time into the idle queue, enqueue call to handler start.
        Console.Error.WriteLine($"idle pickup x{pickupSamples}");
        var latencies = new List<double>(pickupSamples);
        for (var i = 0; i < pickupSamples; i++)
        {
            var started = probe.Arm();
            var sent = Stopwatch.GetTimestamp();
            await producer.EnqueueAsync(queue, new JobRequest("noop", payload));
            var at = await started;
            latencies.Add(Stopwatch.GetElapsedTime(sent, at).TotalMilliseconds);
            await Task.Delay(2);
        }
        await stop.CancelAsync();
        var result = await session;
        latencies.Sort();

        var enqueueDelta = afterEnqueue - before;
        var drainDelta = afterDrain - afterEnqueue;
        var line = new Dictionary<string, object>
        {
            ["mode"] = "queue",
            ["jobs"] = jobs,
            ["concurrency"] = concurrency,
            ["prefetch"] = prefetch,
            ["enqueuedPerSec"] = Math.Round(jobs / enqueueSeconds),
            ["processedPerSec"] = Math.Round(jobs / drainSeconds),
            ["pickupP50Ms"] = Math.Round(Latency.Percentile(latencies, 0.50), 3),
            ["pickupP99Ms"] = Math.Round(Latency.Percentile(latencies, 0.99), 3),
            ["redisCommandsPerJob"] = Math.Round((double)(enqueueDelta.Commands + drainDelta.Commands) / jobs, 4),
            ["redisScriptCallsPerJob"] = Math.Round((double)(enqueueDelta.ScriptCalls + drainDelta.ScriptCalls) / jobs, 4),
            ["redisCpuEnqueuePct"] = Math.Round(100 * enqueueDelta.CpuSeconds / enqueueSeconds, 1),
            ["redisCpuDrainPct"] = Math.Round(100 * drainDelta.CpuSeconds / drainSeconds, 1),
            // CPU per job, which the machine's other load barely changes (wall figures above depend on it).
            ["clientCpuEnqueueUsPerJob"] = Math.Round(1e6 * (cpuAfterEnqueue - cpuBefore) / jobs, 2),
            ["clientCpuDrainUsPerJob"] = Math.Round(1e6 * (cpuAfterDrain - cpuAfterEnqueue) / jobs, 2),
            ["redisCpuEnqueueUsPerJob"] = Math.Round(1e6 * enqueueDelta.CpuSeconds / jobs, 2),
            ["redisCpuDrainUsPerJob"] = Math.Round(1e6 * drainDelta.CpuSeconds / jobs, 2),
            ["acked"] = result.Acked,
        };
        // 4. The slowest script call at the largest batches, with the largest payloads.
        var maxPayload = provider.GetRequiredService<Microsoft.Extensions.Options.IOptions<QueueOptions>>().Value.MaxPayloadBytes;
        foreach (var (key, value) in await ScriptCost.MeasureAsync(db, server, producer, maxPayload))
        {
            line[key] = value;
        }
        Console.WriteLine(JsonSerializer.Serialize(line));
        await db.KeyDeleteAsync([$"conveyor:{{{queue}}}:jobs", $"conveyor:{{{queue}}}:state", $"conveyor:{{{queue}}}:payloads", $"conveyor:{{{queue}}}:seq",
            $"conveyor:{{{queue}}}:consumers", $"conveyor:{{{queue}}}:registered", $"conveyor:{{{queue}}}:idle"]);
        await db.SetRemoveAsync("conveyor:queues", queue);
        return 0;
    }

    private static double ClientCpuSeconds() => Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;

    private sealed class NoopHandler(PickupProbe probe) : IJobHandler
    {
        public Task HandleAsync(Job job, CancellationToken cancellationToken)
        {
            probe.Started();
            return Task.CompletedTask;
        }
    }

    private sealed class PickupProbe
    {
        private TaskCompletionSource<long>? _armed;

        public Task<long> Arm()
        {
            var source = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
            Volatile.Write(ref _armed, source);
            return source.Task;
        }

        public void Started() => Interlocked.Exchange(ref _armed, null)?.TrySetResult(Stopwatch.GetTimestamp());
    }
}
