using System.ComponentModel;
using System.Runtime.InteropServices;

namespace Conveyor.Faults.Infrastructure;

/// <summary>kill(2): freezes (SIGSTOP), thaws (SIGCONT) and kills (SIGKILL) a process or a process group.</summary>
internal static partial class Signals
{
    public const int Kill = 9;
    public const int Continue = 18;
    public const int Stop = 19;

    /// <summary>Sends <paramref name="signal"/> to <paramref name="pid"/> (a negative pid: to that process group).</summary>
    public static void Send(int pid, int signal)
    {
        if (SendSignal(pid, signal) != 0)
        {
            throw new Win32Exception(Marshal.GetLastPInvokeError(), $"kill({pid}, {signal}) failed");
        }
    }

    /// <summary>Like <see cref="Send"/>, but a process that is already gone is not an error.</summary>
    public static bool TrySend(int pid, int signal) => SendSignal(pid, signal) == 0;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int SendSignal(int pid, int signal);
}
