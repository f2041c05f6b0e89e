using Conveyor.Queue;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Queues;

/// <summary>
/// One wake-up message (its body names a queue) = one bounded processor session on that queue, ending when it finds
/// nothing to claim for <c>Conveyor:Processor:IdleTimeout</c>. The platform scales this function on the wake queue's length.
/// </summary>
public sealed class WakeFunction(Processor processor)
{
    [Function("Wake")]
    public Task Run([QueueTrigger("%ConveyorWakeQueue%", Connection = "AzureWebJobsStorage")] string queue, CancellationToken cancellationToken)
        => processor.RunWokenSessionAsync(queue, cancellationToken);
}
