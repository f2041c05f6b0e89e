using Conveyor.Queue;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Timers;

public sealed class SchedulerFunction(Scheduler scheduler)
{
    [Function("Scheduler")]
    public Task Run([TimerTrigger("%ConveyorSchedulerSchedule%")] TimerInfo timer, CancellationToken cancellationToken)
        => scheduler.RunOnceAsync(cancellationToken);
}
