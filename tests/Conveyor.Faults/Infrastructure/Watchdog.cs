using System.Diagnostics;

namespace Conveyor.Faults.Infrastructure;

/// <summary>
/// Servers a scenario starts must not outlive a test run that crashed: a small shell waits for this test process
/// to end and then cleans up, unless the guarded process ended first (the normal case: the scenario stopped it).
/// </summary>
internal static class Watchdog
{
    public static void Guard(int guardedPid, string cleanup)
    {
        var script =
            $"while [ -d /proc/{Environment.ProcessId} ] && [ -d /proc/{guardedPid} ]; do sleep 1; done; " +
            $"if [ -d /proc/{guardedPid} ]; then {cleanup}; fi";
        var info = new ProcessStartInfo("sh")
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add(script);
        using var process = Process.Start(info) ?? throw new InvalidOperationException("could not start the watchdog shell");
    }
}
