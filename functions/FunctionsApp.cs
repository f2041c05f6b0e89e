using Azure.Core;
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
    public static ConveyorBuilder AddConveyorFunctions(this IServiceCollection services, IConfiguration configuration) =>
        services.AddConveyor(configuration)
            .AddJobHandler<EchoJobHandler>("echo")
            .UseWakeSender(services => new StorageWakeSender(configuration, services.GetRequiredService<TokenCredential>()));
}
