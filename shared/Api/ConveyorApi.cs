using Microsoft.AspNetCore.Routing;

namespace Conveyor.Api;

/// <summary>
/// The whole HTTP surface under <c>/api</c>, as the self-host maps it. The OpenAPI contract is built from these routes;
/// a route mapped anywhere else is missing from it (a test says so), unless it is excluded from the description.
/// </summary>
public static class ConveyorApi
{
    public static IEndpointRouteBuilder MapConveyorApi(this IEndpointRouteBuilder app)
    {
        app.MapHealthApi();
        app.MapJobsApi();
        app.MapRuntimesApi();
        app.MapOpenApiContract();
        return app;
    }
}
