using Conveyor.Queue;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Timers;

public sealed class CustodianFunction(Custodian custodian)
{
    [Function("Custodian")]
    public Task Run([TimerTrigger("%ConveyorCustodianSchedule%")] TimerInfo timer, CancellationToken cancellationToken)
        => custodian.RunOnceAsync(cancellationToken);
}
