using Conveyor.Queue;
using Microsoft.Extensions.Options;

namespace Conveyor.SelfHost;

/// <summary>
/// Runs a processor session per configured queue continuously, restarting one that fails (Redis away); serving every
/// known queue (the default), it looks for new queues every <see cref="DiscoveryInterval"/>, and ends the session of a
/// queue remote runtimes have taken over (<see cref="Processor.ServesAsync"/>).
/// On shutdown each session ends the way the engine defines: stop claiming, let running handlers
/// finish within the grace period, hand unstarted jobs back, deregister.
/// </summary>
internal sealed class ProcessorService(Processor processor, IOptions<ProcessorOptions> options, ILogger<ProcessorService> logger)
    : BackgroundService
{
    private static readonly TimeSpan RestartDelay = TimeSpan.FromSeconds(2);

    /// <summary>How soon a queue's first job gets a session here when every known queue is served.</summary>
    internal static readonly TimeSpan DiscoveryInterval = TimeSpan.FromSeconds(2);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var running = new Dictionary<string, (Task Session, CancellationTokenSource Stop)>(StringComparer.Ordinal);
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var queues = (await processor.QueuesToServeAsync(readyOnly: false, stoppingToken)).ToHashSet(StringComparer.Ordinal);
                foreach (var queue in queues.Where(q => !running.ContainsKey(q)))
                {
                    var stop = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                    running[queue] = (KeepRunningAsync(queue, stop.Token), stop);
                }
                // A queue remote runtimes took over since (or one no longer listed): its session ends the usual way,
                // handing back what it has not started.
                foreach (var (queue, (session, stop)) in running.Where(r => !queues.Contains(r.Key)).ToList())
                {
                    logger.LogInformation("Queue {Queue} is no longer served here (remote runtimes serve it); ending its session", queue);
                    await stop.CancelAsync();
                    await session;
                    stop.Dispose();
                    running.Remove(queue);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex) when (ex is StackExchange.Redis.RedisException or TimeoutException)
            {
                logger.LogWarning(ex, "Could not list the queues to serve; trying again in {Delay}", DiscoveryInterval);
            }
            if (!options.Value.ServesEveryQueue)
            {
                break;
            }
            try
            {
                await Task.Delay(DiscoveryInterval, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
        await Task.WhenAll(running.Values.Select(r => r.Session));
        foreach (var (_, stop) in running.Values)
        {
            stop.Dispose();
        }
    }

    private async Task KeepRunningAsync(string queue, CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await processor.RunSessionAsync(queue, duration: null, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
#pragma warning disable CA1031 // Redis being away must not kill the host; retry.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                logger.LogError(ex, "The processor session on {Queue} stopped unexpectedly; restarting in {Delay}", queue, RestartDelay);
                try
                {
                    await Task.Delay(RestartDelay, stoppingToken);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }
}
