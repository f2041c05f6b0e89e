using Conveyor.Dashboard;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Dashboard;

/// <summary>Sign-in post: App Service's own sign-in, here. Anonymous for the Functions host: App Service authentication guards it, and the handler checks its principal.</summary>
public sealed class DashboardSignInFunction(DashboardPages pages)
{
    [Function("DashboardSignIn")]
    public Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Anonymous, "post", Route = "dashboard/signin")] HttpRequest req, CancellationToken cancellationToken)
        => pages.SignInAsync(req.HttpContext, cancellationToken);
}
