namespace Conveyor.Hosting;

/// <summary>
/// One periodic service the hosts run on its schedule: the Functions app with a timer trigger, the
/// self-host with <see cref="ScheduledMaintenance"/>. <paramref name="RunOnceAsync"/> returns the
/// service's result record, which hosts log.
/// </summary>
public sealed record MaintenanceTask(string Name, string ScheduleSetting, Func<IServiceProvider, CancellationToken, Task<object>> RunOnceAsync);
