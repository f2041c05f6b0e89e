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
}

/// <summary>
/// Gives the claims of consumers that stopped heartbeating back to their queue (counting the attempt; only once it has
/// watched the queue without a gap for the consumer timeout, so a Redis stall does not pass for dead consumers),
/// removes those consumers, keeps each dead set within its count and age limits, and drops from the registry
/// the queues that stayed empty for <see cref="CustodianOptions.EmptyQueueRetention"/>. A queue whose
/// maintenance fails is logged and counted; the pass goes on with the others.
/// </summary>
public sealed class Custodian(
    RedisConnection redis, IOptions<CustodianOptions> options, IOptions<ProcessorOptions> processorOptions, ILogger<Custodian> logger,
    WakeGate? wake = null)
{
    /// <summary>Payload bytes one trim call frees at most (8 MiB, about 1 ms of freeing); more calls follow.</summary>
    internal const int TrimMaxBytes = 8 * 1024 * 1024;

    /// <summary>One pass over every registered queue.</summary>
    public async Task<CustodianResult> RunOnceAsync(CancellationToken cancellationToken)
    {
        using var activity = ConveyorTelemetry.Source.StartActivity("conveyor.custodian.run");
        var db = await redis.GetDatabaseAsync();
        var members = await db.SetMembersAsync(QueueKeys.Queues);
        var total = new Pass();
        foreach (var member in members)
        {
            var (queue, dropping) = QueueKeys.ParseRegistryMember(member!);
            try
            {
                var keys = new QueueKeys(queue);
                if (dropping)
                {
                    // A pass that died while dropping this queue left its marker: finish what it started.
                    total.Dropped += await FinishDropAsync(db, keys) ? 1 : 0;
                    continue;
                }
                await VisitAsync(db, keys, total, cancellationToken);
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
        ConveyorTelemetry.Recovered.Add(total.Requeued + total.Killed);
        ConveyorTelemetry.Killed.Add(total.Killed);
        if (total.DeadConsumers > 0 || total.Trimmed > 0 || total.Dropped > 0)
        {
            logger.LogWarning(
                "Custodian: {Consumers} dead consumers, {Requeued} jobs requeued, {Killed} jobs killed (out of attempts), {Trimmed} dead jobs trimmed, {Dropped} empty queues dropped",
                total.DeadConsumers, total.Requeued, total.Killed, total.Trimmed, total.Dropped);
        }
        return new CustodianResult(total.DeadConsumers, total.Requeued, total.Killed, total.Trimmed)
        {
            DroppedQueues = total.Dropped,
            FailedQueues = total.Failed,
        };
    }

    private async Task VisitAsync(IDatabase db, QueueKeys keys, Pass total, CancellationToken cancellationToken)
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
                    [keys.Consumers, keys.Inflight(consumer!), keys.Ready, keys.Jobs, keys.State, keys.Payloads, keys.Dead, keys.Watch],
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
            [keys.Jobs, keys.Ready, keys.Scheduled, keys.Dead, keys.Consumers, keys.Idle, keys.Registered, keys.Seq, keys.Watch],
            [(long)options.Value.EmptyQueueRetention.TotalMilliseconds, mode]) == 1;

    private sealed class Pass
    {
        public int DeadConsumers;
        public long Requeued, Killed, Trimmed;
        public int Dropped, Failed;
    }
}
