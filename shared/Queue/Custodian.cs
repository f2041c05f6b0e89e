using Conveyor.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Conveyor.Queue;

/// <summary>What one custodian pass did.</summary>
public sealed record CustodianResult(int DeadConsumers, long Requeued, long Killed, long Trimmed);

/// <summary>
/// Gives the claims of consumers that stopped heartbeating back to their queue (counting the attempt),
/// removes those consumers, and keeps each dead set within its count and age limits.
/// </summary>
public sealed class Custodian(RedisConnection redis, IOptions<CustodianOptions> options, ILogger<Custodian> logger)
{
    /// <summary>One pass over every known queue.</summary>
    public async Task<CustodianResult> RunOnceAsync(CancellationToken cancellationToken)
    {
        using var activity = ConveyorTelemetry.Source.StartActivity("conveyor.custodian.run");
        var settings = options.Value;
        var db = await redis.GetDatabaseAsync();
        var queues = await db.SetMembersAsync(QueueKeys.Queues);
        var timeoutMs = (long)settings.ConsumerTimeout.TotalMilliseconds;
        int deadConsumers = 0;
        long requeued = 0, killed = 0, trimmed = 0;
        foreach (var queue in queues)
        {
            var keys = new QueueKeys(queue!);
            // The cutoff only picks candidates; the recover script re-checks each on Redis time.
            var now = await RedisTime.NowMsAsync(db);
            var expired = await db.SortedSetRangeByScoreAsync(keys.Consumers, double.NegativeInfinity, now - timeoutMs, Exclude.Stop);
            foreach (var consumer in expired)
            {
                var counted = false;
                while (true)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var reply = (RedisResult[])(await LuaScripts.Recover.RunAsync(
                        db,
                        [keys.Consumers, keys.Inflight(consumer!), keys.Ready, keys.Jobs, keys.Dead],
                        [keys.Signal.ToString(), consumer, timeoutMs, settings.BatchSize]))!;
                    if ((long)reply[0] < 0)
                    {
                        break; // It heartbeated meanwhile: alive after all.
                    }
                    if (!counted)
                    {
                        deadConsumers++;
                        counted = true;
                    }
                    requeued += (long)reply[0];
                    killed += (long)reply[1];
                    if ((long)reply[2] == 0)
                    {
                        break;
                    }
                }
            }
            long dropped;
            do
            {
                cancellationToken.ThrowIfCancellationRequested();
                dropped = (long)await LuaScripts.TrimDead.RunAsync(
                    db, [keys.Dead, keys.Jobs],
                    [settings.DeadMaxCount, (long)settings.DeadMaxAge.TotalMilliseconds, settings.BatchSize]);
                trimmed += dropped;
            }
            while (dropped == settings.BatchSize);
        }
        ConveyorTelemetry.Recovered.Add(requeued + killed);
        ConveyorTelemetry.Killed.Add(killed);
        if (deadConsumers > 0 || trimmed > 0)
        {
            logger.LogWarning(
                "Custodian: {Consumers} dead consumers, {Requeued} jobs requeued, {Killed} jobs killed (out of attempts), {Trimmed} dead jobs trimmed",
                deadConsumers, requeued, killed, trimmed);
        }
        return new CustodianResult(deadConsumers, requeued, killed, trimmed);
    }
}
