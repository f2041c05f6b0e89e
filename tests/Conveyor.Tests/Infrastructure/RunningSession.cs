using Conveyor.Queue;

namespace Conveyor.Tests.Infrastructure;

/// <summary>A processor session running in the background until the test stops it.</summary>
public sealed class RunningSession : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();

    private RunningSession(Processor processor, string queue) =>
        Task = System.Threading.Tasks.Task.Run(() => processor.RunSessionAsync(queue, duration: null, _stop.Token));

    public Task<SessionResult> Task { get; }

    public static RunningSession Start(EngineHost host, string queue) => new(host.Processor, queue);

    public async Task<SessionResult> StopAsync()
    {
        await _stop.CancelAsync();
        return await Task;
    }

    public async ValueTask DisposeAsync()
    {
        if (!Task.IsCompleted)
        {
            await StopAsync();
        }
        _stop.Dispose();
    }
}
