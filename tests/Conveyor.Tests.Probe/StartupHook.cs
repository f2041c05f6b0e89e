using System.Diagnostics;
using Conveyor.Hosting;
using Conveyor.Tests.Probe;
using Microsoft.Extensions.Hosting;

/// <summary>
/// A .NET startup hook (<c>DOTNET_STARTUP_HOOKS</c>): the runtime calls <see cref="Initialize"/> before the worker's
/// Main. It listens for the "HostBuilding" event that Microsoft.Extensions.Hosting raises when a host is built (the
/// hook ASP.NET Core's WebApplicationFactory uses too) and registers <see cref="ProbeJobHandler"/> there, after
/// everything Program.cs registered. The runtime requires this exact name, in no namespace.
/// </summary>
internal static class StartupHook
{
    public static void Initialize() => DiagnosticListener.AllListeners.Subscribe(new HostingListeners());

    private sealed class HostingListeners : IObserver<DiagnosticListener>
    {
        public void OnNext(DiagnosticListener value)
        {
            if (value.Name == "Microsoft.Extensions.Hosting")
            {
                value.Subscribe(new HostBuilding());
            }
        }

        public void OnCompleted()
        {
        }

        public void OnError(Exception error)
        {
        }
    }

    private sealed class HostBuilding : IObserver<KeyValuePair<string, object?>>
    {
        public void OnNext(KeyValuePair<string, object?> value)
        {
            if (value is { Key: "HostBuilding", Value: IHostBuilder builder })
            {
                builder.ConfigureServices(services => new ConveyorBuilder(services).AddJobHandler<ProbeJobHandler>(ProbeJobHandler.Type));
            }
        }

        public void OnCompleted()
        {
        }

        public void OnError(Exception error)
        {
        }
    }
}
