using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Conveyor.Testing;
using Conveyor.Tests.Infrastructure;
using StackExchange.Redis;

namespace Conveyor.Tests.EndToEnd;

/// <summary>Enqueues under Redis faults on the self-host.</summary>
public sealed class EnqueueFaultsOnSelfHost() : EnqueueFaultTests(settings => new SelfHostApp { Settings = settings });

#if !FUNCTIONS_STANDIN
/// <summary>Enqueues under Redis faults on the real Functions worker.</summary>
public sealed class EnqueueFaultsOnFunctions() : EnqueueFaultTests(settings => new FunctionsWorkerApp { Settings = settings });
#endif

/// <summary>
/// An enqueue whose Redis call times out may still have been stored: the 503 carries the ids the server assigned,
/// so a retry with them cannot duplicate the jobs. On both hosts (a subclass per host above), each test with an app
/// of its own on a redis-server of its own: behind a proxy that holds its replies, or stopped.
/// </summary>
public abstract class EnqueueFaultTests(Func<Dictionary<string, string?>, ConveyorApp> newApp)
{
    private Task<ConveyorApp> StartAsync(string redis) =>
        ConveyorApp.StartAsync(newApp(new()
        {
            // Short timeouts, so the enqueue gives up quickly while its script has reached Redis.
            ["Conveyor:Redis:ConnectionString"] = $"{redis},asyncTimeout=500,syncTimeout=500,connectTimeout=1000",
        }));

    private static async Task<long> ScheduledAsync(ConnectionMultiplexer admin, string queue) =>
        await admin.GetDatabase().SortedSetLengthAsync($"conveyor:{{{queue}}}:scheduled");

    private static List<string> Ids(JsonElement problem) =>
        [.. problem.GetProperty("ids").EnumerateArray().Select(i => i.GetString()!)];

    [Fact]
    public async Task An_enqueue_that_times_out_answers_503_with_the_ids_and_a_retry_with_them_adds_nothing()
    {
        using var redis = await TestRedis.StartDedicatedAsync();
        await using var admin = await ConnectionMultiplexer.ConnectAsync(redis.Endpoint);
        // The app reaches Redis through a proxy that can hold Redis' replies: the scripts run, their answers never come.
        await using var proxy = FaultProxy.To(redis.Endpoint);
        await using var server = await StartAsync(proxy.Endpoint);
        var queue = TestRedis.UniqueQueue("slow");
        // A first request warms the app up; on a loaded machine it can outlast the 500 ms timeout itself, so it is sent
        // again (same id: idempotent) until it is answered.
        HttpResponseMessage warmUp;
        var tries = 0;
        do
        {
            warmUp = await server.Client.PostAsync($"/api/queues/{queue}/jobs", ConveyorApp.Json("""{"type":"probe","payload":0,"delaySeconds":3600,"id":"warm-up"}"""));
        }
        while (warmUp.StatusCode == HttpStatusCode.ServiceUnavailable && ++tries < 10);
        Assert.True(warmUp.IsSuccessStatusCode, $"the warm-up enqueue answered {warmUp.StatusCode}");

        proxy.HoldReplies();
        var singleTask = server.Client.PostAsync($"/api/queues/{queue}/jobs", ConveyorApp.Json("""{"type":"probe","payload":1,"delaySeconds":3600}"""));
        var batchTask = server.Client.PostAsync($"/api/queues/{queue}/jobs/batch", ConveyorApp.Json(
            """{"jobs":[{"type":"probe","payload":2,"delaySeconds":3600},{"type":"probe","payload":3,"delaySeconds":3600,"id":"mine-3"},{"type":"probe","payload":4,"delaySeconds":3600}]}"""));
        var single = await singleTask;
        var batch = await batchTask;

        var singleIds = Ids(await BadInputTests.AssertProblemAsync(single, HttpStatusCode.ServiceUnavailable, "unavailable", "single"));
        var batchIds = Ids(await BadInputTests.AssertProblemAsync(batch, HttpStatusCode.ServiceUnavailable, "unavailable", "batch"));
        Assert.Single(singleIds);
        Assert.Equal(3, batchIds.Count);
        Assert.Equal("mine-3", batchIds[1]);
        Assert.Equal(4, singleIds.Concat(batchIds).Distinct().Count());

        // Redis ran the scripts whose replies were held: the 503 was right to say "may have been stored".
        await Wait.UntilAsync(async () => await ScheduledAsync(admin, queue) == 5, "the enqueues whose replies were held are stored");
        proxy.Resume();

        var singleRetry = await server.Client.PostAsync($"/api/queues/{queue}/jobs",
            ConveyorApp.Json($$"""{"type":"probe","payload":1,"delaySeconds":3600,"id":"{{singleIds[0]}}"}"""));
        var batchRetry = await server.Client.PostAsync($"/api/queues/{queue}/jobs/batch", ConveyorApp.Json($$"""
            {"jobs":[{"type":"probe","payload":2,"delaySeconds":3600,"id":"{{batchIds[0]}}"},
                     {"type":"probe","payload":3,"delaySeconds":3600,"id":"{{batchIds[1]}}"},
                     {"type":"probe","payload":4,"delaySeconds":3600,"id":"{{batchIds[2]}}"}]}
            """));

        Assert.Equal(HttpStatusCode.OK, singleRetry.StatusCode);
        Assert.True((await singleRetry.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("duplicate").GetBoolean());
        Assert.Equal(HttpStatusCode.OK, batchRetry.StatusCode);
        var results = (await batchRetry.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("results").EnumerateArray().ToList();
        Assert.All(results, r => Assert.True(r.GetProperty("duplicate").GetBoolean()));
        Assert.Equal(batchIds, results.Select(r => r.GetProperty("id").GetString()!));
        Assert.Equal(5, await ScheduledAsync(admin, queue));
        var stored = await server.Client.GetFromJsonAsync<JsonElement>($"/api/queues/{queue}/jobs/{batchIds[2]}");
        Assert.Equal(4, stored.GetProperty("payload").GetInt32());
    }

    [Fact]
    public async Task An_enqueue_while_Redis_is_gone_answers_503_with_the_ids()
    {
        var redis = await TestRedis.StartDedicatedAsync();
        await using var server = await StartAsync(redis.Endpoint);
        var queue = TestRedis.UniqueQueue("gone");
        Assert.Equal(HttpStatusCode.Accepted, (await server.Client.PostAsync($"/api/queues/{queue}/jobs", ConveyorApp.Json("""{"type":"probe","payload":0,"delaySeconds":3600}"""))).StatusCode);

        redis.Dispose();
        var response = await server.Client.PostAsync($"/api/queues/{queue}/jobs", ConveyorApp.Json("""{"type":"probe","payload":1,"id":"order-42"}"""));

        var problem = await BadInputTests.AssertProblemAsync(response, HttpStatusCode.ServiceUnavailable, "unavailable", "Redis stopped");
        Assert.Equal(["order-42"], Ids(problem));
    }
}
