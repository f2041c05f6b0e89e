using System.Collections.Concurrent;
using System.Globalization;

namespace Conveyor.Faults.Ledger;

/// <summary>
/// What the test process saw, in memory (no fault ever touches the test process): every enqueue the API
/// acknowledged, every enqueue that failed in a way that may still have stored the job, every fault injected, and
/// every heartbeat the API answered 200 or 202. Handler runs are in the workers' own ledger files.
/// </summary>
internal sealed class Ledger
{
    private readonly ConcurrentDictionary<string, JobPlan> _acknowledged = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int> _ambiguous = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<FaultWindow> _faults = new();
    private readonly ConcurrentQueue<BeatAck> _beats = new();

    public static long NowMs => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    public IReadOnlyDictionary<string, JobPlan> Acknowledged => _acknowledged;

    public IReadOnlyDictionary<string, int> Ambiguous => _ambiguous;

    public IReadOnlyCollection<FaultWindow> Faults => _faults;

    public IReadOnlyCollection<BeatAck> Beats => _beats;

    public void Acknowledge(JobPlan plan) => _acknowledged.TryAdd(plan.Id, plan);

    /// <summary>An enqueue that failed after it may have reached Redis (503, timeout, cut connection).</summary>
    public void MaybeStored(string id) => _ambiguous.AddOrUpdate(id, 1, (_, n) => n + 1);

    public void BeatAcknowledged(BeatAck beat) => _beats.Enqueue(beat);

    /// <summary>A fault of a moment (a SIGKILL).</summary>
    public void Instant(string kind, int? pid, bool explainsDuplicates, string detail)
    {
        var now = NowMs;
        _faults.Enqueue(new FaultWindow(kind, pid, now, now, explainsDuplicates, detail));
    }

    /// <summary>
    /// A fault that lasts until the returned scope ends. <paramref name="silencesConsumers"/>: while it lasts, the
    /// processors it hits cannot heartbeat (a frozen process, a stalled Redis), so when it lasts longer than
    /// ConsumerTimeout their jobs may rightly run again.
    /// </summary>
    public FaultScope Begin(string kind, int? pid, string detail, bool silencesConsumers) => new(this, kind, pid, detail, silencesConsumers, NowMs);

    internal void End(FaultWindow window) => _faults.Enqueue(window);

    /// <summary>Writes what the ledger holds beside the workers' files, for the post-mortem of a failed scenario.</summary>
    public async Task SaveAsync(string dir)
    {
        await File.WriteAllLinesAsync(Path.Combine(dir, "acknowledged.tsv"),
            _acknowledged.Values.OrderBy(p => p.Id, StringComparer.Ordinal).Select(p => string.Join('\t', p.Id, p.WorkMs, p.Fail, p.MaxAttempts, p.DelaySeconds)));
        await File.WriteAllLinesAsync(Path.Combine(dir, "maybe-stored.tsv"), _ambiguous.Select(e => $"{e.Key}\t{e.Value}"));
        await File.WriteAllLinesAsync(Path.Combine(dir, "faults.tsv"),
            _faults.OrderBy(f => f.StartMs).Select(f => string.Join('\t', f.Kind, f.Pid, f.StartMs, f.EndMs, f.ExplainsDuplicates, f.Detail)));
        await File.WriteAllLinesAsync(Path.Combine(dir, "beats.tsv"),
            _beats.Select(b => string.Join('\t', b.Runtime, b.SeenAt.ToString("O", CultureInfo.InvariantCulture), b.Status, b.FlippedBackOnline)));
    }
}

/// <summary>A job the scenario enqueued and what it should do: work <see cref="WorkMs"/>, fail its first <see cref="Fail"/> attempts.</summary>
internal sealed record JobPlan(string Id, int WorkMs, int Fail, int MaxAttempts, int DelaySeconds)
{
    /// <summary>It fails on purpose on every attempt it has: it must end dead.</summary>
    public bool PlannedToDie => Fail >= MaxAttempts;
}

/// <summary>
/// A fault the scenario injected, in Unix ms. <see cref="ExplainsDuplicates"/>: the fault may rightly make a job
/// run twice (its process killed, or silent longer than ConsumerTimeout); <see cref="Pid"/> null means every process.
/// </summary>
internal sealed record FaultWindow(string Kind, int? Pid, long StartMs, long EndMs, bool ExplainsDuplicates, string Detail);

/// <summary>
/// A beat the API answered 200 or 202, with the time it reported. <see cref="FlippedBackOnline"/>: the runtime had
/// gone offline although it beat before (it was swept, or its last beat was taken for older than it was).
/// </summary>
internal sealed record BeatAck(Guid Runtime, DateTimeOffset SeenAt, int Status, bool FlippedBackOnline);

/// <summary>An injected fault in progress; <see cref="End"/> records it with its length.</summary>
internal sealed class FaultScope(Ledger ledger, string kind, int? pid, string detail, bool silencesConsumers, long startMs)
{
    private bool _ended;

    public long StartMs => startMs;

    /// <summary>Records the fault. One that silenced consumers explains duplicate runs when it lasted longer than <paramref name="consumerTimeout"/>.</summary>
    public FaultWindow End(TimeSpan consumerTimeout)
    {
        if (_ended)
        {
            throw new InvalidOperationException("the fault already ended");
        }
        _ended = true;
        var end = Ledger.NowMs;
        var window = new FaultWindow(kind, pid, startMs, end, silencesConsumers && end - startMs > consumerTimeout.TotalMilliseconds, detail);
        ledger.End(window);
        return window;
    }
}
