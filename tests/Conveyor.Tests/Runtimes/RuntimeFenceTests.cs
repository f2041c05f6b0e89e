using Conveyor.Presence;
using Conveyor.Queue;
using Conveyor.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Conveyor.Tests.Runtimes;

/// <summary>
/// The engine's side of runtime claims, without HTTP. The custodian checks presence ({presence} slot, PostgreSQL) and
/// gives claims back ({q} slot) in separate steps; these tests hold a pass between the two and change the runtime's
/// presence there. And settling many claims at once makes script calls bounded as a processor's are.
/// </summary>
public sealed class RuntimeFenceTests
{
    [Fact]
    public async Task A_runtime_back_online_between_the_presence_check_and_the_release_keeps_the_claims_it_made_since()
    {
        await using var engine = await RuntimeEngine.StartAsync();
        var queue = TestRedis.UniqueQueue("fence");
        var runtime = await engine.OnlineRuntimeAsync();
        await engine.Host.Producer.EnqueueAsync(queue, new JobRequest("work", "1") { Id = "old" });
        var old = Assert.Single(await engine.Claims.ClaimAsync(runtime.Id.ToString(), runtime.Token, queue, 10, TimeSpan.Zero));
        await engine.MarkOfflineAsync(runtime.Id); // what the stale sweeper does
        var checkedPresence = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var resume = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        engine.Host.Custodian.BeforeStep = async step =>
        {
            if (step == CustodianStep.ReleaseOffline)
            {
                checkedPresence.TrySetResult();
                await resume.Task;
            }
        };
        var pass = engine.Host.Custodian.RunOnceAsync(CancellationToken.None);
        await checkedPresence.Task.WaitAsync(TimeSpan.FromSeconds(30));

        // Between the check (offline) and the release: it beats, comes back online, claims again.
        Assert.True((await engine.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token)).FlippedOnline);
        await engine.Host.Producer.EnqueueAsync(queue, new JobRequest("work", "2") { Id = "new" });
        var fresh = Assert.Single(await engine.Claims.ClaimAsync(runtime.Id.ToString(), runtime.Token, queue, 10, TimeSpan.Zero));
        resume.SetResult();
        var result = await pass;

        Assert.Equal((1, 1L), (result.OfflineRuntimes, result.Requeued));
        var given = (await engine.Host.Admin.GetJobAsync(queue, "old"))!;
        Assert.Equal((JobState.Ready, 1), (given.State, given.Attempts));
        Assert.Equal($"runtime {runtime.Id} went offline while it held this job", given.LastError);
        Assert.Equal(JobState.Running, (await engine.Host.Admin.GetJobAsync(queue, "new"))!.State);
        var acks = await engine.Claims.AckAsync(runtime.Id.ToString(), runtime.Token, [old.Claim, fresh.Claim]);
        Assert.Equal([ClaimOutcome.Lost, ClaimOutcome.Acked], acks.Select(a => a.Outcome));

        engine.Host.Custodian.BeforeStep = null;
        Assert.Equal(0, (await engine.Host.Custodian.RunOnceAsync(CancellationToken.None)).OfflineRuntimes);
    }

    [Fact]
    public async Task The_claims_of_a_deleted_runtime_go_back_at_the_next_pass_and_its_consumer_leaves_the_queue()
    {
        await using var engine = await RuntimeEngine.StartAsync();
        var queue = TestRedis.UniqueQueue("deleted");
        var runtime = await engine.OnlineRuntimeAsync();
        await engine.Host.Producer.EnqueueBatchAsync(queue, [new JobRequest("work", "1") { Id = "a" }, new JobRequest("work", "2") { Id = "b", MaxAttempts = 1 }]);
        Assert.Equal(2, (await engine.Claims.ClaimAsync(runtime.Id.ToString(), runtime.Token, queue, 10, TimeSpan.Zero)).Count);

        Assert.True(await engine.Registry.DeleteAsync(runtime.Id.ToString()));
        var result = await engine.Host.Custodian.RunOnceAsync(CancellationToken.None);

        Assert.Equal((1, 1L, 1L), (result.OfflineRuntimes, result.Requeued, result.Killed));
        var a = (await engine.Host.Admin.GetJobAsync(queue, "a"))!;
        var b = (await engine.Host.Admin.GetJobAsync(queue, "b"))!;
        Assert.Equal((JobState.Ready, 1, JobState.Dead), (a.State, a.Attempts, b.State));
        Assert.Equal($"runtime {runtime.Id} was deleted while it held this job", b.LastError);
        var stats = await engine.Host.Admin.GetStatsAsync(queue);
        Assert.Equal((0L, 0L), (stats.Running, stats.Consumers));
    }

    [Fact]
    public async Task Acks_and_fails_of_many_claims_are_cut_into_script_calls_by_the_bytes_they_free_or_pass()
    {
        await using var engine = await RuntimeEngine.StartAsync();
        var queue = TestRedis.UniqueQueue("bounds");
        var runtime = await engine.OnlineRuntimeAsync();
        var large = "\"" + new string('x', 200_000) + "\"";
        await engine.Host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 3).Select(i => new JobRequest("work", large) { Id = $"large-{i}" })]);
        await engine.Host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 100).Select(i => new JobRequest("work", "1") { Id = $"small-{i}" })]);
        var claimed = await engine.Claims.ClaimAsync(runtime.Id.ToString(), runtime.Token, queue, 1000, TimeSpan.Zero);
        Assert.Equal(103, claimed.Count);
        var (largeClaims, smallClaims) = (claimed.Take(3).Select(j => j.Claim).ToList(), claimed.Skip(3).Select(j => j.Claim).ToList());

        var scripts = await engine.ScriptCallsAsync();
        var acked = await engine.Claims.AckAsync(runtime.Id.ToString(), runtime.Token, [.. largeClaims]);
        var ackCalls = await engine.ScriptCallsAsync() - scripts;
        var failed = await engine.Claims.FailAsync(
            runtime.Id.ToString(), runtime.Token, [.. smallClaims.Select(c => new ClaimFailure(c, new string('e', RuntimeClaims.MaxErrorLength)))]);
        var failCalls = await engine.ScriptCallsAsync() - scripts - ackCalls;

        // 200 kB freed per ack: one per call within 256 KiB. 4 KiB of error text per failure: 64 per call, after one
        // read of the jobs' states (peek.lua).
        Assert.Equal((3L, 3L), (ackCalls, failCalls));
        Assert.All(acked, r => Assert.Equal(ClaimOutcome.Acked, r.Outcome));
        Assert.All(failed, r => Assert.Equal(ClaimOutcome.Retried, r.Outcome));
        Assert.Equal(largeClaims.Concat(smallClaims), acked.Concat(failed).Select(r => r.Claim));
        var stats = await engine.Host.Admin.GetStatsAsync(queue);
        Assert.Equal((0L, 100L), (stats.Running, stats.Scheduled));
        Assert.Equal(new string('e', RuntimeClaims.MaxErrorLength), (await engine.Host.Admin.GetJobAsync(queue, "small-99"))!.LastError);
    }

    [Fact]
    public async Task Runtime_options_out_of_bounds_stop_the_host_at_start_up()
    {
        foreach (var (key, value) in new[]
        {
            ("Conveyor:Runtimes:ClaimTimeout", "00:00:00"),
            ("Conveyor:Runtimes:ClaimTimeout", "2.00:00:00"),
            ("Conveyor:Runtimes:MaxClaimWait", "00:03:21"), // past 200 s: Azure Functions cuts requests at 230 s
            ("Conveyor:Runtimes:IdlePollInterval", "00:00:00.001"),
        })
        {
            await using var host = await EngineHost.StartAsync(new() { [key] = value });
            var error = Assert.Throws<OptionsValidationException>(() => host.Services.GetRequiredService<IOptions<RuntimeOptions>>().Value);
            Assert.Contains(key.Split(':')[^1], error.Message, StringComparison.Ordinal);
        }
        await using var defaults = await EngineHost.StartAsync();
        var options = defaults.Services.GetRequiredService<IOptions<RuntimeOptions>>().Value;
        Assert.Equal((TimeSpan.FromMinutes(5), TimeSpan.FromSeconds(60), TimeSpan.FromSeconds(1)), (options.ClaimTimeout, options.MaxClaimWait, options.IdlePollInterval));
    }
}

/// <summary>The engine on a Redis and a PostgreSQL database of its own (a custodian releases runtime claims it cannot find in its database).</summary>
internal sealed class RuntimeEngine : IAsyncDisposable
{
    private readonly DedicatedRedis _redis;
    private readonly TestDatabase _database;

    private RuntimeEngine(DedicatedRedis redis, TestDatabase database, EngineHost host)
    {
        _redis = redis;
        _database = database;
        Host = host;
    }

    public EngineHost Host { get; }
    public RuntimeClaims Claims => Host.Services.GetRequiredService<RuntimeClaims>();
    public RuntimeRegistry Registry => Host.Services.GetRequiredService<RuntimeRegistry>();
    public HeartbeatService Heartbeats => Host.Services.GetRequiredService<HeartbeatService>();

    public static async Task<RuntimeEngine> StartAsync()
    {
        var redis = await TestRedis.StartDedicatedAsync();
        var database = await TestPostgres.CreateDatabaseAsync();
        var host = await EngineHost.StartOnAsync(redis.Endpoint, new() { ["Conveyor:Postgres:ConnectionString"] = database.ConnectionString }, timeoutMs: 5000);
        return new RuntimeEngine(redis, database, host);
    }

    public async Task<RegisteredRuntime> OnlineRuntimeAsync()
    {
        var runtime = await Registry.RegisterAsync("runtime");
        Assert.True((await Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token)).FlippedOnline);
        return runtime;
    }

    /// <summary>Script calls (EVAL and EVALSHA) the engine's Redis has run so far.</summary>
    public async Task<long> ScriptCallsAsync()
    {
        await using var admin = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(_redis.Endpoint + ",allowAdmin=true");
        var info = (string?)await admin.GetDatabase().ExecuteAsync("INFO", "commandstats") ?? "";
        return info.Split('\n')
            .Where(l => l.StartsWith("cmdstat_eval:", StringComparison.Ordinal) || l.StartsWith("cmdstat_evalsha:", StringComparison.Ordinal))
            .Sum(l => long.Parse(l.Split("calls=")[1].Split(',')[0], System.Globalization.CultureInfo.InvariantCulture));
    }

    /// <summary>What a sweep does to a stale runtime: out of the online set, then offline in PostgreSQL.</summary>
    public async Task MarkOfflineAsync(Guid id)
    {
        await Host.Db.HashDeleteAsync(PresenceKeys.Online, id.ToString());
        await _database.ExecuteAsync("UPDATE runtimes SET status = 'offline' WHERE id = $1", id);
    }

    public async ValueTask DisposeAsync()
    {
        await Host.DisposeAsync();
        await _database.DisposeAsync();
        _redis.Dispose();
    }
}
