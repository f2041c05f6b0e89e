using Conveyor.Api;
using Conveyor.Queue;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Http;

public sealed class RequeueDeadJobFunction(QueueAdmin admin)
{
    [Function("RequeueDeadJob")]
    public async Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Function, "post", Route = "queues/{queue}/dead/{id}/requeue")] HttpRequest req, string queue, string id, CancellationToken cancellationToken)
        => await JobsApi.RequeueDeadAsync(queue, id, admin, cancellationToken);
}
