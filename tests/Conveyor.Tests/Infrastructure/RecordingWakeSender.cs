using System.Collections.Concurrent;
using Conveyor.Queue;

namespace Conveyor.Tests.Infrastructure;

/// <summary>
/// A wake-up transport that keeps what it is asked to post (the engine's side of the interface; the Azure Storage
/// sender is tested against Azurite on its own). <see cref="Failing"/> makes every post throw, as a storage outage would.
/// </summary>
public sealed class RecordingWakeSender : IWakeSender
{
    public ConcurrentQueue<string> Messages { get; } = new();

    public bool Failing { get; set; }

    public int CountFor(string queue) => Messages.Count(m => m == queue);

    public Task SendAsync(string queue, int count, CancellationToken cancellationToken)
    {
        if (Failing)
        {
            throw new InvalidOperationException("storage is down");
        }
        for (var i = 0; i < count; i++)
        {
            Messages.Enqueue(queue);
        }
        return Task.CompletedTask;
    }
}
