using Conveyor.Api;
using Conveyor.Queue;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;
using Microsoft.Extensions.Options;

namespace Conveyor.Functions.Http;

public sealed class EnqueueJobsFunction(Producer producer, IOptions<ApiOptions> options)
{
    [Function("EnqueueJobs")]
    public async Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Function, "post", Route = "queues/{queue}/jobs/batch")] HttpRequest req, string queue, CancellationToken cancellationToken)
        => await JobsApi.EnqueueBatchAsync(queue, req, producer, options, cancellationToken);
}
