// Stand-in for package Microsoft.Azure.Functions.Worker.Extensions.Http.AspNetCore 2.1.1.
// Mirrors Azure/azure-functions-dotnet-worker extensions/Worker.Extensions.Http.AspNetCore/src/FunctionsApplicationBuilderAspNetCoreExtensions.cs.
// Declarations only: see ../README.md.
namespace Microsoft.Azure.Functions.Worker.Builder;

public static class FunctionsApplicationBuilderAspNetCoreExtensions
{
    public static FunctionsApplicationBuilder ConfigureFunctionsWebApplication(this FunctionsApplicationBuilder builder)
        => throw StandIn.NotDeployable();
}
