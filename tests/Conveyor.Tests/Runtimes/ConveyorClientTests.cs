using System.Net;
using System.Text.Json;
using Conveyor.Client;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.Runtimes;

/// <summary>The client library on the self-app.</summary>
public sealed class ConveyorClientOnSelfHost(ClaimsSelfHostApp app) : ConveyorClientTests(app), IClassFixture<ClaimsSelfHostApp>;

#if !FUNCTIONS_STANDIN
/// <summary>The client library on the real Functions worker.</summary>
public sealed class ConveyorClientOnFunctions(ClaimsFunctionsApp app) : ConveyorClientTests(app), IClassFixture<ClaimsFunctionsApp>;
#endif

/// <summary>The client's retries when Redis times out, on the self-app.</summary>
public sealed class ClientRedisTimeoutsOnSelfHost(RedisTimeoutsSelfHostApp app) : ClientRedisTimeoutTests(app), IClassFixture<RedisTimeoutsSelfHostApp>;

#if !FUNCTIONS_STANDIN
/// <summary>The client's retries when Redis times out, on the real Functions worker.</summary>
public sealed class ClientRedisTimeoutsOnFunctions(RedisTimeoutsFunctionsApp app) : ClientRedisTimeoutTests(app), IClassFixture<RedisTimeoutsFunctionsApp>;
#endif

/// <summary>The client's retries when PostgreSQL is away, on the self-app.</summary>
public sealed class ClientPostgresDownOnSelfHost(PostgresDownSelfHostApp app) : ClientPostgresDownTests(app), IClassFixture<PostgresDownSelfHostApp>;

#if !FUNCTIONS_STANDIN
/// <summary>The client's retries when PostgreSQL is away, on the real Functions worker.</summary>
public sealed class ClientPostgresDownOnFunctions(PostgresDownFunctionsApp app) : ClientPostgresDownTests(app), IClassFixture<PostgresDownFunctionsApp>;
#endif

/// <summary>The client library against both hosts: typed results and problems as exceptions.</summary>
public abstract class ConveyorClientTests(IRuntimeApp app)
{
    [Fact]
    public async Task The_client_enqueues_looks_up_and_manages_dead_jobs_with_typed_results()
    {
        var client = app.Client;
        var queue = TestRedis.UniqueQueue("client");

        var now = await client.EnqueueAsync(queue, NewJob.Of("work", new { n = 1 }) with { MaxAttempts = 4 });
        var delayed = await client.EnqueueAsync(queue, NewJob.Of("work", 2) with { Id = "delayed", Delay = TimeSpan.FromHours(1) });
        var dated = await client.EnqueueAsync(queue, NewJob.Of("work", 3) with { Id = "dated", RunAt = DateTimeOffset.UtcNow.AddDays(1) });
        var batch = await client.EnqueueBatchAsync(queue, [NewJob.Of("work", 4) with { Id = "b1" }, NewJob.Of("work", 5) with { Id = "delayed" }]);

        Assert.True(Guid.TryParse(now.Id, out var generated) && generated.Version == 7, $"a UUIDv7 id, got {now.Id}");
        Assert.Equal(new EnqueueResult(now.Id, JobState.Ready, false), now);
        Assert.Equal((JobState.Scheduled, JobState.Scheduled), (delayed.State, dated.State));
        Assert.Equal([new EnqueueResult("b1", JobState.Ready, false), new EnqueueResult("delayed", JobState.Scheduled, true)], batch);
        var job = (await client.GetJobAsync(queue, now.Id))!;
        Assert.Equal((queue, "work", 1, 4, 0), (job.Queue, job.Type, job.Payload.GetProperty("n").GetInt32(), job.MaxAttempts, job.Attempts));
        Assert.Null(await client.GetJobAsync(queue, "no-such-job"));
        var stats = await client.GetQueueAsync(queue);
        Assert.Equal((2L, 2L, 0L), (stats.Ready, stats.Scheduled, stats.Dead));
        Assert.Contains(await client.ListQueuesAsync(), q => q.Queue == queue);

        var runtime = await app.OnlineRuntimeAsync();
        var claimed = await client.ClaimAsync(runtime, queue, 2, TimeSpan.Zero);
        await client.FailAsync(runtime, [.. claimed.Jobs.Select(j => new ClaimFailure(j.Claim, "no", Retry: false))]);
        var dead = await client.ListDeadAsync(queue, page: 1, pageSize: 10);
        Assert.Equal(2, dead.Jobs.Count);
        Assert.All(dead.Jobs, j => Assert.Equal((JobState.Dead, "no"), (j.State, j.LastError)));
        Assert.True(await client.RequeueDeadAsync(queue, "b1"));
        Assert.False(await client.RequeueDeadAsync(queue, "b1"));
        Assert.True(await client.DeleteDeadAsync(queue, now.Id));
        Assert.False(await client.DeleteDeadAsync(queue, now.Id));
        Assert.Equal(0, await client.RequeueAllDeadAsync(queue));
        Assert.Equal(JobState.Ready, (await client.GetJobAsync(queue, "b1"))!.State);
        // Four jobs enqueued (the duplicate id not counted), two attempts failed, none acked, in the last hour.
        var history = await client.GetHistoryAsync(queue);
        Assert.Equal((queue, 60, 60, 60), (history.Queue, history.Enqueued.Count, history.Processed.Count, history.Failed.Count));
        Assert.Equal((4L, 0L, 2L), (history.TotalEnqueued, history.TotalProcessed, history.TotalFailed));
        Assert.Equal(history.TotalEnqueued, history.Enqueued.Sum());

        var invalid = await Assert.ThrowsAsync<ConveyorProblemException>(() => client.EnqueueAsync(queue, NewJob.Of("bad type!", 1)));
        Assert.Equal((HttpStatusCode.BadRequest, "urn:conveyor:problem:validation", "type"), (invalid.Status, invalid.Type, invalid.Field));
        Assert.Contains("type", invalid.Detail, StringComparison.Ordinal);
    }
}

/// <summary>The client against an app whose Redis calls time out after 300 ms: which calls it retries.</summary>
public abstract class ClientRedisTimeoutTests(IRuntimeApp app)
{
    [Fact]
    public async Task An_enqueue_answered_503_is_retried_with_the_same_id_and_a_claim_is_not_retried()
    {
        var queue = TestRedis.UniqueQueue("retry");
        var runtime = await app.OnlineRuntimeAsync();
        var recorder = new RecordingHandler(app.Http);
        using var http = new HttpClient(recorder) { BaseAddress = app.Http.BaseAddress };
        using var client = new ConveyorClient(http, new ConveyorClientOptions { MaxRetries = 1, RetryDelay = TimeSpan.FromMilliseconds(10) });

        // Each try times out on the server within about a second (StackExchange.Redis checks timeouts once a second).
        await app.PauseRedisAsync(6000);
        var claiming = Assert.ThrowsAsync<ConveyorProblemException>(() => client.ClaimAsync(runtime, queue, 1, TimeSpan.Zero));
        var enqueueing = Assert.ThrowsAsync<ConveyorProblemException>(() => client.EnqueueAsync(queue, NewJob.Of("work", 1)));
        var claim = await claiming;
        var enqueue = await enqueueing;

        Assert.Equal((HttpStatusCode.ServiceUnavailable, "urn:conveyor:problem:unavailable"), (claim.Status, claim.Type));
        Assert.Single(recorder.Sent, r => r.Path.EndsWith("/claims", StringComparison.Ordinal));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, enqueue.Status);
        var id = Assert.Single(enqueue.Ids!);
        var tries = recorder.Sent.Where(r => r.Path.EndsWith("/jobs", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, tries.Count);
        Assert.All(tries, t => Assert.Equal((HttpStatusCode.ServiceUnavailable, id), (t.Status, JsonDocument.Parse(t.Body).RootElement.GetProperty("id").GetString())));

        // Whatever of the three Redis ran once the pause ended, the id makes it one job; enqueueing it again adds nothing.
        await Wait.UntilAsync(async () =>
        {
            try
            {
                return await client.GetQueueAsync(queue) is not null;
            }
            catch (ConveyorProblemException)
            {
                return false;
            }
        }, "Redis answers again");
        await client.EnqueueAsync(queue, NewJob.Of("work", 1) with { Id = id });
        var stats = await client.GetQueueAsync(queue);
        Assert.Equal(1, stats.Ready + stats.Running);
    }
}

/// <summary>The client against an app whose PostgreSQL does not answer: which calls it retries.</summary>
public abstract class ClientPostgresDownTests(IRuntimeApp app)
{
    [Fact]
    public async Task Calls_answered_503_by_postgres_are_retried_only_when_idempotent()
    {
        var recorder = new RecordingHandler(app.Http);
        using var http = new HttpClient(recorder) { BaseAddress = app.Http.BaseAddress };
        using var client = new ConveyorClient(http, new ConveyorClientOptions { MaxRetries = 2, RetryDelay = TimeSpan.FromMilliseconds(10) });
        var someone = new RuntimeCredentials(Guid.NewGuid(), "token");

        var register = await Assert.ThrowsAsync<ConveyorProblemException>(() => client.RegisterRuntimeAsync("agent"));
        var lookup = await Assert.ThrowsAsync<ConveyorProblemException>(() => client.GetRuntimeAsync(someone.Id));
        var beat = await Assert.ThrowsAsync<ConveyorProblemException>(() => client.BeatAsync(someone));
        var claim = await Assert.ThrowsAsync<ConveyorProblemException>(() => client.ClaimAsync(someone, "q", 1, TimeSpan.Zero));

        Assert.All([register, lookup, beat, claim], e => Assert.Equal(HttpStatusCode.ServiceUnavailable, e.Status));
        Assert.Equal(1, recorder.Count(HttpMethod.Post, "/api/runtimes"));
        Assert.Equal(3, recorder.Count(HttpMethod.Get, $"/api/runtimes/{someone.Id}"));
        Assert.Equal(3, recorder.Count(HttpMethod.Post, $"/api/runtimes/{someone.Id}/heartbeat"));
        Assert.Equal(1, recorder.Count(HttpMethod.Post, $"/api/runtimes/{someone.Id}/claims"));
    }
}
