using Conveyor.Presence;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Timers;

public sealed class HeartbeatFlushFunction(HeartbeatFlusher flusher)
{
    [Function("HeartbeatFlush")]
    public Task Run([TimerTrigger("%ConveyorHeartbeatFlushSchedule%")] TimerInfo timer, CancellationToken cancellationToken)
        => flusher.RunOnceAsync(cancellationToken);
}
