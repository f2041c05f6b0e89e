using System.Collections.Concurrent;
using Conveyor.Queue;
using Conveyor.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using StackExchange.Redis;

namespace Conveyor.Tests.Queue;

/// <summary>
/// Runs every transition against a real Redis Cluster node, which refuses a script whose keys span
/// hash slots (CROSSSLOT) or that touches an undeclared key in another slot, and checks every call's KEYS.
/// </summary>
public sealed class ClusterTests
{
    private static readonly ConcurrentQueue<(RedisScript Script, RedisKey[] Keys)> Calls = new();

    static ClusterTests() => RedisScript.KeysObserver = (script, keys) => Calls.Enqueue((script, keys));

    [Fact]
    public async Task Every_script_runs_on_a_redis_cluster_with_all_its_keys_in_one_hash_slot()
    {
        await using var host = await EngineHost.StartAsync(cluster: true, wake: new RecordingWakeSender());
        var queue = TestRedis.UniqueQueue("cluster");
        host.Probe.Behavior = (job, _) => job.Payload == "\"fail\"" ? throw new InvalidOperationException("no") : Task.CompletedTask;

        // enqueue, beat, claim, ack, retry, kill, deregister
        var ok = await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "1"));
        var retried = await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "\"fail\"") { MaxAttempts = 2 });
        var killed = await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "\"fail\"") { MaxAttempts = 1 });
        var delayed = await host.Producer.EnqueueAsync(queue, new JobRequest("probe", "2") { Delay = TimeSpan.FromMilliseconds(1) });
        // wake
        await host.Services.GetRequiredService<WakeGate>().WakeAsync(queue, CancellationToken.None);
        await using (var session = RunningSession.Start(host, queue))
        {
            await Wait.UntilAsync(async () => (await host.Admin.GetJobAsync(queue, killed.Id))?.State == JobState.Dead
                && (await host.Admin.GetJobAsync(queue, retried.Id))?.Attempts == 1
                && await host.Admin.GetJobAsync(queue, ok.Id) is null, "ack, retry and kill happened");
        }
        // promote
        await Task.Delay(5);
        await host.Scheduler.RunOnceAsync(CancellationToken.None);
        // return unstarted: a session whose handler blocks, with prefetch beyond it
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        host.Probe.Behavior = (_, _) => gate.Task;
        await host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 40).Select(i => new JobRequest("probe", $"{i}"))]);
        var blocked = RunningSession.Start(host, queue);
        await Wait.UntilAsync(() => host.Probe.Running > 0, "a handler runs");
        var stopping = blocked.StopAsync();
        gate.SetResult();
        Assert.True((await stopping).Returned > 0);
        // recover
        var crashed = new FakeConsumer(host.Db, queue);
        await crashed.RegisterAsync();
        await crashed.ClaimAsync(3);
        await crashed.BackdateHeartbeatAsync(TimeSpan.FromMinutes(5));
        // a runtime's claim: claim with a lease, extend, give back (as the custodian does for an offline runtime, up to a
        // fence); the custodian's pass below looks at the queue's runtimes (watch_runtimes). Released before that pass,
        // so that it has no runtime to check in PostgreSQL, which this host does not have.
        var keys = new QueueKeys(queue);
        var runtime = "runtime:" + Guid.NewGuid();
        var claimed = (RedisResult[])(await LuaScripts.Claim.RunAsync(
            host.Db,
            [keys.Consumers, keys.Ready, keys.Inflight(runtime), keys.Jobs, keys.State, keys.Payloads, keys.Seq, keys.Leases(runtime), keys.Expiring, keys.Remote],
            [runtime, 1, 0, 1 << 20, 1 << 20, 60_000]))!;
        await LuaScripts.Extend.RunAsync(host.Db, [keys.Inflight(runtime), keys.Leases(runtime)], [60_000, (RedisValue)claimed[2], (RedisValue)claimed[1]]);
        var released = (RedisResult[])(await LuaScripts.Release.RunAsync(
            host.Db,
            [keys.Consumers, keys.Inflight(runtime), keys.Leases(runtime), keys.Expiring, keys.Ready, keys.Jobs, keys.State, keys.Dead, keys.History],
            [keys.Signal.ToString(), runtime, (long)claimed[1], 10, "offline"]))!;
        Assert.Equal(1, (long)released[0] + (long)released[1]);
        await host.Custodian.RunOnceAsync(CancellationToken.None); // also trims the dead set
        // requeue, delete
        Assert.True(await host.Admin.RequeueDeadAsync(queue, killed.Id));
        await host.Admin.RequeueAllDeadAsync(queue);
        await host.Admin.DeleteDeadAsync(queue, "no-such-job");
        Assert.NotNull(await host.Admin.GetStatsAsync(queue));

        var multiplexer = await TestRedis.GetClusterAsync();
        var ours = Calls.Where(c => c.Keys.All(k => k.ToString().Contains($"{{{queue}}}", StringComparison.Ordinal))).ToList();
        Assert.Equal(LuaScripts.All.Select(s => s.Name).Order(), ours.Select(c => c.Script.Name).Distinct().Order());
        var slot = multiplexer.HashSlot($"conveyor:{{{queue}}}:jobs");
        Assert.All(ours, call => Assert.All(call.Keys, key => Assert.Equal(slot, multiplexer.HashSlot(key))));
    }
}
