// Stand-in for package Microsoft.Azure.Functions.Worker.Core 2.52.0.
// Mirrors Azure/azure-functions-dotnet-worker src/DotNetWorker.Core/Hosting/IFunctionsWorkerApplicationBuilder.cs.
// Declarations only: see ../README.md.
using Microsoft.Azure.Functions.Worker.Middleware;
using Microsoft.Extensions.DependencyInjection;

namespace Microsoft.Azure.Functions.Worker;

public interface IFunctionsWorkerApplicationBuilder
{
    IServiceCollection Services { get; }

    IFunctionsWorkerApplicationBuilder Use(Func<FunctionExecutionDelegate, FunctionExecutionDelegate> middleware);
}
