using Conveyor.Queue;
using Microsoft.Extensions.Options;

namespace Conveyor.SelfHost;

/// <summary>
/// Runs a processor session per configured queue continuously, restarting one that fails (Redis away); serving every
/// known queue (the default), it looks for new queues every <see cref="DiscoveryInterval"/>.
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
        var running = new Dictionary<string, Task>(StringComparer.Ordinal);
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                foreach (var queue in await processor.QueuesToServeAsync(readyOnly: false, stoppingToken))
                {
                    if (!running.ContainsKey(queue))
                    {
                        running[queue] = KeepRunningAsync(queue, stoppingToken);
                    }
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
        await Task.WhenAll(running.Values);
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
