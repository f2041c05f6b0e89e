using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.EndToEnd;

/// <summary>The queue registry's bound on the self-host.</summary>
public sealed class QueueLimitOnSelfHost(QueueLimitTests.SelfHost app) : QueueLimitTests(app), IClassFixture<QueueLimitTests.SelfHost>;

#if !FUNCTIONS_STANDIN
/// <summary>The queue registry's bound on the real Functions worker.</summary>
public sealed class QueueLimitOnFunctions(QueueLimitTests.Functions app) : QueueLimitTests(app), IClassFixture<QueueLimitTests.Functions>;
#endif

/// <summary>A new queue beyond <c>Conveyor:Queue:MaxQueues</c>, on both hosts (a subclass per host above).</summary>
public abstract class QueueLimitTests(ConveyorApp app)
{
    /// <summary>A bound of 1: the shared test Redis already lists this run's queues, so any new queue is one too many.</summary>
    private static readonly Dictionary<string, string?> OneQueue = new() { ["Conveyor:Queue:MaxQueues"] = "1" };

    public sealed class SelfHost : SelfHostApp
    {
        public SelfHost() => Settings = OneQueue;
    }

    public sealed class Functions : FunctionsWorkerApp
    {
        public Functions() => Settings = OneQueue;
    }

    [Fact]
    public async Task A_new_queue_beyond_the_registry_bound_answers_409_and_stores_nothing()
    {
        var queue = TestRedis.UniqueQueue("e2e");
        var db = (await TestRedis.GetAsync()).GetDatabase();
        await db.SetAddAsync("conveyor:queues", "e2e-bound-placeholder"); // so the bound is reached even when run alone

        var response = await app.Client.PostAsync($"/api/queues/{queue}/jobs", ConveyorApp.Json("""{"type":"probe","payload":1}"""));

        Assert.Equal(HttpStatusCode.Conflict, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("urn:conveyor:problem:queue-limit", problem.GetProperty("type").GetString());
        Assert.Contains("Conveyor:Queue:MaxQueues", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.False(await db.KeyExistsAsync($"conveyor:{{{queue}}}:jobs"));
        Assert.False(await db.SetContainsAsync("conveyor:queues", queue));
    }
}
