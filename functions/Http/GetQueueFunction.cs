using Conveyor.Api;
using Conveyor.Queue;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Http;

public sealed class GetQueueFunction(QueueAdmin admin)
{
    [Function("GetQueue")]
    public async Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Function, "get", Route = "queues/{queue}")] HttpRequest req, string queue, CancellationToken cancellationToken)
        => await JobsApi.GetQueueAsync(queue, admin, cancellationToken);
}
