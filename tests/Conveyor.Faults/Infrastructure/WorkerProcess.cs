using System.Diagnostics;

namespace Conveyor.Faults.Infrastructure;

/// <summary>
/// One Conveyor.FaultWorker process: the engine's processor in a process of its own, which a scenario kills with
/// SIGKILL or freezes with SIGSTOP. Its runs go to its own ledger file, its log to a file beside it.
/// </summary>
internal sealed class WorkerProcess : IDisposable
{
    private readonly Process _process;
    private readonly StreamWriter _log;
    private readonly Lock _logGate = new();
    private bool _disposed;

    private WorkerProcess(Process process, string ledgerPath, string logPath, StreamWriter log)
    {
        _process = process;
        LedgerPath = ledgerPath;
        LogPath = logPath;
        _log = log;
    }

    public int Pid => _process.Id;

    public string LedgerPath { get; }

    public string LogPath { get; }

    public bool HasExited => _process.HasExited;

    public static WorkerProcess Start(string dir, string name, IReadOnlyDictionary<string, string> environment)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "Conveyor.FaultWorker.dll");
        if (!File.Exists(dll))
        {
            throw new InvalidOperationException($"{dll} is missing: tests/Conveyor.FaultWorker builds with this project");
        }
        var info = new ProcessStartInfo("dotnet")
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        info.ArgumentList.Add(dll);
        foreach (var (key, value) in environment)
        {
            info.Environment[key] = value;
        }
        var ledger = Path.Combine(dir, $"{name}.runs");
        info.Environment["FAULT_LEDGER"] = ledger;
        info.Environment["FAULT_PARENT"] = $"{Environment.ProcessId}";
        var logPath = Path.Combine(dir, $"{name}.log");
        var log = new StreamWriter(logPath, append: true) { AutoFlush = true };
        var process = Process.Start(info) ?? throw new InvalidOperationException("the fault worker did not start");
        var worker = new WorkerProcess(process, ledger, logPath, log);
        process.OutputDataReceived += (_, e) => worker.Log(e.Data);
        process.ErrorDataReceived += (_, e) => worker.Log(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return worker;
    }

    /// <summary>SIGKILL: no graceful end, its claims stay in Redis until the custodian takes them back.</summary>
    public void Kill()
    {
        Signals.TrySend(Pid, Signals.Continue);
        _process.Kill();
        _process.WaitForExit();
    }

    public void Freeze() => Signals.Send(Pid, Signals.Stop);

    public void Thaw() => Signals.Send(Pid, Signals.Continue);

    private void Log(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_logGate)
        {
            if (!_disposed)
            {
                _log.WriteLine(line);
            }
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            Signals.TrySend(Pid, Signals.Continue);
            _process.Kill();
            _process.WaitForExit();
        }
        _process.Dispose();
        lock (_logGate)
        {
            _disposed = true;
            _log.Dispose();
        }
    }
}
