using Conveyor.Api;
using Conveyor.Presence;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Http;

public sealed class ListRuntimesFunction(RuntimeRegistry registry)
{
    [Function("ListRuntimes")]
    public async Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Function, "get", Route = "runtimes")] HttpRequest req, CancellationToken cancellationToken)
        => await RuntimesApi.ListAsync(req, registry, cancellationToken);
}
