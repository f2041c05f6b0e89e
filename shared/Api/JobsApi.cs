using Conveyor.Queue;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;

namespace Conveyor.Api;

/// <summary>Queues and jobs over HTTP. Every route is here; the Functions app calls the same handlers.</summary>
public static class JobsApi
{
    public static IEndpointRouteBuilder MapJobsApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/queues").WithTags(OpenApiContract.QueuesTag)
            .Answers(Problems.Catalog.Unavailable, Problems.Catalog.Internal);
        api.MapGet("", ListQueuesAsync).WithName("ListQueues")
            .WithSummary("List every known queue with its counts");
        api.MapGet("/{queue}", GetQueueAsync).WithName("GetQueue").Answers(Problems.Catalog.Validation)
            .WithSummary("Get one queue's counts")
            .WithDescription("All counts are zero for a queue that never saw a job. The counts are read in one round trip, not as one atomic snapshot.");
        api.MapGet("/{queue}/history", GetQueueHistoryAsync).WithName("GetQueueHistory").Answers(Problems.Catalog.Validation)
            .WithSummary("Get one queue's jobs per minute over the last hour")
            .WithDescription($"""
                Jobs enqueued (a duplicate id is not counted), processed (acked) and failed (attempts that ended in an error: the
                handler failed, or its consumer died or lost the claim) per minute of Redis time, {QueueHistory.Minutes} minutes
                from `from`, the current minute last. All zero for a queue without traffic in that hour.
                """);
        api.MapPost("/{queue}/jobs", EnqueueAsync).WithName("EnqueueJob").WithJsonBody<EnqueueJobRequest>()
            .Answers(Problems.Catalog.Validation, Problems.Catalog.QueueLimit)
            .WithSummary("Enqueue a job")
            .WithDescription("""
                202 with the new job and its `Location`; 200 with `duplicate: true` when a job with this `id` exists (nothing is
                added; `state` is null when it finished meanwhile). A 503 does not mean the job was not stored: retry with the
                `ids` of the problem (or always send your own `id`), and the retry adds nothing twice.
                """);
        api.MapPost("/{queue}/jobs/batch", EnqueueBatchAsync).WithName("EnqueueJobs").WithJsonBody<EnqueueBatchRequest>()
            .Answers(Problems.Catalog.Validation, Problems.Catalog.QueueLimit)
            .WithSummary("Enqueue up to 1000 jobs at once")
            .WithDescription("""
                One script call; the results are in request order. The batch is validated as a whole: one bad item rejects all
                of them, and the problem names the field as `jobs[3].payload`. Retry a 503 with the problem's `ids`.
                """);
        api.MapGet("/{queue}/jobs/{id}", GetJobAsync).WithName("GetJob").Answers(Problems.Catalog.Validation, Problems.Catalog.NotFound)
            .WithSummary("Get a job")
            .WithDescription("404 when no such job exists: it was never enqueued, or it ran and was acked (an acked job is deleted).");
        api.MapGet("/{queue}/dead", ListDeadAsync).WithName("ListDeadJobs").Answers(Problems.Catalog.Validation)
            .WithQueryParameter("page", "Page number, from 1.", OpenApiExtensions.Integer(1, Paging.MaxPage, 1))
            .WithQueryParameter("pageSize", "Jobs per page.", OpenApiExtensions.Integer(1, Paging.MaxPageSize, Paging.DefaultPageSize))
            .WithSummary("List dead jobs, most recent death first");
        api.MapPost("/{queue}/dead/requeue", RequeueAllDeadAsync).WithName("RequeueAllDeadJobs").Answers(Problems.Catalog.Validation)
            .WithSummary("Requeue every dead job of the queue")
            .WithDescription("Each job goes back to the ready list with a fresh set of attempts.");
        api.MapPost("/{queue}/dead/{id}/requeue", RequeueDeadAsync).WithName("RequeueDeadJob").Answers(Problems.Catalog.Validation, Problems.Catalog.NotFound)
            .WithSummary("Requeue one dead job")
            .WithDescription("The job goes back to the ready list with a fresh set of attempts; 404 when it is not dead.");
        api.MapDelete("/{queue}/dead/{id}", DeleteDeadAsync).WithName("DeleteDeadJob").Answers(Problems.Catalog.Validation, Problems.Catalog.NotFound)
            .WithSummary("Delete one dead job for good")
            .WithDescription("404 when it is not dead.");
        return app;
    }

    /// <summary>202 with the new job, or 200 with the existing one's state when the id was taken.</summary>
    public static Task<Results<Accepted<EnqueueResult>, Ok<EnqueueResult>, ProblemHttpResult>> EnqueueAsync(
        string queue, HttpRequest request, Producer producer, IOptions<ApiOptions> options, CancellationToken cancellationToken) =>
        Problems.GuardAsync<Accepted<EnqueueResult>, Ok<EnqueueResult>>(async () =>
        {
            var (body, problem) = await RequestBody.ReadAsync(request, ApiJson.Default.EnqueueJobRequest, options.Value.MaxRequestBytes, cancellationToken);
            if (problem is not null)
            {
                return problem;
            }
            var result = await producer.EnqueueAsync(queue, ToJob(body!, ""), cancellationToken);
            return result.Duplicate ? TypedResults.Ok(result) : TypedResults.Accepted(JobLocation(queue, result.Id), result);
        });

    /// <summary>Up to 1,000 jobs in one script call; per-item results in request order.</summary>
    public static Task<Results<Ok<EnqueueBatchResponse>, ProblemHttpResult>> EnqueueBatchAsync(
        string queue, HttpRequest request, Producer producer, IOptions<ApiOptions> options, CancellationToken cancellationToken) =>
        Problems.GuardAsync<Ok<EnqueueBatchResponse>>(async () =>
        {
            var (body, problem) = await RequestBody.ReadAsync(request, ApiJson.Default.EnqueueBatchRequest, options.Value.MaxRequestBytes, cancellationToken);
            if (problem is not null)
            {
                return problem;
            }
            var jobs = body!.Jobs.Select((job, i) => ToJob(job, $"jobs[{i}].")).ToList();
            var results = await producer.EnqueueBatchAsync(queue, jobs, cancellationToken);
            return TypedResults.Ok(new EnqueueBatchResponse(results));
        });

    /// <summary>The job's state and record; 404 when unknown or already done.</summary>
    public static Task<Results<Ok<JobInfo>, ProblemHttpResult>> GetJobAsync(
        string queue, string id, QueueAdmin admin, CancellationToken cancellationToken) =>
        Problems.GuardAsync<Ok<JobInfo>>(async () =>
        {
            var job = await admin.GetJobAsync(queue, id, cancellationToken);
            return job is null ? Problems.NotFound($"No job '{id}' in queue '{queue}' (unknown, or finished)") : TypedResults.Ok(job);
        });

    /// <summary>Every known queue with its counts.</summary>
    public static Task<Results<Ok<QueueListResponse>, ProblemHttpResult>> ListQueuesAsync(QueueAdmin admin, CancellationToken cancellationToken) =>
        Problems.GuardAsync<Ok<QueueListResponse>>(async () =>
        {
            var names = await admin.ListQueuesAsync(cancellationToken);
            var stats = await Task.WhenAll(names.Select(name => admin.GetStatsAsync(name, cancellationToken)));
            return TypedResults.Ok(new QueueListResponse(stats));
        });

    /// <summary>One queue's counts (all zero for a queue that never saw a job).</summary>
    public static Task<Results<Ok<QueueStats>, ProblemHttpResult>> GetQueueAsync(string queue, QueueAdmin admin, CancellationToken cancellationToken) =>
        Problems.GuardAsync<Ok<QueueStats>>(async () => TypedResults.Ok(await admin.GetStatsAsync(queue, cancellationToken)));

    /// <summary>One queue's jobs per minute over the last hour (all zero for a queue without traffic).</summary>
    public static Task<Results<Ok<QueueHistory>, ProblemHttpResult>> GetQueueHistoryAsync(string queue, QueueAdmin admin, CancellationToken cancellationToken) =>
        Problems.GuardAsync<Ok<QueueHistory>>(async () => TypedResults.Ok(await admin.GetHistoryAsync(queue, cancellationToken)));

    /// <summary>Dead jobs, newest first: <c>?page=1&amp;pageSize=50</c> (page from 1, size 1–1000).</summary>
    public static Task<Results<Ok<DeadJobsResponse>, ProblemHttpResult>> ListDeadAsync(
        string queue, HttpRequest request, QueueAdmin admin, CancellationToken cancellationToken) =>
        Problems.GuardAsync<Ok<DeadJobsResponse>>(async () =>
        {
            var (page, pageSize) = Paging.Read(request.Query);
            var jobs = await admin.ListDeadAsync(queue, (page - 1) * pageSize, pageSize, cancellationToken);
            return TypedResults.Ok(new DeadJobsResponse(jobs, page, pageSize));
        });

    /// <summary>Gives one dead job a fresh set of attempts; 404 when it is not dead.</summary>
    public static Task<Results<Ok<RequeueResponse>, ProblemHttpResult>> RequeueDeadAsync(
        string queue, string id, QueueAdmin admin, CancellationToken cancellationToken) =>
        Problems.GuardAsync<Ok<RequeueResponse>>(async () =>
            await admin.RequeueDeadAsync(queue, id, cancellationToken)
                ? TypedResults.Ok(new RequeueResponse(1))
                : Problems.NotFound($"No dead job '{id}' in queue '{queue}'"));

    /// <summary>Gives every dead job of the queue a fresh set of attempts.</summary>
    public static Task<Results<Ok<RequeueResponse>, ProblemHttpResult>> RequeueAllDeadAsync(
        string queue, QueueAdmin admin, CancellationToken cancellationToken) =>
        Problems.GuardAsync<Ok<RequeueResponse>>(async () => TypedResults.Ok(new RequeueResponse(await admin.RequeueAllDeadAsync(queue, cancellationToken))));

    /// <summary>Deletes one dead job for good; 404 when it is not dead.</summary>
    public static Task<Results<NoContent, ProblemHttpResult>> DeleteDeadAsync(
        string queue, string id, QueueAdmin admin, CancellationToken cancellationToken) =>
        Problems.GuardAsync<NoContent>(async () =>
            await admin.DeleteDeadAsync(queue, id, cancellationToken)
                ? TypedResults.NoContent()
                : Problems.NotFound($"No dead job '{id}' in queue '{queue}'"));

    /// <summary>The job's URL. Queue names and job ids need no escaping (their alphabets are URL-safe): escaped all the same.</summary>
    private static string JobLocation(string queue, string id) => $"/api/queues/{Uri.EscapeDataString(queue)}/jobs/{Uri.EscapeDataString(id)}";

    private static JobRequest ToJob(EnqueueJobRequest? body, string prefix)
    {
        if (body is null)
        {
            // Only a batch item can be null: the body itself and its members are refused as malformed JSON.
            throw new ConveyorValidationException(prefix.TrimEnd('.'), "must be a job object, not null");
        }
        TimeSpan? delay = null;
        if (body.DelaySeconds is { } seconds)
        {
            if (!double.IsFinite(seconds) || seconds < 0 || seconds > JobValidation.MaxScheduleAhead.TotalSeconds)
            {
                throw new ConveyorValidationException(prefix + "delaySeconds", "must be between 0 and 31536000 (365 days)");
            }
            delay = TimeSpan.FromSeconds(seconds);
        }
        return new JobRequest(body.Type, body.Payload.GetRawText())
        {
            Id = body.Id,
            RunAt = body.RunAt,
            Delay = delay,
            MaxAttempts = body.MaxAttempts,
        };
    }
}
