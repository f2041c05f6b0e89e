using Conveyor.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Conveyor.Queue;

/// <summary>What one scheduler pass did.</summary>
public sealed record SchedulerResult(int Queues, long Promoted, int Batches)
{
    /// <summary>Queues whose promotion failed in this pass (logged; the others were still visited).</summary>
    public int FailedQueues { get; init; }
}

/// <summary>
/// Promotes due scheduled jobs (delayed jobs and retries) of every registered queue to their ready lists, and may post
/// wake-ups for a queue it promoted to (<see cref="WakeGate"/>), and reports queues that have had ready jobs and no live
/// consumer for <see cref="QueueOptions.UnservedAfter"/>. A queue whose promotion fails is logged and counted; the pass
/// goes on with the others.
/// </summary>
public sealed class Scheduler(
    RedisConnection redis,
    IOptions<SchedulerOptions> options,
    IOptions<QueueOptions> queueOptions,
    IOptions<CustodianOptions> custodianOptions,
    ILogger<Scheduler> logger,
    WakeGate? wake = null)
{
    /// <summary>One pass over every registered queue, in bounded batches until a batch comes back short.</summary>
    public async Task<SchedulerResult> RunOnceAsync(CancellationToken cancellationToken)
    {
        using var activity = ConveyorTelemetry.Source.StartActivity("conveyor.scheduler.run");
        var db = await redis.GetDatabaseAsync();
        var members = await db.SetMembersAsync(QueueKeys.Queues);
        var batchSize = options.Value.BatchSize;
        long promoted = 0;
        int batches = 0, failed = 0;
        // A queue being dropped (marker) is promoted too: it may have received a job meanwhile.
        foreach (var queue in members.Select(m => QueueKeys.ParseRegistryMember(m!).Queue).Distinct(StringComparer.Ordinal))
        {
            var keys = new QueueKeys(queue);
            try
            {
                long moved, promotedHere = 0;
                do
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    moved = (long)await LuaScripts.Promote.RunAsync(db, [keys.Scheduled, keys.Ready], [keys.Signal.ToString(), batchSize]);
                    promotedHere += moved;
                    batches++;
                }
                while (moved == batchSize);
                promoted += promotedHere;
                if (promotedHere > 0 && wake is not null)
                {
                    await wake.WakeAsync(queue, cancellationToken);
                }
                await CheckServedAsync(db, keys);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                throw;
            }
#pragma warning disable CA1031 // One queue's failure must not stop the promotions of the others.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                failed++;
                ConveyorTelemetry.MaintenanceFailures.Add(1, new("conveyor.task", "scheduler"), ConveyorTelemetry.QueueTag(queue));
                logger.LogError(ex, "Scheduler: promoting due jobs of queue {Queue} failed; the pass goes on with the other queues", queue);
            }
        }
        var result = new SchedulerResult(members.Length, promoted, batches) { FailedQueues = failed };
        if (promoted > 0)
        {
            logger.LogInformation("Scheduler promoted {Promoted} jobs in {Batches} batches over {Queues} queues", promoted, batches, members.Length);
        }
        return result;
    }

    /// <summary>Queues this scheduler has reported unserved and not seen served since: each is logged once.</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, byte> _reported = new(StringComparer.Ordinal);

    /// <summary>Marks, or clears, the queue as unserved; past the threshold it is logged once (until served) and measured.</summary>
    private async Task CheckServedAsync(IDatabaseAsync db, QueueKeys keys)
    {
        var reply = (RedisResult[])(await LuaScripts.Unserved.RunAsync(
            db, [keys.Ready, keys.Consumers, keys.Unserved], [(long)custodianOptions.Value.ConsumerTimeout.TotalMilliseconds]))!;
        var unserved = TimeSpan.FromMilliseconds((long)reply[0]);
        if ((long)reply[0] < 0 || unserved < queueOptions.Value.UnservedAfter)
        {
            ConveyorTelemetry.UnservedQueues.TryRemove(keys.Queue, out _);
            _reported.TryRemove(keys.Queue, out _);
            return;
        }
        ConveyorTelemetry.UnservedQueues[keys.Queue] = unserved.TotalSeconds;
        if (_reported.TryAdd(keys.Queue, 0))
        {
            logger.LogWarning(
                "Queue {Queue} has had {Ready} ready jobs and no live consumer for {Unserved}: nothing serves it (is it in Conveyor:Processor:Queues?)",
                keys.Queue, (long)reply[1], unserved);
        }
    }
}
