using Conveyor.Api;
using Conveyor.Queue;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Http;

public sealed class DeleteDeadJobFunction(QueueAdmin admin)
{
    [Function("DeleteDeadJob")]
    public async Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Function, "delete", Route = "queues/{queue}/dead/{id}")] HttpRequest req, string queue, string id, CancellationToken cancellationToken)
        => await JobsApi.DeleteDeadAsync(queue, id, admin, cancellationToken);
}
