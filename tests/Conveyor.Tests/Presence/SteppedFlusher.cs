using System.Threading.Channels;
using Conveyor.Presence;

namespace Conveyor.Tests.Presence;

/// <summary>
/// Runs a <see cref="HeartbeatFlusher"/> one step at a time, through its test seam: the flusher waits before every
/// step, <see cref="StepAsync"/> lets it take one and returns once it waits before the next, or its run has ended.
/// It makes <paramref name="runs"/> calls of <see cref="HeartbeatFlusher.RunOnceAsync"/>, one after the other, with
/// one batch writer, so each run is one sequence of steps. Waits on the flusher, never on a clock.
/// </summary>
internal sealed class SteppedFlusher(HeartbeatFlusher flusher, int runs)
{
    private readonly Channel<FlushStep?> _arrivals = Channel.CreateUnbounded<FlushStep?>();
    private TaskCompletionSource? _go;
    private Task? _run;
    private int _runsLeft = runs;

    /// <summary>The step the flusher waits before; null between runs.</summary>
    public FlushStep? Next { get; private set; }

    /// <summary>All runs made and ended.</summary>
    public bool Done => Next is null && _runsLeft == 0;

    /// <summary>Takes the flusher's next step: the first step of a new run when none is under way.</summary>
    public async Task StepAsync()
    {
        if (Done)
        {
            throw new InvalidOperationException("this flusher has made all its runs");
        }
        if (Next is null)
        {
            _runsLeft--;
            flusher.Writers = 1;
            flusher.BeforeStep = WaitForGoAsync;
            _run = RunAsync();
            Next = await NextArrivalAsync();
            if (Next is null)
            {
                await _run;
                throw new InvalidOperationException("a run ended before its first step");
            }
        }
        _go!.SetResult();
        Next = await NextArrivalAsync();
        if (Next is null)
        {
            await _run!; // a failed run fails the test here
        }
    }

    private Task WaitForGoAsync(FlushStep step)
    {
        var go = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _go = go;
        _arrivals.Writer.TryWrite(step);
        return go.Task;
    }

    private async Task RunAsync()
    {
        try
        {
            await Task.Run(() => flusher.RunOnceAsync(CancellationToken.None));
        }
        finally
        {
            _arrivals.Writer.TryWrite(null);
        }
    }

    private async Task<FlushStep?> NextArrivalAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            return await _arrivals.Reader.ReadAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException("Timed out after 30 s waiting until the flusher reached its next step or ended its run");
        }
    }
}
