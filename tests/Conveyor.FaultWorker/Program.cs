// A processor process for the fault-injection suite (tests/Conveyor.Faults): the engine wired with AddConveyor,
// one job type ("fault") whose handler appends every run to this process's own ledger file, and a processor
// session per configured queue, started again after a failure the way the self-host's ProcessorService does.
// The suite starts several of these, kills them with SIGKILL and freezes them with SIGSTOP.
//
// Configuration: the engine's options as environment variables (Conveyor__Redis__ConnectionString,
// Conveyor__Processor__Concurrency, ...), plus
//   FAULT_QUEUE    the queue it serves (Conveyor:Processor:Queues cannot drop its "default": the configuration
//                  binder appends to an array's initial items)
//   FAULT_LEDGER   the file this process appends its runs to
//   FAULT_PARENT   pid of the test process; this process exits soon after it is gone
using System.Runtime.InteropServices;
using Conveyor.FaultWorker;
using Conveyor.Hosting;
using Conveyor.Queue;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

var configuration = new ConfigurationBuilder().AddEnvironmentVariables().Build();
var ledgerPath = configuration["FAULT_LEDGER"] ?? throw new InvalidOperationException("FAULT_LEDGER is not set");
var queue = configuration["FAULT_QUEUE"] ?? throw new InvalidOperationException("FAULT_QUEUE is not set");

var services = new ServiceCollection();
services.AddLogging(logging => logging
    .AddSimpleConsole(console =>
    {
        console.SingleLine = true;
        console.TimestampFormat = "HH:mm:ss.fff ";
        console.UseUtcTimestamp = true;
    })
    .SetMinimumLevel(LogLevel.Information));
services.AddSingleton(new RunLedger(ledgerPath));
services.AddConveyor(configuration).AddJobHandler<RecordingHandler>(RecordingHandler.Type);
await using var provider = services.BuildServiceProvider(new ServiceProviderOptions { ValidateOnBuild = true });
var processor = provider.GetRequiredService<Processor>();
var logger = provider.GetRequiredService<ILoggerFactory>().CreateLogger("FaultWorker");

using var stop = new CancellationTokenSource();
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
{
    context.Cancel = true;
    stop.Cancel();
});
if (int.TryParse(configuration["FAULT_PARENT"], out var parent))
{
    _ = WatchParentAsync(parent);
}

logger.LogInformation("Fault worker {Pid} serving {Queue}", Environment.ProcessId, queue);
await KeepRunningAsync();
return 0;

async Task KeepRunningAsync()
{
    while (!stop.IsCancellationRequested)
    {
        try
        {
            var result = await processor.RunSessionAsync(queue, duration: null, stop.Token);
            logger.LogInformation("Session ended: {Result}", result);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            return;
        }
#pragma warning disable CA1031 // Like the self-host: a failed session is logged and started again.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            logger.LogError(ex, "The processor session on {Queue} stopped unexpectedly; restarting", queue);
            await Task.Delay(TimeSpan.FromSeconds(1), CancellationToken.None);
        }
    }
}

// Orphaned workers must not outlive a test run that crashed.
static async Task WatchParentAsync(int pid)
{
    while (Directory.Exists($"/proc/{pid}"))
    {
        await Task.Delay(TimeSpan.FromSeconds(1));
    }
    Environment.Exit(3);
}
