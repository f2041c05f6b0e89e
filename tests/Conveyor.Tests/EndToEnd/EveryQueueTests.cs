using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.EndToEnd;

/// <summary>The self-host serving every known queue (<c>Conveyor:Processor:Queues</c> = <c>*</c>, the default).</summary>
public sealed class EveryQueueTests
{
    [Fact]
    public async Task The_self_host_serving_every_queue_runs_a_job_enqueued_to_a_queue_nobody_named()
    {
        // Its own Redis: a processor serving every queue would otherwise take the other tests' jobs.
        using var redis = await TestRedis.StartDedicatedAsync();
        await using var server = await SelfHostServer.StartAsync(TestRedis.UniqueQueue("named"), new()
        {
            ["Conveyor:Redis:ConnectionString"] = redis.Endpoint,
            ["Conveyor:Processor:Queues:0"] = "*",
        });
        var queue = TestRedis.UniqueQueue("xq");

        var response = await server.Client.PostAsync($"/api/queues/{queue}/jobs", SelfHostServer.Json("""{"type":"probe","payload":1}"""));
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var id = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;

        await Wait.UntilAsync(() => server.Probe.RunsOf(id) == 1, $"the job on the new queue {queue} ran");
        await Wait.UntilAsync(async () => (await server.Client.GetAsync($"/api/queues/{queue}/jobs/{id}")).StatusCode == HttpStatusCode.NotFound, "the job was acked");
    }
}
