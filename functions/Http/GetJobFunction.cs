using Conveyor.Api;
using Conveyor.Queue;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Http;

public sealed class GetJobFunction(QueueAdmin admin)
{
    [Function("GetJob")]
    public async Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Function, "get", Route = "queues/{queue}/jobs/{id}")] HttpRequest req, string queue, string id, CancellationToken cancellationToken)
        => await JobsApi.GetJobAsync(queue, id, admin, cancellationToken);
}
