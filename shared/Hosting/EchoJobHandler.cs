using Conveyor.Queue;
using Microsoft.Extensions.Logging;

namespace Conveyor.Hosting;

/// <summary>A sample handler for job type <c>echo</c>: logs the payload. Both hosts register it so a fresh install has something to run.</summary>
public sealed class EchoJobHandler(ILogger<EchoJobHandler> logger) : IJobHandler
{
    public Task HandleAsync(Job job, CancellationToken cancellationToken)
    {
        logger.LogInformation("echo job {Id} (attempt {Attempt}) on {Queue}: {Payload}", job.Id, job.Attempt, job.Queue, job.Payload);
        return Task.CompletedTask;
    }
}
