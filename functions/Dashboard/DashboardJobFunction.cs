using Conveyor.Dashboard;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Dashboard;

/// <summary>A job's page. Anonymous for the Functions host: App Service authentication guards it, and the handler checks its principal.</summary>
public sealed class DashboardJobFunction(DashboardPages pages)
{
    [Function("DashboardJob")]
    public Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Anonymous, "get", Route = "dashboard/queues/{queue}/jobs/{id}")] HttpRequest req, string queue, string id, CancellationToken cancellationToken)
        => pages.JobAsync(req.HttpContext, queue, id, cancellationToken);
}
