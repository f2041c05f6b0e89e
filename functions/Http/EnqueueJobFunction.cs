using Conveyor.Api;
using Conveyor.Queue;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;
using Microsoft.Extensions.Options;

namespace Conveyor.Functions.Http;

public sealed class EnqueueJobFunction(Producer producer, IOptions<ApiOptions> options)
{
    [Function("EnqueueJob")]
    public async Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Function, "post", Route = "queues/{queue}/jobs")] HttpRequest req, string queue, CancellationToken cancellationToken)
        => await JobsApi.EnqueueAsync(queue, req, producer, options, cancellationToken);
}
