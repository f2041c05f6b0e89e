using Conveyor.Dashboard;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Dashboard;

/// <summary>Signs out through App Service's logout (form post, CSRF token). Anonymous for the Functions host: App Service authentication guards it, and the handler checks its principal.</summary>
public sealed class DashboardSignOutFunction(DashboardPages pages)
{
    [Function("DashboardSignOut")]
    public Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Anonymous, "post", Route = "dashboard/signout")] HttpRequest req, CancellationToken cancellationToken)
        => pages.SignOutAsync(req.HttpContext, cancellationToken);
}
