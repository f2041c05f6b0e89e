using Conveyor.Dashboard;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Dashboard;

/// <summary>Finds a job by id. Anonymous for the Functions host: App Service authentication guards it, and the handler checks its principal.</summary>
public sealed class DashboardFindJobFunction(DashboardPages pages)
{
    [Function("DashboardFindJob")]
    public Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Anonymous, "get", Route = "dashboard/queues/{queue}/find")] HttpRequest req, string queue, CancellationToken cancellationToken)
        => pages.FindJobAsync(req.HttpContext, queue, cancellationToken);
}
