using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Conveyor.Dashboard;

/// <summary>
/// The dashboard's routes on the self-host, under <c>/api/dashboard</c> like the Functions app's (its route prefix is
/// <c>api</c>). Left out of the OpenAPI contract (HTML for browsers, not an API) and passed by the API-key middleware
/// (<c>AllowAnonymous</c>): <see cref="DashboardAccess"/> checks every page and action itself, the same way on both hosts.
/// </summary>
public static class DashboardRoutes
{
    public static IEndpointRouteBuilder MapConveyorDashboard(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup(DashboardAccess.BasePath).ExcludeFromDescription().AllowAnonymous();
        group.MapGet("", (HttpContext http, DashboardPages pages, CancellationToken ct) => pages.OverviewAsync(http, ct));
        group.MapGet("/queues/{queue}", (HttpContext http, string queue, DashboardPages pages, CancellationToken ct) => pages.QueueAsync(http, queue, ct));
        group.MapGet("/queues/{queue}/jobs/{id}", (HttpContext http, string queue, string id, DashboardPages pages, CancellationToken ct) => pages.JobAsync(http, queue, id, ct));
        group.MapGet("/queues/{queue}/find", (HttpContext http, string queue, DashboardPages pages, CancellationToken ct) => pages.FindJobAsync(http, queue, ct));
        group.MapPost("/queues/{queue}/dead/{id}/requeue", (HttpContext http, string queue, string id, DashboardPages pages, CancellationToken ct) => pages.RequeueDeadAsync(http, queue, id, ct));
        group.MapPost("/queues/{queue}/dead/{id}/delete", (HttpContext http, string queue, string id, DashboardPages pages, CancellationToken ct) => pages.DeleteDeadAsync(http, queue, id, ct));
        group.MapPost("/queues/{queue}/dead/requeue", (HttpContext http, string queue, DashboardPages pages, CancellationToken ct) => pages.RequeueAllDeadAsync(http, queue, ct));
        group.MapGet("/runtimes", (HttpContext http, DashboardPages pages, CancellationToken ct) => pages.RuntimesAsync(http, ct));
        group.MapGet("/signin", (HttpContext http, DashboardPages pages, CancellationToken ct) => pages.SignInPageAsync(http, ct));
        group.MapPost("/signin", (HttpContext http, DashboardPages pages, CancellationToken ct) => pages.SignInAsync(http, ct));
        group.MapPost("/signout", (HttpContext http, DashboardPages pages, CancellationToken ct) => pages.SignOutAsync(http, ct));
        group.MapGet("/assets/{name}", (string name) => DashboardPages.Asset(name));
        return app;
    }
}

/// <summary>The dashboard's services; <c>AddConveyor</c> registers them, so both hosts have them.</summary>
public static class DashboardServices
{
    public static IServiceCollection AddConveyorDashboard(this IServiceCollection services, IConfiguration configuration)
    {
        Hosting.ServiceCollectionExtensions.Bind<DashboardOptions>(services, configuration, DashboardOptions.Section);
        // App Service sets WEBSITE_AUTH_ENABLED=True when its authentication is on; an app setting cannot fake more than that.
        services.Configure<DashboardOptions>(options =>
            options.AppServiceAuthEnabled = string.Equals(configuration["WEBSITE_AUTH_ENABLED"], "true", StringComparison.OrdinalIgnoreCase));
        services.TryAddSingleton<QueueBrowser>();
        services.TryAddSingleton<DashboardAccess>();
        services.TryAddSingleton<DashboardPages>();
        return services;
    }

    /// <summary>Makes the dashboard trust App Service authentication's principal instead of its own sign-in (the Functions app).</summary>
    public static IServiceCollection UseEasyAuthForDashboard(this IServiceCollection services) =>
        services.PostConfigure<DashboardOptions>(options => options.Access = DashboardAccessMode.EasyAuth);
}
