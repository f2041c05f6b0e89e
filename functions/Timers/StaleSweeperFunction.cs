using Conveyor.Presence;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Timers;

public sealed class StaleSweeperFunction(StaleSweeper sweeper)
{
    [Function("StaleSweeper")]
    public Task Run([TimerTrigger("%ConveyorStaleSweeperSchedule%")] TimerInfo timer, CancellationToken cancellationToken)
        => sweeper.RunOnceAsync(cancellationToken);
}
