#if !FUNCTIONS_STANDIN
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Conveyor.Tests.FunctionsHost;
using Conveyor.Tests.Infrastructure;
using Microsoft.Extensions.Logging;

namespace Conveyor.Tests.Functions;

/// <summary>Starting the real worker: what the host receives when a setting is wrong or Redis is away, and a clean stop.</summary>
public sealed class WorkerStartupTests
{
    public static TheoryData<string, string, string> BadSettings => new()
    {
        // Flushes 50 s apart: longer than Conveyor:Presence:FlushInterval (10 s), which the stale-window invariant counts on.
        { "ConveyorHeartbeatFlushSchedule", "*/50 * * * * *", "ConveyorHeartbeatFlushSchedule" },
        { "Conveyor:Redis:ConnectionString", "", "Conveyor:Redis:ConnectionString" },
        { "Conveyor:Postgres:ConnectionString", "", "Conveyor:Postgres:ConnectionString" },
    };

    [Theory]
    [MemberData(nameof(BadSettings))]
    public async Task A_bad_setting_stops_the_worker_before_init_with_an_error_naming_it(string setting, string value, string named)
    {
        // The flush timer on, as in production (its schedule is only checked when it runs).
        var settings = new Dictionary<string, string?> { ["AzureWebJobs.HeartbeatFlush.Disabled"] = "false", [setting] = value };
        var app = new FunctionsWorkerApp { RunTimersOnSchedule = false, Settings = settings };

        var failure = await Assert.ThrowsAsync<FunctionsWorkerStartException>(app.InitializeAsync);

        // What the host receives: the process exits before it opens the gRPC stream, and its console output says why.
        Assert.Contains("StartStream", failure.Message, StringComparison.Ordinal);
        Assert.NotNull(failure.ExitCode);
        Assert.NotEqual(0, failure.ExitCode);
        Assert.Contains(failure.Output, line => line.Contains("OptionsValidationException", StringComparison.Ordinal) && line.Contains(named, StringComparison.Ordinal));
    }

    [Fact]
    public async Task With_Redis_unreachable_the_worker_starts_without_waiting_for_it_and_warns_once()
    {
        var app = new FunctionsWorkerApp { RunTimersOnSchedule = false, Settings = new Dictionary<string, string?> { ["Conveyor:Redis:ConnectionString"] = $"127.0.0.1:{ClosedPort()},connectTimeout=1000,syncTimeout=1000,asyncTimeout=1000" } };
        await app.InitializeAsync();
        try
        {
            await Wait.UntilAsync(() => app.Host.Logs.Any(IsStartupCheckWarning), "the start-up check warned that it could not read Redis", seconds: 60);
        }
        finally
        {
            await app.DisposeAsync(); // the worker stops and sends what it still had to say
        }

        var logs = app.Host.Logs.ToList();
        var warning = Assert.Single(logs, IsStartupCheckWarning);
        Assert.Contains("maxmemory-policy", warning.Message, StringComparison.Ordinal);
        var started = logs.FindIndex(l => l.Category == "Microsoft.Hosting.Lifetime" && l.Message.StartsWith("Application started", StringComparison.Ordinal));
        Assert.True(started >= 0 && started < logs.IndexOf(warning), "the worker finished starting before the check gave up on Redis");
    }

    [Fact]
    public async Task Disposing_the_host_stops_the_worker_process()
    {
        var app = new FunctionsWorkerApp { RunTimersOnSchedule = false };
        await app.InitializeAsync();
        var pid = app.Host.ProcessId;

        await app.DisposeAsync();

        Assert.True(Exited(pid), $"worker process {pid} is still running");
    }

    private static bool IsStartupCheckWarning(WorkerLog log) => log is { Category: "Conveyor.Hosting.StartupChecks", Level: LogLevel.Warning };

    private static int ClosedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port; // closed again when the listener is disposed
    }

    private static bool Exited(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return process.HasExited;
        }
        catch (ArgumentException)
        {
            return true;
        }
    }
}
#endif
