using Conveyor.Storage;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor.Hosting;

/// <summary>Checks made once when the host starts: warns loudly when Redis may evict queue data.</summary>
internal sealed class StartupChecks(RedisConnection redis, ILogger<StartupChecks> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            await redis.CheckEvictionPolicyAsync(logger).WaitAsync(TimeSpan.FromSeconds(10), cancellationToken);
        }
        catch (TimeoutException)
        {
            logger.LogWarning("Conveyor could not reach Redis within 10 s at start-up to check maxmemory-policy");
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
