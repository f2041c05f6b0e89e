using Conveyor.Dashboard;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Dashboard;

/// <summary>Deletes one dead job (form post, CSRF token). Anonymous for the Functions host: App Service authentication guards it, and the handler checks its principal.</summary>
public sealed class DashboardDeleteDeadFunction(DashboardPages pages)
{
    [Function("DashboardDeleteDead")]
    public Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Anonymous, "post", Route = "dashboard/queues/{queue}/dead/{id}/delete")] HttpRequest req, string queue, string id, CancellationToken cancellationToken)
        => pages.DeleteDeadAsync(req.HttpContext, queue, id, cancellationToken);
}
