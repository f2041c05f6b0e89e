using Conveyor.Queue;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Timers;

/// <summary>One bounded long-poll session per tick, ending (gracefully) before functionTimeout.</summary>
public sealed class ProcessorFunction(Processor processor)
{
    [Function("Processor")]
    public Task Run([TimerTrigger("%ConveyorProcessorSchedule%")] TimerInfo timer, CancellationToken cancellationToken)
        => processor.RunBoundedAsync(cancellationToken);
}
