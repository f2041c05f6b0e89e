namespace Conveyor.Queue;

/// <summary>A latch that one side sets and another awaits; it stays set until reset.</summary>
internal sealed class AsyncSignal
{
    private TaskCompletionSource _source = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Set() => Volatile.Read(ref _source).TrySetResult();

    public void Reset()
    {
        var current = Volatile.Read(ref _source);
        if (current.Task.IsCompleted)
        {
            Interlocked.CompareExchange(ref _source, new(TaskCreationOptions.RunContinuationsAsynchronously), current);
        }
    }

    /// <summary>Waits until set, the timeout passes (false) or the token is cancelled (throws).</summary>
    public async Task<bool> WaitAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var task = Volatile.Read(ref _source).Task;
        if (task.IsCompleted)
        {
            return true;
        }
        try
        {
            await task.WaitAsync(timeout, cancellationToken);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }
}
