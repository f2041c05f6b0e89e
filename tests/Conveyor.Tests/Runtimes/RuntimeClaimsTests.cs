using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using Conveyor.Client;
using Conveyor.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Conveyor.Tests.Runtimes;

/// <summary>Remote runtimes on the self-host.</summary>
public sealed class RuntimeClaimsOnSelfHost(ClaimsSelfHostApp app, ITestOutputHelper output) : RuntimeClaimsTests(app, output), IClassFixture<ClaimsSelfHostApp>;

#if !FUNCTIONS_STANDIN
/// <summary>Remote runtimes on the real Functions worker.</summary>
public sealed class RuntimeClaimsOnFunctions(ClaimsFunctionsApp app, ITestOutputHelper output) : RuntimeClaimsTests(app, output), IClassFixture<ClaimsFunctionsApp>;
#endif

/// <summary>Claims that expire on the self-host.</summary>
public sealed class ClaimTimeoutOnSelfHost(ShortClaimsSelfHostApp app) : ClaimTimeoutTests(app), IClassFixture<ShortClaimsSelfHostApp>;

#if !FUNCTIONS_STANDIN
/// <summary>Claims that expire on the real Functions worker.</summary>
public sealed class ClaimTimeoutOnFunctions(ShortClaimsFunctionsApp app) : ClaimTimeoutTests(app), IClassFixture<ShortClaimsFunctionsApp>;
#endif

/// <summary>
/// Remote runtimes over real HTTP on both hosts (a subclass per host above), with the app's own Redis, real PostgreSQL,
/// the presence timers and the custodian running, and the real client. A waiting claim is woken only by the queue's
/// pub/sub signal here (the fallback poll is a minute away).
/// </summary>
public abstract partial class RuntimeClaimsTests(IRuntimeApp app, ITestOutputHelper output)
{
    [Fact]
    public async Task A_claimed_job_that_is_acked_leaves_redis_and_a_second_ack_is_lost()
    {
        var client = app.Client;
        var queue = TestRedis.UniqueQueue("rt");
        var enqueued = await client.EnqueueAsync(queue, NewJob.Of("resize", new { image = 7 }) with { MaxAttempts = 3 });
        var runtime = await app.OnlineRuntimeAsync();

        var claimed = await client.ClaimAsync(runtime, queue, 10, TimeSpan.Zero);

        var job = Assert.Single(claimed.Jobs);
        Assert.Equal((enqueued.Id, "resize", 7, 1, 3), (job.Id, job.Type, job.Payload.GetProperty("image").GetInt32(), job.Attempt, job.MaxAttempts));
        Assert.Equal(TimeSpan.FromMinutes(5), claimed.ClaimTimeout);
        Assert.Equal(JobState.Running, (await client.GetJobAsync(queue, job.Id))!.State);
        var stats = await client.GetQueueAsync(queue);
        Assert.Equal((0, 1, 1), (stats.Ready, stats.Running, stats.Consumers)); // the runtime counts as a consumer while it holds claims

        var acked = await client.AckAsync(runtime, [job.Claim]);

        Assert.Equal(new ClaimResult(job.Claim, ClaimOutcome.Acked), Assert.Single(acked));
        Assert.Null(await client.GetJobAsync(queue, job.Id));
        Assert.Equal(0, await app.Db.HashLengthAsync($"conveyor:{{{queue}}}:payloads"));
        Assert.Equal(0, await app.Db.SortedSetLengthAsync($"conveyor:{{{queue}}}:leases:runtime:{runtime.Id}"));
        Assert.Equal(ClaimOutcome.Lost, Assert.Single(await client.AckAsync(runtime, [job.Claim])).Outcome);
    }

    [Fact]
    public async Task A_failed_job_is_retried_with_its_attempt_counted_then_dead_and_a_fail_without_retry_kills_at_once()
    {
        var client = app.Client;
        var queue = TestRedis.UniqueQueue("rt");
        await client.EnqueueBatchAsync(queue, [
            NewJob.Of("flaky", 1) with { Id = "flaky", MaxAttempts = 2 },
            NewJob.Of("doomed", 2) with { Id = "doomed", MaxAttempts = 5 },
        ]);
        var runtime = await app.OnlineRuntimeAsync();
        var first = (await client.ClaimAsync(runtime, queue, 10, TimeSpan.Zero)).Jobs.ToDictionary(j => j.Id);

        var failed = await client.FailAsync(runtime, [
            new ClaimFailure(first["flaky"].Claim, "boom 1"),
            new ClaimFailure(first["doomed"].Claim, "bad input", Retry: false),
        ]);

        Assert.Equal([ClaimOutcome.Retried, ClaimOutcome.Dead], failed.Select(r => r.Outcome));
        var doomed = (await client.GetJobAsync(queue, "doomed"))!;
        Assert.Equal((JobState.Dead, 1, "bad input"), (doomed.State, doomed.Attempts, doomed.LastError));
        Assert.Equal("doomed", Assert.Single((await client.ListDeadAsync(queue)).Jobs).Id);

        // The scheduler brings the retry back after its backoff (1 ms base here); it runs as attempt 2 of 2.
        var again = Assert.Single((await client.ClaimAsync(runtime, queue, 10, TimeSpan.FromSeconds(30))).Jobs);
        Assert.Equal(("flaky", 2), (again.Id, again.Attempt));
        Assert.True(again.IsLastAttempt);
        Assert.Equal(ClaimOutcome.Dead, Assert.Single(await client.FailAsync(runtime, [new ClaimFailure(again.Claim, "boom 2")])).Outcome);

        var flaky = (await client.GetJobAsync(queue, "flaky"))!;
        Assert.Equal((JobState.Dead, 2, "boom 2"), (flaky.State, flaky.Attempts, flaky.LastError));
    }

    [Fact]
    public async Task The_jobs_of_an_agent_killed_mid_job_run_on_another_agent_after_it_goes_offline_and_its_late_ack_changes_nothing()
    {
        var client = app.Client;
        var queue = TestRedis.UniqueQueue("rt");
        await client.EnqueueBatchAsync(queue, [
            .. Enumerable.Range(0, 3).Select(i => NewJob.Of("work", i) with { Id = $"job-{i}", MaxAttempts = 5 }),
            NewJob.Of("work", 9) with { Id = "last-chance", MaxAttempts = 1 },
        ]);
        var killed = await app.OnlineRuntimeAsync("killed");
        var held = await client.ClaimAsync(killed, queue, 10, TimeSpan.Zero);
        Assert.Equal(4, held.Jobs.Count);
        // Killed: from here on it neither beats nor acks.

        var ran = new ConcurrentQueue<ClaimedJob>();
        using var survivor = new RuntimeAgent(
            client, new RuntimeAgentOptions { Name = "survivor", Queues = [queue], ClaimWait = TimeSpan.FromSeconds(1) },
            (job, _) =>
            {
                ran.Enqueue(job);
                return Task.CompletedTask;
            });
        using var stop = new CancellationTokenSource();
        var running = survivor.RunAsync(stop.Token);
        await Wait.UntilAsync(async () => ran.Count >= 3 && (await client.GetQueueAsync(queue)).Running == 0,
            "the killed agent went offline and its jobs ran on the survivor", seconds: 90);

        Assert.Equal(["job-0", "job-1", "job-2"], ran.Select(j => j.Id).Order());
        Assert.All(ran, job => Assert.Equal(2, job.Attempt)); // the lost run counted
        Assert.Equal("offline", (await client.GetRuntimeAsync(killed.Id))!.Status);
        var lastChance = (await client.GetJobAsync(queue, "last-chance"))!;
        Assert.Equal((JobState.Dead, 1), (lastChance.State, lastChance.Attempts));
        Assert.Contains($"runtime {killed.Id} went offline", lastChance.LastError, StringComparison.Ordinal);

        var late = await client.AckAsync(killed, [.. held.Jobs.Select(j => j.Claim)]);

        Assert.All(late, result => Assert.Equal(ClaimOutcome.Lost, result.Outcome));
        Assert.Equal(JobState.Dead, (await client.GetJobAsync(queue, "last-chance"))!.State);
        Assert.Equal(3, ran.Count);
        await stop.CancelAsync();
        await running;
    }

    [Fact]
    public async Task An_offline_or_deleted_runtime_or_a_wrong_token_claims_nothing()
    {
        var client = app.Client;
        var queue = TestRedis.UniqueQueue("rt");
        await client.EnqueueAsync(queue, NewJob.Of("work", 1) with { Id = "waiting" });
        var neverBeat = await client.RegisterRuntimeAsync("never-beat");
        var deleted = await app.OnlineRuntimeAsync("deleted");
        Assert.True(await client.DeleteRuntimeAsync(deleted.Id));

        var offline = await Assert.ThrowsAsync<ConveyorProblemException>(() => client.ClaimAsync(neverBeat, queue, 1, TimeSpan.FromSeconds(1)));
        var gone = await Assert.ThrowsAsync<ConveyorProblemException>(() => client.ClaimAsync(deleted, queue, 1, TimeSpan.Zero));
        var forged = await Assert.ThrowsAsync<ConveyorProblemException>(() => client.ClaimAsync(neverBeat with { Token = deleted.Token }, queue, 1, TimeSpan.Zero));

        Assert.Equal((HttpStatusCode.Conflict, "urn:conveyor:problem:runtime-offline"), (offline.Status, offline.Type));
        Assert.Equal((HttpStatusCode.NotFound, "urn:conveyor:problem:not-found"), (gone.Status, gone.Type));
        Assert.Equal((HttpStatusCode.Unauthorized, "urn:conveyor:problem:unauthorized"), (forged.Status, forged.Type));
        var stats = await client.GetQueueAsync(queue);
        Assert.Equal((1, 0, 0), (stats.Ready, stats.Running, stats.Consumers));

        await client.BeatAsync(neverBeat); // online now
        Assert.Equal("waiting", Assert.Single((await client.ClaimAsync(neverBeat, queue, 1, TimeSpan.Zero)).Jobs).Id);
    }

    [Fact]
    public async Task Another_runtimes_claim_token_acks_fails_and_extends_nothing()
    {
        var client = app.Client;
        var queue = TestRedis.UniqueQueue("rt");
        await client.EnqueueAsync(queue, NewJob.Of("work", 1) with { Id = "theirs" });
        var owner = await app.OnlineRuntimeAsync("owner");
        var other = await app.OnlineRuntimeAsync("other");
        var claim = Assert.Single((await client.ClaimAsync(owner, queue, 1, TimeSpan.Zero)).Jobs).Claim;

        Assert.Equal(ClaimOutcome.Lost, Assert.Single(await client.AckAsync(other, [claim])).Outcome);
        Assert.Equal(ClaimOutcome.Lost, Assert.Single(await client.FailAsync(other, [new ClaimFailure(claim, "not mine", Retry: false)])).Outcome);
        Assert.Equal(ClaimOutcome.Lost, Assert.Single(await client.ExtendAsync(other, [claim])).Outcome);
        var borrowed = await Assert.ThrowsAsync<ConveyorProblemException>(() => client.AckAsync(other with { Token = owner.Token }, [claim]));
        Assert.Equal(HttpStatusCode.Unauthorized, borrowed.Status);

        var job = (await client.GetJobAsync(queue, "theirs"))!;
        Assert.Equal((JobState.Running, 0, null), (job.State, job.Attempts, job.LastError));
        Assert.Equal(ClaimOutcome.Acked, Assert.Single(await client.AckAsync(owner, [claim])).Outcome);
    }

    [Fact]
    public async Task A_waiting_claim_is_woken_by_the_enqueue_and_an_empty_one_ends_at_its_deadline()
    {
        // The fallback poll is a minute away (RuntimeSettings.PubSubOnly): only the queue's pub/sub signal can answer a 30 s wait sooner.
        var client = app.Client;
        var queue = TestRedis.UniqueQueue("rt");
        var runtime = await app.OnlineRuntimeAsync();

        var clock = Stopwatch.StartNew();
        var empty = await client.ClaimAsync(runtime, queue, 5, TimeSpan.FromSeconds(1));
        Assert.Empty(empty.Jobs);
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(0.95), $"an empty claim answered after {clock.Elapsed}, before its 1 s wait");

        var waiting = client.ClaimAsync(runtime, queue, 5, TimeSpan.FromSeconds(30));
        await Wait.UntilAsync(async () => await app.WaitingClaimsAsync(queue) == 1, "the claim waits on the queue's signal");
        var enqueued = Stopwatch.GetTimestamp();
        await client.EnqueueAsync(queue, NewJob.Of("work", 1) with { Id = "wake-up" });
        var woken = await waiting;
        var latency = Stopwatch.GetElapsedTime(enqueued);

        Assert.Equal("wake-up", Assert.Single(woken.Jobs).Id);
        // The figure itself is the bench's (idle pickup p50/p99); here: woken, far before any poll or the deadline.
        output.WriteLine($"enqueue call → claim answered: {latency.TotalMilliseconds:F1} ms");
        Assert.True(latency < TimeSpan.FromSeconds(10), $"the waiting claim answered {latency} after the enqueue");
        await Wait.UntilAsync(async () => await app.WaitingClaimsAsync(queue) == 0, "the answered claim unsubscribed");
    }

    [Fact]
    public async Task A_waiting_claim_whose_client_goes_away_stops_waiting_and_claims_nothing()
    {
        var client = app.Client;
        var queue = TestRedis.UniqueQueue("rt");
        var runtime = await app.OnlineRuntimeAsync();
        using var goAway = new CancellationTokenSource();
        var waiting = client.ClaimAsync(runtime, queue, 5, TimeSpan.FromSeconds(30), goAway.Token);
        await Wait.UntilAsync(async () => await app.WaitingClaimsAsync(queue) == 1, "the claim waits on the queue's signal");

        await goAway.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
        await Wait.UntilAsync(async () => await app.WaitingClaimsAsync(queue) == 0, "the server saw the client go away and stopped waiting");
        await client.EnqueueAsync(queue, NewJob.Of("work", 1) with { Id = "unclaimed" });
        var stats = await client.GetQueueAsync(queue);
        Assert.Equal((1, 0), (stats.Ready, stats.Running));
        var job = Assert.Single((await client.ClaimAsync(runtime, queue, 5, TimeSpan.Zero)).Jobs);
        Assert.Equal(("unclaimed", 1), (job.Id, job.Attempt));
    }

    [Fact]
    public async Task A_stopping_agent_claims_no_more_and_its_running_job_finishes_and_is_acked()
    {
        var client = app.Client;
        var queue = TestRedis.UniqueQueue("rt");
        await client.EnqueueAsync(queue, NewJob.Of("work", 1) with { Id = "running" });
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var finish = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var runs = new ConcurrentQueue<string>();
        using var agent = new RuntimeAgent(
            client, new RuntimeAgentOptions { Name = "stopping", Queues = [queue], Concurrency = 2, ClaimWait = TimeSpan.FromSeconds(1) },
            async (job, _) =>
            {
                runs.Enqueue(job.Id);
                started.TrySetResult();
                await finish.Task; // ignores cancellation: finishes within the grace period
            });
        using var stop = new CancellationTokenSource();
        var running = agent.RunAsync(stop.Token);
        await started.Task;

        await stop.CancelAsync();
        await Wait.UntilAsync(async () => await app.WaitingClaimsAsync(queue) == 0, "the agent's waiting claim ended");
        await client.EnqueueAsync(queue, NewJob.Of("work", 2) with { Id = "after-stop" });
        finish.SetResult();
        await running;

        Assert.Equal(["running"], runs);
        Assert.Null(await client.GetJobAsync(queue, "running"));
        Assert.Equal(JobState.Ready, (await client.GetJobAsync(queue, "after-stop"))!.State);
    }

    [Fact]
    public async Task An_agent_keeps_its_claims_in_flight_per_queue_and_runs_each_job_once()
    {
        var queue = TestRedis.UniqueQueue("rt");
        var recorder = new RecordingHandler(app.Http);
        using var http = new HttpClient(recorder) { BaseAddress = app.Http.BaseAddress };
        using var client = new ConveyorClient(http);
        var runs = new ConcurrentQueue<string>();
        using var agent = new RuntimeAgent(
            client,
            new RuntimeAgentOptions { Name = "pipelined", Queues = [queue], Concurrency = 6, MaxPerClaim = 2, ClaimsInFlight = 3, ClaimWait = TimeSpan.FromSeconds(30) },
            (job, _) =>
            {
                runs.Enqueue(job.Id);
                return Task.CompletedTask;
            });
        using var stop = new CancellationTokenSource();
        var running = agent.RunAsync(stop.Token);
        await Wait.UntilAsync(() => agent.Credentials is not null, "the agent registered");
        var claims = $"/api/runtimes/{agent.Credentials!.Id}/claims";
        await Wait.UntilAsync(() => recorder.MostInFlight(claims) == 3, "three claims wait on the idle queue at once");

        await client.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 30).Select(i => NewJob.Of("work", i) with { Id = $"job-{i}" })]);
        await Wait.UntilAsync(async () => await client.GetQueueAsync(queue) is { Ready: 0, Running: 0 }, "every job ran and was acked");

        Assert.Equal(Enumerable.Range(0, 30).Select(i => $"job-{i}").Order(), runs.Order());
        Assert.Equal(3, recorder.MostInFlight(claims));
        await stop.CancelAsync();
        await running;
    }
}

/// <summary>Claims that expire (<c>Conveyor:Runtimes:ClaimTimeout</c> 2 s) unless extended, on both hosts.</summary>
public abstract class ClaimTimeoutTests(IRuntimeApp app)
{
    [Fact]
    public async Task A_claim_neither_settled_nor_extended_within_the_claim_timeout_goes_back_while_its_runtime_keeps_beating()
    {
        var client = app.Client;
        var queue = TestRedis.UniqueQueue("rt");
        await client.EnqueueBatchAsync(queue, [NewJob.Of("work", 1) with { Id = "forgotten" }, NewJob.Of("work", 2) with { Id = "extended" }]);
        var runtime = await app.OnlineRuntimeAsync();
        using var stopBeating = new CancellationTokenSource();
        var beating = BeatUntilAsync(client, runtime, stopBeating.Token);
        var claims = (await client.ClaimAsync(runtime, queue, 2, TimeSpan.Zero)).Jobs.ToDictionary(j => j.Id, j => j.Claim);

        await Wait.UntilAsync(async () =>
        {
            var extended = Assert.Single(await client.ExtendAsync(runtime, [claims["extended"]]));
            Assert.Equal(ClaimOutcome.Extended, extended.Outcome);
            return (await client.GetJobAsync(queue, "forgotten"))!.State == JobState.Ready;
        }, "the forgotten claim expired and went back to the queue", seconds: 60);

        var forgotten = (await client.GetJobAsync(queue, "forgotten"))!;
        Assert.Equal(1, forgotten.Attempts);
        Assert.Contains($"the claim of runtime {runtime.Id} expired", forgotten.LastError, StringComparison.Ordinal);
        Assert.Equal(JobState.Running, (await client.GetJobAsync(queue, "extended"))!.State);
        Assert.Equal("online", (await client.GetRuntimeAsync(runtime.Id))!.Status);
        Assert.Equal(ClaimOutcome.Lost, Assert.Single(await client.AckAsync(runtime, [claims["forgotten"]])).Outcome);
        Assert.Equal(ClaimOutcome.Acked, Assert.Single(await client.AckAsync(runtime, [claims["extended"]])).Outcome);
        var again = Assert.Single((await client.ClaimAsync(runtime, queue, 2, TimeSpan.Zero)).Jobs);
        Assert.Equal(("forgotten", 2), (again.Id, again.Attempt));
        await stopBeating.CancelAsync();
        await beating;
    }

    [Fact]
    public async Task An_agent_extends_the_claim_of_a_job_that_runs_past_the_claim_timeout_so_it_runs_once()
    {
        var client = app.Client;
        var queue = TestRedis.UniqueQueue("rt");
        await client.EnqueueAsync(queue, NewJob.Of("slow", 1) with { Id = "slow" });
        var runs = new ConcurrentQueue<ClaimedJob>();
        using var agent = new RuntimeAgent(
            client, new RuntimeAgentOptions { Name = "patient", Queues = [queue], ClaimWait = TimeSpan.FromSeconds(1) },
            async (job, ct) =>
            {
                runs.Enqueue(job);
                await Task.Delay(TimeSpan.FromSeconds(5), ct); // more than two claim timeouts, and custodian passes
            });
        using var stop = new CancellationTokenSource();
        var running = agent.RunAsync(stop.Token);

        await Wait.UntilAsync(async () => await client.GetJobAsync(queue, "slow") is null, "the slow job finished and was acked", seconds: 60);

        Assert.Equal(("slow", 1), (Assert.Single(runs).Id, runs.Single().Attempt));
        await stop.CancelAsync();
        await running;
    }

    private static async Task BeatUntilAsync(ConveyorClient client, RuntimeCredentials runtime, CancellationToken stop)
    {
        try
        {
            while (true)
            {
                await client.BeatAsync(runtime, stop);
                await Task.Delay(200, stop);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
    }
}
