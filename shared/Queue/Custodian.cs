using Conveyor.Presence;
using Conveyor.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Conveyor.Queue;

/// <summary>What one custodian pass did.</summary>
public sealed record CustodianResult(int DeadConsumers, long Requeued, long Killed, long Trimmed)
{
    /// <summary>Queues dropped from the registry after staying empty for <see cref="CustodianOptions.EmptyQueueRetention"/>.</summary>
    public int DroppedQueues { get; init; }

    /// <summary>Queues whose maintenance failed in this pass (logged; the others were still visited).</summary>
    public int FailedQueues { get; init; }

    /// <summary>Runtimes found offline or deleted whose claims went back (counted once per queue they held claims in).</summary>
    public int OfflineRuntimes { get; init; }

    /// <summary>Claims of runtimes given back because their lease (<see cref="RuntimeOptions.ClaimTimeout"/>) expired.</summary>
    public long ExpiredClaims { get; init; }
}

/// <summary>The steps of a custodian pass that involve runtimes, in order.</summary>
internal enum CustodianStep
{
    /// <summary>watch_runtimes.lua and the runtime consumers of every queue: fences read.</summary>
    LookAtRuntimes,

    /// <summary>One PostgreSQL query: which of those runtimes are offline or deleted.</summary>
    CheckPresence,

    /// <summary>release.lua for the claims of offline runtimes, up to each queue's fence (repeats per queue).</summary>
    ReleaseOffline,
}

/// <summary>
/// Gives the claims of consumers that stopped heartbeating back to their queue (counting the attempt; only once it has
/// watched the queue without a gap for the consumer timeout, so a Redis stall does not pass for dead consumers),
/// removes those consumers, gives back the claims of runtimes that went offline or were deleted and of runtime claims
/// whose lease expired, keeps each dead set within its count and age limits, and drops from the registry
/// the queues that stayed empty for <see cref="CustodianOptions.EmptyQueueRetention"/>. A queue whose
/// maintenance fails is logged and counted; the pass goes on with the others.
/// </summary>
/// <remarks>
/// A runtime's liveness is its presence: PostgreSQL's status, with the online set in Redis's <c>{presence}</c> slot,
/// while a queue's keys live in its <c>{q}</c> slot, so no script can check presence and give claims back at once. The
/// pass therefore reads each queue's claim token counter first (the fence), then asks PostgreSQL once for every runtime
/// holding claims, then gives back, for each runtime found offline or deleted, only the claims with a token up to the
/// fence. A runtime that came back online in between (and claimed again) keeps its new claims: their tokens are later.
/// </remarks>
public sealed class Custodian(
    RedisConnection redis,
    RuntimeRegistry registry,
    IOptions<CustodianOptions> options,
    IOptions<ProcessorOptions> processorOptions,
    IOptions<RuntimeOptions> runtimeOptions,
    ILogger<Custodian> logger,
    WakeGate? wake = null)
{
    /// <summary>Runtime consumers of a queue read per call.</summary>
    private const int RuntimePage = 1000;

    /// <summary>
    /// Test seam: awaited before every runtime step, so a test can hold a pass between the presence check and the
    /// release. Null (no wait) in production.
    /// </summary>
    internal Func<CustodianStep, Task>? BeforeStep { get; set; }

    private Task StepAsync(CustodianStep step) => BeforeStep?.Invoke(step) ?? Task.CompletedTask;

    /// <summary>Payload bytes one trim call frees at most (8 MiB, about 1 ms of freeing); more calls follow.</summary>
    internal const int TrimMaxBytes = 8 * 1024 * 1024;

    /// <summary>One pass over every registered queue.</summary>
    public async Task<CustodianResult> RunOnceAsync(CancellationToken cancellationToken)
    {
        using var activity = ConveyorTelemetry.Source.StartActivity("conveyor.custodian.run");
        var db = await redis.GetDatabaseAsync();
        var members = (await db.SetMembersAsync(QueueKeys.Queues)).Select(m => QueueKeys.ParseRegistryMember(m!)).ToList();
        var total = new Pass();
        // Every fence before the one presence check; every release after it.
        await StepAsync(CustodianStep.LookAtRuntimes);
        var looks = new Dictionary<string, RuntimeLook>(StringComparer.Ordinal);
        foreach (var (queue, dropping) in members)
        {
            if (!dropping)
            {
                await GuardAsync(queue, total, async () => looks[queue] = await LookAtRuntimesAsync(db, new QueueKeys(queue)), cancellationToken);
            }
        }
        await StepAsync(CustodianStep.CheckPresence);
        var presence = await CheckPresenceAsync(looks.Values, cancellationToken);
        foreach (var (queue, dropping) in members)
        {
            var keys = new QueueKeys(queue);
            if (dropping)
            {
                // A pass that died while dropping this queue left its marker: finish what it started.
                await GuardAsync(queue, total, async () => total.Dropped += await FinishDropAsync(db, keys) ? 1 : 0, cancellationToken);
            }
            else if (looks.TryGetValue(queue, out var look))
            {
                await GuardAsync(queue, total, () => VisitAsync(db, keys, look, presence, total, cancellationToken), cancellationToken);
            }
        }
        ConveyorTelemetry.Recovered.Add(total.Requeued + total.Killed);
        ConveyorTelemetry.Killed.Add(total.Killed);
        if (total.DeadConsumers > 0 || total.OfflineRuntimes > 0 || total.Expired > 0 || total.Trimmed > 0 || total.Dropped > 0)
        {
            logger.LogWarning(
                "Custodian: {Consumers} dead consumers, {Runtimes} offline or deleted runtimes, {Expired} expired runtime claims, {Requeued} jobs requeued, {Killed} jobs killed (out of attempts), {Trimmed} dead jobs trimmed, {Dropped} empty queues dropped",
                total.DeadConsumers, total.OfflineRuntimes, total.Expired, total.Requeued, total.Killed, total.Trimmed, total.Dropped);
        }
        return new CustodianResult(total.DeadConsumers, total.Requeued, total.Killed, total.Trimmed)
        {
            DroppedQueues = total.Dropped,
            FailedQueues = total.Failed,
            OfflineRuntimes = total.OfflineRuntimes,
            ExpiredClaims = total.Expired,
        };
    }

    /// <summary>Runs one queue's step; a failure is logged and counted, and the pass goes on with the other queues.</summary>
    private async Task GuardAsync(string queue, Pass total, Func<Task> step, CancellationToken cancellationToken)
    {
        try
        {
            await step();
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
#pragma warning disable CA1031 // One queue's failure must not stop the maintenance of the others.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            total.Failed++;
            ConveyorTelemetry.MaintenanceFailures.Add(1, new("conveyor.task", "custodian"), ConveyorTelemetry.QueueTag(queue));
            logger.LogError(ex, "Custodian: maintenance of queue {Queue} failed; the pass goes on with the other queues", queue);
        }
    }

    /// <summary>The queue's fence, its runtime consumers, and those whose earliest lease may have expired.</summary>
    private static async Task<RuntimeLook> LookAtRuntimesAsync(IDatabase db, QueueKeys keys)
    {
        var watched = (RedisResult[])(await LuaScripts.WatchRuntimes.RunAsync(db, [keys.Seq, keys.Expiring], [RuntimePage]))!;
        var runtimes = new List<string>();
        for (var offset = 0; ; offset += RuntimePage)
        {
            // Runtime consumers are the ones that never time out on heartbeats (score +inf).
            var page = await db.SortedSetRangeByScoreAsync(keys.Consumers, double.PositiveInfinity, double.PositiveInfinity, skip: offset, take: RuntimePage);
            runtimes.AddRange(page.Select(v => (string)v!));
            if (page.Length < RuntimePage)
            {
                break;
            }
        }
        return new RuntimeLook((long)watched[0], runtimes, [.. watched.Skip(1).Select(r => (string)r!)]);
    }

    /// <summary>
    /// Each runtime holding claims, by status (a runtime missing from the answer was deleted); null when PostgreSQL did
    /// not answer: the claims of offline runtimes then wait for the next pass, and everything else goes on.
    /// </summary>
    private async Task<IReadOnlyDictionary<Guid, RuntimeStatus>?> CheckPresenceAsync(IEnumerable<RuntimeLook> looks, CancellationToken cancellationToken)
    {
        var ids = looks.SelectMany(l => l.Runtimes).Select(RuntimeClaims.RuntimeOf).OfType<Guid>().ToHashSet();
        if (ids.Count == 0)
        {
            return new Dictionary<Guid, RuntimeStatus>();
        }
        try
        {
            return await registry.StatusesAsync(ids, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
#pragma warning disable CA1031 // Presence being away must not stop the recovery of processors' claims.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            ConveyorTelemetry.MaintenanceFailures.Add(1, new KeyValuePair<string, object?>("conveyor.task", "custodian.presence"));
            logger.LogError(ex, "Custodian: could not read the presence of {Count} runtimes holding claims; their claims wait for the next pass", ids.Count);
            return null;
        }
    }

    /// <summary>Gives back the claims of the queue's offline or deleted runtimes (up to the fence), and expired claims.</summary>
    private async Task ReleaseRuntimeClaimsAsync(
        IDatabase db, QueueKeys keys, RuntimeLook look, IReadOnlyDictionary<Guid, RuntimeStatus>? presence, Pass total, CancellationToken cancellationToken)
    {
        if (presence is not null)
        {
            foreach (var consumer in look.Runtimes)
            {
                if (RuntimeClaims.RuntimeOf(consumer) is not { } runtime
                    || (presence.TryGetValue(runtime, out var status) && status == RuntimeStatus.Online))
                {
                    continue;
                }
                await StepAsync(CustodianStep.ReleaseOffline);
                var why = presence.ContainsKey(runtime) ? "went offline" : "was deleted";
                var (requeued, killed) = await ReleaseAsync(
                    db, keys, consumer, look.Fence, $"runtime {runtime} {why} while it held this job", cancellationToken);
                // A runtime that held nothing here any more only leaves the queue's consumers: nothing to report.
                total.OfflineRuntimes += requeued + killed > 0 ? 1 : 0;
                total.Requeued += requeued;
                total.Killed += killed;
            }
        }
        var timeout = runtimeOptions.Value.ClaimTimeout;
        foreach (var consumer in look.Due)
        {
            var runtime = RuntimeClaims.RuntimeOf(consumer)?.ToString() ?? consumer;
            var (requeued, killed) = await ReleaseAsync(
                db, keys, consumer, -1, $"the claim of runtime {runtime} expired: not acked, failed or extended within {timeout}", cancellationToken);
            total.Expired += requeued + killed;
            total.Requeued += requeued;
            total.Killed += killed;
        }
    }

    private async Task<(long Requeued, long Killed)> ReleaseAsync(
        IDatabase db, QueueKeys keys, string consumer, long fence, string error, CancellationToken cancellationToken)
    {
        long requeued = 0, killed = 0;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var reply = (RedisResult[])(await LuaScripts.Release.RunAsync(
                db,
                [keys.Consumers, keys.Inflight(consumer), keys.Leases(consumer), keys.Expiring, keys.Ready, keys.Jobs, keys.State, keys.Dead, keys.History],
                [keys.Signal.ToString(), consumer, fence, options.Value.BatchSize, error]))!;
            requeued += (long)reply[0];
            killed += (long)reply[1];
            if ((long)reply[2] == 0)
            {
                return (requeued, killed);
            }
        }
    }

    private async Task VisitAsync(
        IDatabase db, QueueKeys keys, RuntimeLook look, IReadOnlyDictionary<Guid, RuntimeStatus>? presence, Pass total, CancellationToken cancellationToken)
    {
        var settings = options.Value;
        var timeoutMs = (long)settings.ConsumerTimeout.TotalMilliseconds;
        // A visit later than this after the previous one means nobody watched in between (Redis stalled, or no custodian
        // ran): consumers may have been unable to beat, so each gets a full timeout from now. A consumer silent for longer
        // than this may already have missed its timeout; the start-up check keeps the custodian's schedule within it.
        var gapMs = timeoutMs - (long)processorOptions.Value.HeartbeatInterval.TotalMilliseconds;
        // The candidates only; the recover script re-checks each on Redis time.
        var watched = (RedisResult[])(await LuaScripts.Watch.RunAsync(db, [keys.Consumers, keys.Watch], [timeoutMs, gapMs]))!;
        var requeuedBefore = total.Requeued;
        foreach (var consumer in watched.Skip(1).Select(r => (RedisValue)r))
        {
            var counted = false;
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var reply = (RedisResult[])(await LuaScripts.Recover.RunAsync(
                    db,
                    [keys.Consumers, keys.Inflight(consumer!), keys.Ready, keys.Jobs, keys.State, keys.Dead, keys.Watch, keys.History],
                    [keys.Signal.ToString(), consumer, timeoutMs, settings.BatchSize]))!;
                if ((long)reply[0] < 0)
                {
                    break; // It heartbeated meanwhile: alive after all.
                }
                if (!counted)
                {
                    total.DeadConsumers++;
                    counted = true;
                }
                total.Requeued += (long)reply[0];
                total.Killed += (long)reply[1];
                if ((long)reply[2] == 0)
                {
                    break;
                }
            }
        }
        await ReleaseRuntimeClaimsAsync(db, keys, look, presence, total, cancellationToken);
        if (total.Requeued > requeuedBefore && wake is not null)
        {
            // Recovered jobs are ready again, and their consumers are gone: the backlog may need sessions elsewhere.
            await wake.WakeAsync(keys.Queue, cancellationToken);
        }
        bool more;
        do
        {
            cancellationToken.ThrowIfCancellationRequested();
            var trimmed = (RedisResult[])(await LuaScripts.TrimDead.RunAsync(
                db, [keys.Dead, keys.Jobs, keys.State, keys.Payloads],
                [settings.DeadMaxCount, (long)settings.DeadMaxAge.TotalMilliseconds, settings.BatchSize, TrimMaxBytes]))!;
            total.Trimmed += (long)trimmed[0];
            more = (long)trimmed[1] == 1;
        }
        while (more);

        if (await IdleAsync(db, keys, "observe"))
        {
            // Out of the registry first, a marker standing for it; then forgotten in its own slot only if still empty,
            // atomically with the mark enqueue needs; else listed again. See Producer.RegisterAsync for the other side.
            var take = db.CreateTransaction();
            _ = take.SetRemoveAsync(QueueKeys.Queues, keys.Queue);
            _ = take.SetAddAsync(QueueKeys.Queues, QueueKeys.DropMarker(keys.Queue));
            await take.ExecuteAsync();
            total.Dropped += await FinishDropAsync(db, keys) ? 1 : 0;
        }
    }

    private async Task<bool> FinishDropAsync(IDatabase db, QueueKeys keys)
    {
        var dropped = await IdleAsync(db, keys, "drop");
        var finish = db.CreateTransaction();
        if (!dropped)
        {
            _ = finish.SetAddAsync(QueueKeys.Queues, keys.Queue);
        }
        _ = finish.SetRemoveAsync(QueueKeys.Queues, QueueKeys.DropMarker(keys.Queue));
        await finish.ExecuteAsync();
        if (dropped)
        {
            logger.LogInformation("Custodian: queue {Queue} stayed empty for {Retention}; dropped from the registry", keys.Queue, options.Value.EmptyQueueRetention);
        }
        return dropped;
    }

    private async Task<bool> IdleAsync(IDatabase db, QueueKeys keys, string mode) =>
        (long)await LuaScripts.IdleQueue.RunAsync(
            db,
            [keys.Jobs, keys.Ready, keys.Scheduled, keys.Dead, keys.Consumers, keys.Idle, keys.Registered, keys.Seq, keys.Watch, keys.Remote, keys.History],
            [(long)options.Value.EmptyQueueRetention.TotalMilliseconds, mode]) == 1;

    private sealed record RuntimeLook(long Fence, IReadOnlyList<string> Runtimes, IReadOnlyList<string> Due);

    private sealed class Pass
    {
        public int DeadConsumers, OfflineRuntimes;
        public long Requeued, Killed, Trimmed, Expired;
        public int Dropped, Failed;
    }
}
