using Conveyor.Api;
using Conveyor.Queue;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Http;

public sealed class ListDeadJobsFunction(QueueAdmin admin)
{
    [Function("ListDeadJobs")]
    public async Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Function, "get", Route = "queues/{queue}/dead")] HttpRequest req, string queue, CancellationToken cancellationToken)
        => await JobsApi.ListDeadAsync(queue, req, admin, cancellationToken);
}
