using Azure.Core;
using Conveyor.Dashboard;
using Conveyor.Functions.Queues;
using Conveyor.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Functions;

/// <summary>
/// The Functions app's service registrations, in one place so tests resolve every function class
/// from exactly what Program.cs registers.
/// </summary>
public static class FunctionsApp
{
    public static ConveyorBuilder AddConveyorFunctions(this IServiceCollection services, IConfiguration configuration)
    {
        // The dashboard sits behind App Service authentication (Microsoft Entra), not behind its own API-key sign-in.
        services.UseEasyAuthForDashboard();
        return services.AddConveyor(configuration)
            .AddJobHandler<EchoJobHandler>("echo")
            .UseWakeSender(services => new StorageWakeSender(configuration, services.GetRequiredService<TokenCredential>()));
    }
}
