using Conveyor.Api;
using Conveyor.Queue;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Http;

public sealed class ListQueuesFunction(QueueAdmin admin)
{
    [Function("ListQueues")]
    public async Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Function, "get", Route = "queues")] HttpRequest req, CancellationToken cancellationToken)
        => await JobsApi.ListQueuesAsync(admin, cancellationToken);
}
