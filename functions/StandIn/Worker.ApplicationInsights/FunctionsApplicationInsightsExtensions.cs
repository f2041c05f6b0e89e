// Stand-in for package Microsoft.Azure.Functions.Worker.ApplicationInsights 2.51.0.
// Mirrors Azure/azure-functions-dotnet-worker src/DotNetWorker.ApplicationInsights/FunctionsApplicationInsightsExtensions.cs.
// (AddApplicationInsightsTelemetryWorkerService is not stood in: Microsoft.ApplicationInsights.WorkerService is
// referenced for real in both build modes.) Declarations only: see ../README.md.
using Microsoft.Extensions.DependencyInjection;

namespace Microsoft.Azure.Functions.Worker;

public static class FunctionsApplicationInsightsExtensions
{
    public static IServiceCollection ConfigureFunctionsApplicationInsights(this IServiceCollection services)
        => throw StandIn.NotDeployable();
}
