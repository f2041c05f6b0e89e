using Conveyor.Api;
using Conveyor.Queue;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;
using Microsoft.Extensions.Options;

namespace Conveyor.Functions.Http;

public sealed class FailClaimsFunction(RuntimeClaims claims, IOptions<ApiOptions> options)
{
    [Function("FailClaims")]
    public async Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Function, "post", Route = "runtimes/{id}/claims/fail")] HttpRequest req, string id, CancellationToken cancellationToken)
        => await RuntimesApi.FailAsync(id, req, claims, options, cancellationToken);
}
