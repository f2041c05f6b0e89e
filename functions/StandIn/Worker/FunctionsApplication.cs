// Stand-in for package Microsoft.Azure.Functions.Worker 2.52.0.
// Mirrors Azure/azure-functions-dotnet-worker src/DotNetWorker/Builder/FunctionsApplication.cs.
// Declarations only: see ../README.md.
namespace Microsoft.Azure.Functions.Worker.Builder;

public class FunctionsApplication
{
    public static FunctionsApplicationBuilder CreateBuilder(string[] args)
        => throw StandIn.NotDeployable();
}
