using Conveyor.Dashboard;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Dashboard;

/// <summary>Sign-in: App Service's own, here. Anonymous for the Functions host: App Service authentication guards it, and the handler checks its principal.</summary>
public sealed class DashboardSignInPageFunction(DashboardPages pages)
{
    [Function("DashboardSignInPage")]
    public Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Anonymous, "get", Route = "dashboard/signin")] HttpRequest req, CancellationToken cancellationToken)
        => pages.SignInPageAsync(req.HttpContext, cancellationToken);
}
