using Conveyor.Dashboard;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Dashboard;

/// <summary>Requeues every dead job of a queue (form post, CSRF token). Anonymous for the Functions host: App Service authentication guards it, and the handler checks its principal.</summary>
public sealed class DashboardRequeueAllDeadFunction(DashboardPages pages)
{
    [Function("DashboardRequeueAllDead")]
    public Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Anonymous, "post", Route = "dashboard/queues/{queue}/dead/requeue")] HttpRequest req, string queue, CancellationToken cancellationToken)
        => pages.RequeueAllDeadAsync(req.HttpContext, queue, cancellationToken);
}
