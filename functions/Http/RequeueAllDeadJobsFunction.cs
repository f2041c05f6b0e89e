using Conveyor.Api;
using Conveyor.Queue;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Http;

public sealed class RequeueAllDeadJobsFunction(QueueAdmin admin)
{
    [Function("RequeueAllDeadJobs")]
    public async Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Function, "post", Route = "queues/{queue}/dead/requeue")] HttpRequest req, string queue, CancellationToken cancellationToken)
        => await JobsApi.RequeueAllDeadAsync(queue, admin, cancellationToken);
}
