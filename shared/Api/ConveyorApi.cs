using Microsoft.AspNetCore.Routing;

namespace Conveyor.Api;

/// <summary>The whole HTTP surface under <c>/api</c>, as the self-host maps it.</summary>
public static class ConveyorApi
{
    public static IEndpointRouteBuilder MapConveyorApi(this IEndpointRouteBuilder app)
    {
        app.MapHealthApi();
        app.MapJobsApi();
        app.MapRuntimesApi();
        return app;
    }
}
