using Conveyor.Dashboard;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Dashboard;

/// <summary>The dashboard's overview page. Anonymous for the Functions host: App Service authentication guards it, and the handler checks its principal.</summary>
public sealed class DashboardOverviewFunction(DashboardPages pages)
{
    [Function("DashboardOverview")]
    public Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Anonymous, "get", Route = "dashboard")] HttpRequest req, CancellationToken cancellationToken)
        => pages.OverviewAsync(req.HttpContext, cancellationToken);
}
