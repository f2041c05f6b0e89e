using Conveyor.Storage;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor.Hosting;

/// <summary>
/// Checks made once when the host starts: warns loudly when Redis may evict queue data. It runs beside the host's
/// start, not before it: Redis may come up late (the connection keeps retrying), and a host must not wait for it.
/// Reaching Redis is bounded by StackExchange.Redis's connect and command timeouts; a failure is one warning.
/// </summary>
internal sealed class StartupChecks(RedisConnection redis, ILogger<StartupChecks> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await redis.CheckEvictionPolicyAsync(logger).WaitAsync(stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // stopped before Redis answered: nothing to report
        }
    }
}
