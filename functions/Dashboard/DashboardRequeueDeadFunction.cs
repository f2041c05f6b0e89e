using Conveyor.Dashboard;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Dashboard;

/// <summary>Requeues one dead job (form post, CSRF token). Anonymous for the Functions host: App Service authentication guards it, and the handler checks its principal.</summary>
public sealed class DashboardRequeueDeadFunction(DashboardPages pages)
{
    [Function("DashboardRequeueDead")]
    public Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Anonymous, "post", Route = "dashboard/queues/{queue}/dead/{id}/requeue")] HttpRequest req, string queue, string id, CancellationToken cancellationToken)
        => pages.RequeueDeadAsync(req.HttpContext, queue, id, cancellationToken);
}
