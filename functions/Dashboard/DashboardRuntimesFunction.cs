using Conveyor.Dashboard;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Dashboard;

/// <summary>The consumers and runtimes page. Anonymous for the Functions host: App Service authentication guards it, and the handler checks its principal.</summary>
public sealed class DashboardRuntimesFunction(DashboardPages pages)
{
    [Function("DashboardRuntimes")]
    public Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Anonymous, "get", Route = "dashboard/runtimes")] HttpRequest req, CancellationToken cancellationToken)
        => pages.RuntimesAsync(req.HttpContext, cancellationToken);
}
