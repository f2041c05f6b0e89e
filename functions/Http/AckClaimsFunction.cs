using Conveyor.Api;
using Conveyor.Queue;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;
using Microsoft.Extensions.Options;

namespace Conveyor.Functions.Http;

public sealed class AckClaimsFunction(RuntimeClaims claims, IOptions<ApiOptions> options)
{
    [Function("AckClaims")]
    public async Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Function, "post", Route = "runtimes/{id}/claims/ack")] HttpRequest req, string id, CancellationToken cancellationToken)
        => await RuntimesApi.AckAsync(id, req, claims, options, cancellationToken);
}
