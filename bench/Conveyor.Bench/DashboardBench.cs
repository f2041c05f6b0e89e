using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using Conveyor.Queue;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Conveyor.Bench;

/// <summary>
/// The dashboard's page load time against queue size: the self-host in process (no processor serves the bench's
/// queues, no timer runs), a small queue of <c>--small</c> ready jobs and a big one of <c>--jobs</c> (enqueued through
/// <see cref="Producer"/> in batches of 1,000), then <c>--requests</c> sequential GETs over loopback HTTP of each page
/// after <c>--warmup</c>: the queue page (first page), its last page of ready jobs, and the overview. Prints one JSON
/// line with p50/p95/max in milliseconds and the HTML size; deletes the queues unless <c>--keep true</c>.
/// </summary>
internal static class DashboardBench
{
    private const string Key = "dashboard-bench-key";

    public static async Task<int> RunAsync(BenchArgs args)
    {
        var redis = args.String("redis", "127.0.0.1:6379");
        var postgres = args.String("postgres", "Host=127.0.0.1;Port=5432;Database=conveyor;Username=conveyor");
        var jobs = args.Int("jobs", 1_000_000);
        var small = args.Int("small", 10);
        var requests = args.Int("requests", 200);
        var warmup = args.Int("warmup", 30);
        var run = Guid.NewGuid().ToString("N")[..8];
        var smallQueue = $"dash-small-{run}";
        var bigQueue = $"dash-big-{run}";

        var app = SelfHost.SelfHost.Build(
            ["--urls", "http://127.0.0.1:0"],
            customize: builder =>
            {
                builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
                {
                    ["Conveyor:Redis:ConnectionString"] = redis,
                    ["Conveyor:Postgres:ConnectionString"] = postgres,
                    ["Conveyor:Api:Keys:0"] = Key,
                    // Serve a queue nobody enqueues to: the bench's queues stay as filled.
                    ["Conveyor:Processor:Queues:0"] = $"dash-idle-{run}",
                    ["AzureWebJobs.Scheduler.Disabled"] = "true",
                    ["AzureWebJobs.Custodian.Disabled"] = "true",
                    ["AzureWebJobs.HeartbeatFlush.Disabled"] = "true",
                    ["AzureWebJobs.StaleSweeper.Disabled"] = "true",
                });
                builder.Logging.SetMinimumLevel(LogLevel.Warning);
            });
        await app.StartAsync();
        var address = new Uri(app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.First());
        var producer = app.Services.GetRequiredService<Producer>();
        var db = (await app.Services.GetRequiredService<Conveyor.Storage.RedisConnection>().GetMultiplexerAsync()).GetDatabase();
        try
        {
            Console.Error.WriteLine($"enqueue {small} jobs into {smallQueue} and {jobs} into {bigQueue}");
            var fill = Stopwatch.StartNew();
            await FillAsync(producer, smallQueue, small);
            await FillAsync(producer, bigQueue, jobs);
            var fillSeconds = fill.Elapsed.TotalSeconds;

            using var handler = new HttpClientHandler { CookieContainer = new CookieContainer(), AllowAutoRedirect = false };
            using var client = new HttpClient(handler) { BaseAddress = address };
            var signIn = await client.PostAsync("/api/dashboard/signin", new FormUrlEncodedContent(new Dictionary<string, string> { ["key"] = Key }));
            if (signIn.StatusCode != HttpStatusCode.Redirect)
            {
                throw new InvalidOperationException($"sign-in answered {signIn.StatusCode}");
            }
            var lastPage = (jobs + 24) / 25;
            var pages = new (string Name, string Path)[]
            {
                ($"queue, {small} ready", $"/api/dashboard/queues/{smallQueue}"),
                ($"queue, {jobs} ready", $"/api/dashboard/queues/{bigQueue}"),
                ($"queue, {jobs} ready, last page", $"/api/dashboard/queues/{bigQueue}?ready={lastPage.ToString(CultureInfo.InvariantCulture)}"),
                ("overview", "/api/dashboard"),
            };
            var results = new Dictionary<string, object>();
            foreach (var (name, path) in pages)
            {
                Console.Error.WriteLine($"GET {path} x {warmup} + {requests}");
                results[name] = await MeasureAsync(client, path, warmup, requests);
            }
            Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["mode"] = "dashboard",
                ["jobs"] = jobs,
                ["small"] = small,
                ["requests"] = requests,
                ["fillSeconds"] = Math.Round(fillSeconds, 1),
                ["pages"] = results,
            }));
            return 0;
        }
        finally
        {
            if (args.String("keep", "false") != "true")
            {
                foreach (var queue in new[] { smallQueue, bigQueue })
                {
                    var keys = new QueueKeys(queue);
                    await db.KeyDeleteAsync([keys.Ready, keys.Jobs, keys.State, keys.Payloads, keys.Registered, keys.Idle, keys.Unserved, keys.Seq]);
                    await db.SetRemoveAsync(QueueKeys.Queues, queue);
                }
            }
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    /// <summary>Enqueues <paramref name="count"/> small jobs, 1,000 per script call, 8 calls in flight.</summary>
    private static async Task FillAsync(Producer producer, string queue, int count)
    {
        var batches = Enumerable.Range(0, (count + 999) / 1000).Select(b => Math.Min(1000, count - b * 1000));
        await Parallel.ForEachAsync(batches, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (size, ct) =>
            await producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, size).Select(_ => new JobRequest("bench", """{"n":1}"""))], ct));
    }

    private static async Task<Dictionary<string, double>> MeasureAsync(HttpClient client, string path, int warmup, int requests)
    {
        var times = new List<double>(requests);
        long bytes = 0;
        for (var i = 0; i < warmup + requests; i++)
        {
            var clock = Stopwatch.StartNew();
            using var response = await client.GetAsync(path);
            var body = await response.Content.ReadAsByteArrayAsync();
            clock.Stop();
            if (response.StatusCode != HttpStatusCode.OK)
            {
                throw new InvalidOperationException($"GET {path} answered {response.StatusCode}");
            }
            if (i >= warmup)
            {
                times.Add(clock.Elapsed.TotalMilliseconds);
                bytes = body.Length;
            }
        }
        times.Sort();
        return new Dictionary<string, double>
        {
            ["p50Ms"] = Math.Round(Latency.Percentile(times, 0.50), 2),
            ["p95Ms"] = Math.Round(Latency.Percentile(times, 0.95), 2),
            ["maxMs"] = Math.Round(times[^1], 2),
            ["htmlBytes"] = bytes,
        };
    }
}
