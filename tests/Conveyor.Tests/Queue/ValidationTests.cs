using Conveyor.Queue;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.Queue;

public sealed class ValidationTests
{
    public static TheoryData<string, JobRequest, string> BadJobs => new()
    {
        { "ok", new JobRequest("bad type!", "{}"), "type" },
        { "ok", new JobRequest("", "{}"), "type" },
        { "ok", new JobRequest(new string('t', 65), "{}"), "type" },
        { "ok", new JobRequest("probe", "{not json"), "payload" },
        { "ok", new JobRequest("probe", ""), "payload" },
        { "ok", new JobRequest("probe", "1 2"), "payload" },
        { "ok", new JobRequest("probe", "\"" + new string('x', 300 * 1024) + "\""), "payload" },
        { "ok", new JobRequest("probe", "{}") { Id = new string('i', 129) }, "id" },
        { "ok", new JobRequest("probe", "{}") { Id = "has space" }, "id" },
        { "ok", new JobRequest("probe", "{}") { Id = "" }, "id" },
        { "ok", new JobRequest("probe", "{}") { MaxAttempts = 0 }, "maxAttempts" },
        { "ok", new JobRequest("probe", "{}") { MaxAttempts = 1001 }, "maxAttempts" },
        { "ok", new JobRequest("probe", "{}") { Delay = TimeSpan.FromSeconds(-1) }, "delay" },
        { "ok", new JobRequest("probe", "{}") { RunAt = DateTimeOffset.UtcNow.AddDays(400) }, "runAt" },
        { "ok", new JobRequest("probe", "{}") { RunAt = DateTimeOffset.UtcNow, Delay = TimeSpan.FromSeconds(1) }, "runAt" },
        { "bad queue!", new JobRequest("probe", "{}"), "queue" },
        { "-starts-with-dash", new JobRequest("probe", "{}"), "queue" },
        { new string('q', 65), new JobRequest("probe", "{}"), "queue" },
    };

    [Theory]
    [MemberData(nameof(BadJobs))]
    public async Task Invalid_input_throws_naming_the_field_and_writes_nothing(string queue, JobRequest job, string field)
    {
        await using var host = await EngineHost.StartAsync();
        var actualQueue = queue == "ok" ? TestRedis.UniqueQueue() : queue;
        var before = await host.Db.ExecuteAsync("DBSIZE");

        var error = await Assert.ThrowsAsync<ConveyorValidationException>(() => host.Producer.EnqueueAsync(actualQueue, job));

        Assert.Equal(field, error.Field);
        if (queue == "ok")
        {
            Assert.False(await host.Db.KeyExistsAsync($"conveyor:{{{actualQueue}}}:jobs"));
            Assert.False(await host.Db.SetContainsAsync("conveyor:queues", actualQueue));
        }
    }

    [Fact]
    public async Task One_bad_job_rejects_the_whole_batch_naming_its_index()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        JobRequest[] jobs = [new("probe", "{}"), new("probe", "{}"), new("probe", "nope")];

        var error = await Assert.ThrowsAsync<ConveyorValidationException>(() => host.Producer.EnqueueBatchAsync(queue, jobs));

        Assert.Equal("jobs[2].payload", error.Field);
        Assert.False(await host.Db.KeyExistsAsync($"conveyor:{{{queue}}}:jobs"));
    }

    [Fact]
    public async Task A_batch_over_a_thousand_jobs_or_with_a_repeated_id_is_rejected()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        var tooMany = Enumerable.Range(0, 1001).Select(_ => new JobRequest("probe", "{}")).ToList();
        Assert.Equal("jobs", (await Assert.ThrowsAsync<ConveyorValidationException>(() => host.Producer.EnqueueBatchAsync(queue, tooMany))).Field);
        JobRequest[] repeated = [new("probe", "{}") { Id = "x" }, new("probe", "{}") { Id = "x" }];
        Assert.Equal("jobs[1].id", (await Assert.ThrowsAsync<ConveyorValidationException>(() => host.Producer.EnqueueBatchAsync(queue, repeated))).Field);
        Assert.False(await host.Db.KeyExistsAsync($"conveyor:{{{queue}}}:jobs"));
    }
}
