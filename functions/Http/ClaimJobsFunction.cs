using Conveyor.Api;
using Conveyor.Queue;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;
using Microsoft.Extensions.Options;

namespace Conveyor.Functions.Http;

public sealed class ClaimJobsFunction(RuntimeClaims claims, IOptions<ApiOptions> options)
{
    [Function("ClaimJobs")]
    public async Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Function, "post", Route = "runtimes/{id}/claims")] HttpRequest req, string id, CancellationToken cancellationToken)
        => await RuntimesApi.ClaimAsync(id, req, claims, options, cancellationToken);
}
