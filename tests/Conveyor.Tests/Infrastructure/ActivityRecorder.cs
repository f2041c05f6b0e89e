using System.Collections.Concurrent;
using System.Diagnostics;

namespace Conveyor.Tests.Infrastructure;

/// <summary>Records every activity Conveyor starts while it lives; tests count those of one trace (others run in parallel).</summary>
public sealed class ActivityRecorder : IDisposable
{
    private readonly ConcurrentQueue<Activity> _started = new();
    private readonly ActivityListener _listener;

    public ActivityRecorder()
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == ConveyorTelemetry.Name,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllData,
            ActivityStarted = _started.Enqueue,
        };
        ActivitySource.AddActivityListener(_listener);
    }

    public int Count(string operationName, ActivityTraceId traceId) =>
        _started.Count(a => a.OperationName == operationName && a.TraceId == traceId);

    public void Dispose() => _listener.Dispose();
}
