using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conveyor.Hosting;

/// <summary>
/// Runs every registered <see cref="MaintenanceTask"/> on its NCRONTAB schedule (UTC), the way timer
/// triggers do in Azure Functions: one run at a time per task, a failed run logged and retried at the
/// next occurrence. Safe beside other instances: every state change is an atomic script or a fenced
/// statement.
/// </summary>
public sealed class ScheduledMaintenance(
    IEnumerable<MaintenanceTask> tasks, IServiceProvider services, IConfiguration configuration, ILogger<ScheduledMaintenance> logger)
    : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(tasks.Select(task => RunOnScheduleAsync(task, stoppingToken)));

    private async Task RunOnScheduleAsync(MaintenanceTask task, CancellationToken stoppingToken)
    {
        if (Schedules.IsDisabled(configuration, task.Name))
        {
            logger.LogWarning("{Task} is disabled (AzureWebJobs.{Task}.Disabled=true): it does not run", task.Name, task.Name);
            return;
        }
        await RunEnabledAsync(task, stoppingToken);
    }

    private async Task RunEnabledAsync(MaintenanceTask task, CancellationToken stoppingToken)
    {
        var expression = configuration[task.ScheduleSetting] ?? Schedules.Defaults[task.ScheduleSetting];
        var schedule = Schedules.Parse(task.ScheduleSetting, expression);
        logger.LogInformation("{Task} runs on '{Schedule}' ({Setting})", task.Name, expression, task.ScheduleSetting);
        while (!stoppingToken.IsCancellationRequested)
        {
            var now = DateTime.UtcNow;
            var next = schedule.GetNextOccurrence(now);
            try
            {
                await Task.Delay(next - now, stoppingToken);
                var result = await task.RunOnceAsync(services, stoppingToken);
                logger.LogDebug("{Task}: {Result}", task.Name, result);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
#pragma warning disable CA1031 // One failed run must not stop the schedule; the next occurrence retries.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                logger.LogError(ex, "{Task} failed; it runs again at its next occurrence", task.Name);
            }
        }
    }
}
