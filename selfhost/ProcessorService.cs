using Conveyor.Queue;
using Microsoft.Extensions.Options;

namespace Conveyor.SelfHost;

/// <summary>
/// Runs a processor session per configured queue continuously, restarting one that fails (Redis away).
/// On shutdown each session ends the way the engine defines: stop claiming, let running handlers
/// finish within the grace period, hand unstarted jobs back, deregister.
/// </summary>
internal sealed class ProcessorService(Processor processor, IOptions<ProcessorOptions> options, ILogger<ProcessorService> logger)
    : BackgroundService
{
    private static readonly TimeSpan RestartDelay = TimeSpan.FromSeconds(2);

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(options.Value.Queues.Select(queue => KeepRunningAsync(queue, stoppingToken)));

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
