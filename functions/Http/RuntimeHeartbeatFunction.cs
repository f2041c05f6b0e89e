using Conveyor.Api;
using Conveyor.Presence;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Http;

public sealed class RuntimeHeartbeatFunction(HeartbeatService heartbeats)
{
    [Function("RuntimeHeartbeat")]
    public async Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Function, "post", Route = "runtimes/{id}/heartbeat")] HttpRequest req, string id, CancellationToken cancellationToken)
        => await RuntimesApi.HeartbeatAsync(id, req, heartbeats, cancellationToken);
}
