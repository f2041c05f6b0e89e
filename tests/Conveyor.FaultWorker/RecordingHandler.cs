using System.Globalization;
using System.Text.Json;
using Conveyor.Queue;

namespace Conveyor.FaultWorker;

/// <summary>
/// Runs a <c>fault</c> job: records its start, works for <c>ms</c> milliseconds, fails on purpose while the
/// attempt is at most <c>fail</c>, and records how it ended. Payload: <c>{"ms":40,"fail":0}</c>.
/// </summary>
public sealed class RecordingHandler(RunLedger ledger) : IJobHandler
{
    public const string Type = "fault";

    public async Task HandleAsync(Job job, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(job);
        ledger.Record(RunEvent.Started, job);
        var (ms, fail) = Read(job.Payload);
        await Task.Delay(ms, cancellationToken);
        if (job.Attempt <= fail)
        {
            ledger.Record(RunEvent.Failed, job);
            throw new InvalidOperationException($"attempt {job.Attempt} fails on purpose");
        }
        ledger.Record(RunEvent.Ended, job);
    }

    private static (int Ms, int Fail) Read(string payload)
    {
        using var document = JsonDocument.Parse(payload);
        var root = document.RootElement;
        return (
            root.TryGetProperty("ms", out var ms) ? ms.GetInt32() : 0,
            root.TryGetProperty("fail", out var fail) ? fail.GetInt32() : 0);
    }
}

/// <summary>What a ledger line says happened to a run.</summary>
public enum RunEvent
{
    /// <summary>The handler started (S).</summary>
    Started,

    /// <summary>The handler returned: the job succeeded (E).</summary>
    Ended,

    /// <summary>The handler failed on purpose (F).</summary>
    Failed,
}

/// <summary>One ledger line: <c>S|E|F &lt;tab&gt; job id &lt;tab&gt; attempt &lt;tab&gt; pid &lt;tab&gt; unix ms</c>.</summary>
public sealed record RunLine(RunEvent Event, string JobId, int Attempt, int Pid, long AtMs)
{
    public string Format() =>
        string.Join('\t', Event switch { RunEvent.Started => "S", RunEvent.Ended => "E", _ => "F" }, JobId,
            Attempt.ToString(CultureInfo.InvariantCulture), Pid.ToString(CultureInfo.InvariantCulture), AtMs.ToString(CultureInfo.InvariantCulture));

    /// <summary>The line, or null for a line cut short (a process killed while it wrote).</summary>
    public static RunLine? Parse(string line)
    {
        ArgumentNullException.ThrowIfNull(line);
        var parts = line.Split('\t');
        if (parts.Length != 5 || parts[0] is not ("S" or "E" or "F")
            || !int.TryParse(parts[2], CultureInfo.InvariantCulture, out var attempt)
            || !int.TryParse(parts[3], CultureInfo.InvariantCulture, out var pid)
            || !long.TryParse(parts[4], CultureInfo.InvariantCulture, out var at))
        {
            return null;
        }
        var kind = parts[0] switch { "S" => RunEvent.Started, "E" => RunEvent.Ended, _ => RunEvent.Failed };
        return new RunLine(kind, parts[1], attempt, pid, at);
    }
}

/// <summary>
/// This process's append-only ledger of runs. Every line reaches the operating system before the handler goes
/// on (a SIGKILL loses no line already written), and no other process writes the file.
/// </summary>
public sealed class RunLedger : IDisposable
{
    private readonly StreamWriter _writer;
    private readonly Lock _gate = new();

    public RunLedger(string path)
    {
        var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read);
        _writer = new StreamWriter(stream) { AutoFlush = true };
    }

    public void Record(RunEvent kind, Job job)
    {
        ArgumentNullException.ThrowIfNull(job);
        var line = new RunLine(kind, job.Id, job.Attempt, Environment.ProcessId, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()).Format();
        lock (_gate)
        {
            _writer.WriteLine(line);
        }
    }

    public void Dispose() => _writer.Dispose();
}
