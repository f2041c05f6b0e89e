using Conveyor.Api;
using Conveyor.Queue;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;
using Microsoft.Extensions.Options;

namespace Conveyor.Functions.Http;

public sealed class ExtendClaimsFunction(RuntimeClaims claims, IOptions<ApiOptions> options)
{
    [Function("ExtendClaims")]
    public async Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Function, "post", Route = "runtimes/{id}/claims/extend")] HttpRequest req, string id, CancellationToken cancellationToken)
        => await RuntimesApi.ExtendAsync(id, req, claims, options, cancellationToken);
}
