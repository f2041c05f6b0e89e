using Conveyor.Api;
using Conveyor.Presence;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Http;

public sealed class DeleteRuntimeFunction(RuntimeRegistry registry)
{
    [Function("DeleteRuntime")]
    public async Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Function, "delete", Route = "runtimes/{id}")] HttpRequest req, string id, CancellationToken cancellationToken)
        => await RuntimesApi.DeleteAsync(id, registry, cancellationToken);
}
