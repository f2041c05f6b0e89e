using System.ComponentModel.DataAnnotations;
using Conveyor.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Conveyor.Queue;

/// <summary>
/// Posts wake-up messages, each asking a host for one processor session on a queue: how a backlog reaches hosts that
/// scale on a message queue (the Functions app's wake queue, an Azure Storage queue). The engine knows no transport;
/// the host that has one registers its sender.
/// </summary>
public interface IWakeSender
{
    /// <summary>Posts <paramref name="count"/> messages, each naming <paramref name="queue"/>.</summary>
    Task SendAsync(string queue, int count, CancellationToken cancellationToken);
}

/// <summary>Posts nothing: a host whose processors run all the time (the self-host) needs no wake-ups.</summary>
internal sealed class NoWakeSender : IWakeSender
{
    public Task SendAsync(string queue, int count, CancellationToken cancellationToken) => Task.CompletedTask;
}

/// <summary>When and how many wake-ups are posted. Section <c>Conveyor:Wake</c>.</summary>
public sealed class WakeOptions
{
    public const string Section = "Conveyor:Wake";

    /// <summary>
    /// At most one post per queue this often, across every process (one <c>SET NX PX</c> slot in Redis), so a burst of
    /// enqueues posts a handful of messages. Default: 5 s. Bounds: 100 ms to 10 min.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00.1", "00:10:00")]
    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Most messages one post carries (one per session the backlog needs beyond the live consumers). Default: 4 (the
    /// most instances the platform's target-based scaler adds at once). Bounds: 1 to 64.
    /// </summary>
    [Range(1, 64)]
    public int MaxMessages { get; set; } = 4;
}

/// <summary>
/// Decides whether a queue's ready backlog outgrows what its live consumers absorb (backlog versus consumers ×
/// <see cref="ProcessorOptions.Concurrency"/>) and, at most once per <see cref="WakeOptions.Interval"/> per queue, posts
/// that many sessions' worth of wake-ups. Enqueue, the scheduler's promotions and the custodian's recoveries call it.
/// A failed post is logged and forgotten: the jobs are safe in Redis, and the next call (or the timer processor) serves them.
/// </summary>
public sealed class WakeGate(
    RedisConnection redis,
    IWakeSender sender,
    IOptions<WakeOptions> options,
    IOptions<ProcessorOptions> processorOptions,
    IOptions<CustodianOptions> custodianOptions,
    IOptions<RuntimeOptions> runtimeOptions,
    ILogger<WakeGate> logger)
{
    /// <summary>False when the host posts no wake-ups: callers skip the Redis call.</summary>
    public bool Enabled { get; } = sender is not NoWakeSender;

    /// <summary>Posts the wake-ups <paramref name="queue"/> needs now, if its slot is free. Returns how many were posted.</summary>
    public async Task<int> WakeAsync(string queue, CancellationToken cancellationToken)
    {
        var served = Processor.Configured(processorOptions.Value, runtimeOptions.Value, queue);
        if (!Enabled || served == false)
        {
            return 0;
        }
        var keys = new QueueKeys(queue);
        int count;
        try
        {
            var db = await redis.GetDatabaseAsync();
            count = (int)await LuaScripts.Wake.RunAsync(
                db,
                [keys.Ready, keys.Consumers, keys.Wake, keys.Remote],
                [processorOptions.Value.Concurrency, (long)custodianOptions.Value.ConsumerTimeout.TotalMilliseconds,
                    (long)options.Value.Interval.TotalMilliseconds, options.Value.MaxMessages, served is null ? 1 : 0]);
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            logger.LogWarning(ex, "Wake: could not check the backlog of queue {Queue}; no wake-up posted", queue);
            return 0;
        }
        if (count == 0)
        {
            return 0;
        }
        try
        {
            await sender.SendAsync(queue, count, cancellationToken);
            ConveyorTelemetry.WakeMessages.Add(count, ConveyorTelemetry.QueueTag(queue));
            logger.LogInformation("Wake: posted {Count} wake-ups for queue {Queue}", count, queue);
            return count;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
#pragma warning disable CA1031 // A transport failure must not fail the enqueue that already stored its jobs.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            logger.LogWarning(ex, "Wake: posting {Count} wake-ups for queue {Queue} failed; the next enqueue or the timer processor serves it", count, queue);
            // Free the slot so the next caller tries again instead of waiting out the interval.
            await FreeSlotAsync(keys);
            return 0;
        }
    }

    private async Task FreeSlotAsync(QueueKeys keys)
    {
        try
        {
            var db = await redis.GetDatabaseAsync();
            await db.KeyDeleteAsync(keys.Wake);
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            logger.LogDebug(ex, "Wake: could not free the slot of queue {Queue}; it expires on its own", keys.Queue);
        }
    }
}
