using Conveyor.Api;
using Conveyor.Queue;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Http;

public sealed class GetQueueHistoryFunction(QueueAdmin admin)
{
    [Function("GetQueueHistory")]
    public async Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Function, "get", Route = "queues/{queue}/history")] HttpRequest req, string queue, CancellationToken cancellationToken)
        => await JobsApi.GetQueueHistoryAsync(queue, admin, cancellationToken);
}
