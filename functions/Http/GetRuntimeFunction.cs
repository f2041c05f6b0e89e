using Conveyor.Api;
using Conveyor.Presence;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Http;

public sealed class GetRuntimeFunction(RuntimeRegistry registry)
{
    [Function("GetRuntime")]
    public async Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Function, "get", Route = "runtimes/{id}")] HttpRequest req, string id, CancellationToken cancellationToken)
        => await RuntimesApi.GetAsync(id, registry, cancellationToken);
}
