using Conveyor.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor.Queue;

/// <summary>What one scheduler pass did.</summary>
public sealed record SchedulerResult(int Queues, long Promoted, int Batches);

/// <summary>Promotes due scheduled jobs (delayed jobs and retries) of every known queue to their ready lists.</summary>
public sealed class Scheduler(RedisConnection redis, IOptions<SchedulerOptions> options, ILogger<Scheduler> logger)
{
    /// <summary>One pass over every known queue, in bounded batches until a batch comes back short.</summary>
    public async Task<SchedulerResult> RunOnceAsync(CancellationToken cancellationToken)
    {
        using var activity = ConveyorTelemetry.Source.StartActivity("conveyor.scheduler.run");
        var db = await redis.GetDatabaseAsync();
        var queues = await db.SetMembersAsync(QueueKeys.Queues);
        var batchSize = options.Value.BatchSize;
        long promoted = 0;
        var batches = 0;
        foreach (var queue in queues)
        {
            var keys = new QueueKeys(queue!);
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
        var result = new SchedulerResult(queues.Length, promoted, batches);
        if (promoted > 0)
        {
            logger.LogInformation("Scheduler promoted {Promoted} jobs in {Batches} batches over {Queues} queues", promoted, batches, queues.Length);
        }
        return result;
    }
}
