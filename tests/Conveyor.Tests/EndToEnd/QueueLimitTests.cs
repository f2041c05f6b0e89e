using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.EndToEnd;

public sealed class QueueLimitTests
{
    [Fact]
    public async Task A_new_queue_beyond_the_registry_bound_answers_409_and_stores_nothing()
    {
        var queue = TestRedis.UniqueQueue("e2e");
        // The shared test Redis already lists this run's queues; with a bound of 1, any new queue is one too many.
        var db = (await TestRedis.GetAsync()).GetDatabase();
        await db.SetAddAsync("conveyor:queues", "e2e-bound-placeholder");
        await using var server = await SelfHostServer.StartAsync(queue, new() { ["Conveyor:Queue:MaxQueues"] = "1" });

        var response = await server.Client.PostAsync($"/api/queues/{queue}/jobs", SelfHostServer.Json("""{"type":"probe","payload":1}"""));

        Assert.Equal(HttpStatusCode.Conflict, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("urn:conveyor:problem:queue-limit", problem.GetProperty("type").GetString());
        Assert.Contains("Conveyor:Queue:MaxQueues", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.False(await db.KeyExistsAsync($"conveyor:{{{queue}}}:jobs"));
        Assert.False(await db.SetContainsAsync("conveyor:queues", queue));
    }
}
