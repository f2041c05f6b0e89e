using Conveyor.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor.Queue;

/// <summary>What one scheduler pass did.</summary>
public sealed record SchedulerResult(int Queues, long Promoted, int Batches)
{
    /// <summary>Queues whose promotion failed in this pass (logged; the others were still visited).</summary>
    public int FailedQueues { get; init; }
}

/// <summary>
/// Promotes due scheduled jobs (delayed jobs and retries) of every registered queue to their ready lists. A queue
/// whose promotion fails is logged and counted; the pass goes on with the others.
/// </summary>
public sealed class Scheduler(RedisConnection redis, IOptions<SchedulerOptions> options, ILogger<Scheduler> logger)
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
                long moved;
                do
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    moved = (long)await LuaScripts.Promote.RunAsync(db, [keys.Scheduled, keys.Ready], [keys.Signal.ToString(), batchSize]);
                    promoted += moved;
                    batches++;
                }
                while (moved == batchSize);
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
}
