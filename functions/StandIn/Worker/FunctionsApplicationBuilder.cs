// Stand-in for package Microsoft.Azure.Functions.Worker 2.52.0.
// Mirrors Azure/azure-functions-dotnet-worker src/DotNetWorker/Builder/FunctionsApplicationBuilder.cs: the same interfaces, the same public members
// (Configuration is public as ConfigurationManager and explicit as IHostApplicationBuilder.Configuration, as in the real
// type). Declarations only: see ../README.md.
using Microsoft.Azure.Functions.Worker.Middleware;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Microsoft.Azure.Functions.Worker.Builder;

public class FunctionsApplicationBuilder : IHostApplicationBuilder, IFunctionsWorkerApplicationBuilder
{
    internal FunctionsApplicationBuilder(string[]? args)
    {
        throw StandIn.NotDeployable();
    }

    public IDictionary<object, object> Properties => throw StandIn.NotDeployable();

    IConfigurationManager IHostApplicationBuilder.Configuration => Configuration;

    public ConfigurationManager Configuration => throw StandIn.NotDeployable();

    public IHostEnvironment Environment => throw StandIn.NotDeployable();

    public ILoggingBuilder Logging => throw StandIn.NotDeployable();

    public IMetricsBuilder Metrics => throw StandIn.NotDeployable();

    public IServiceCollection Services => throw StandIn.NotDeployable();

    public IHost Build() => throw StandIn.NotDeployable();

    public void ConfigureContainer<TContainerBuilder>(IServiceProviderFactory<TContainerBuilder> factory, Action<TContainerBuilder>? configure = null)
        where TContainerBuilder : notnull
        => throw StandIn.NotDeployable();

    public IFunctionsWorkerApplicationBuilder Use(Func<FunctionExecutionDelegate, FunctionExecutionDelegate> middleware)
        => throw StandIn.NotDeployable();
}
