// Stand-in for package Microsoft.Azure.Functions.Worker.Extensions.Http.AspNetCore 2.1.1.
// Mirrors Azure/azure-functions-dotnet-worker extensions/Worker.Extensions.Http.AspNetCore/src/FunctionContextExtensions.cs
// (GetHttpContext only). Declarations only: see ../README.md.
using Microsoft.AspNetCore.Http;

namespace Microsoft.Azure.Functions.Worker;

public static class FunctionContextExtensions
{
    public static HttpContext? GetHttpContext(this FunctionContext context)
        => throw StandIn.NotDeployable();
}
