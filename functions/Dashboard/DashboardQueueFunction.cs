using Conveyor.Dashboard;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Dashboard;

/// <summary>A queue's page. Anonymous for the Functions host: App Service authentication guards it, and the handler checks its principal.</summary>
public sealed class DashboardQueueFunction(DashboardPages pages)
{
    [Function("DashboardQueue")]
    public Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Anonymous, "get", Route = "dashboard/queues/{queue}")] HttpRequest req, string queue, CancellationToken cancellationToken)
        => pages.QueueAsync(req.HttpContext, queue, cancellationToken);
}
