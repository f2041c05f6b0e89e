using Conveyor.Dashboard;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Dashboard;

/// <summary>The dashboard's script and style sheet. Anonymous for the Functions host (App Service authentication still guards it).</summary>
public sealed class DashboardAssetFunction
{
    [Function("DashboardAsset")]
    public static IResult Run(
        [HttpTrigger(AuthorizationLevel.Anonymous, "get", Route = "dashboard/assets/{name}")] HttpRequest req, string name)
        => DashboardPages.Asset(name);
}
