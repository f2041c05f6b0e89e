using System.Collections.Concurrent;
using System.Diagnostics;
using Conveyor.Storage;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Conveyor.Queue;

/// <summary>Adds jobs to queues: now, at a time, or after a delay; idempotent by job id.</summary>
public sealed class Producer(RedisConnection redis, IOptions<QueueOptions> options, QueueAdmin admin)
{
    // Queues this process has added to conveyor:queues. That set lives in another hash slot than the
    // queue's keys, so it is written beside the enqueue script rather than inside it.
    private readonly ConcurrentDictionary<string, Task> _knownQueues = new(StringComparer.Ordinal);

    /// <summary>Enqueues one job.</summary>
    /// <exception cref="ConveyorValidationException">The queue or the job is invalid; nothing was written.</exception>
    /// <exception cref="EnqueueUnconfirmedException">Redis did not confirm: the job may be stored; retry with its id.</exception>
    public async Task<EnqueueResult> EnqueueAsync(string queue, JobRequest job, CancellationToken cancellationToken = default)
    {
        var results = await EnqueueBatchAsync(queue, [job], cancellationToken);
        return results[0];
    }

    /// <summary>Enqueues up to 1,000 jobs in one script call. Results come in request order.</summary>
    /// <exception cref="ConveyorValidationException">The queue or any job is invalid; nothing was written.</exception>
    /// <exception cref="EnqueueUnconfirmedException">Redis did not confirm: the jobs may be stored; retry with their ids.</exception>
    public async Task<IReadOnlyList<EnqueueResult>> EnqueueBatchAsync(
        string queue, IReadOnlyList<JobRequest> jobs, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(jobs);
        JobValidation.QueueName(queue);
        if (jobs.Count is 0 or > JobValidation.MaxBatchSize)
        {
            throw new ConveyorValidationException("jobs", $"must hold 1 to {JobValidation.MaxBatchSize} jobs");
        }
        var settings = options.Value;
        var single = jobs.Count == 1;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < jobs.Count; i++)
        {
            var prefix = single ? "" : $"jobs[{i}].";
            JobValidation.Request(jobs[i], settings, prefix);
            if (jobs[i].Id is { } id && !seen.Add(id))
            {
                throw new ConveyorValidationException(prefix + "id", "appears twice in one batch");
            }
        }
        cancellationToken.ThrowIfCancellationRequested();
        var ids = jobs.Select(job => job.Id ?? Guid.CreateVersion7().ToString()).ToArray();
        try
        {
            return await EnqueueValidatedAsync(queue, jobs, ids, cancellationToken);
        }
        catch (Exception ex) when (ex is RedisConnectionException or RedisTimeoutException)
        {
            // A script whose reply was lost may have run: the caller must retry with these ids, not new ones.
            throw new EnqueueUnconfirmedException(queue, ids, ex);
        }
    }

    private async Task<IReadOnlyList<EnqueueResult>> EnqueueValidatedAsync(
        string queue, IReadOnlyList<JobRequest> jobs, string[] ids, CancellationToken cancellationToken)
    {
        var settings = options.Value;
        var keys = new QueueKeys(queue);
        using var activity = ConveyorTelemetry.Source.StartActivity($"enqueue {queue}", ActivityKind.Producer);
        activity?.SetTag("conveyor.queue", queue);
        activity?.SetTag("messaging.batch.message_count", jobs.Count);
        var traceParent = Activity.Current?.Id;

        var args = new RedisValue[1 + 3 * jobs.Count];
        args[0] = keys.Signal.ToString();
        for (var i = 0; i < jobs.Count; i++)
        {
            var job = jobs[i];
            args[1 + 3 * i] = ids[i];
            args[2 + 3 * i] = JobRecord.OpenJson(job.Type, job.Payload, job.MaxAttempts ?? settings.DefaultMaxAttempts, traceParent);
            args[3 + 3 * i] = job switch
            {
                { Delay: { } delay } => "+" + (long)delay.TotalMilliseconds,
                { RunAt: { } runAt } => "@" + runAt.ToUnixTimeMilliseconds(),
                _ => "",
            };
        }

        var db = await redis.GetDatabaseAsync();
        await RememberQueueAsync(db, queue);
        var reply = (RedisResult[])(await LuaScripts.Enqueue.RunAsync(db, [keys.Jobs, keys.Ready, keys.Scheduled], args))!;

        var results = new EnqueueResult[jobs.Count];
        var added = 0;
        for (var i = 0; i < jobs.Count; i++)
        {
            var outcome = (int)reply[i + 1];
            if (outcome == 0)
            {
                // Rare: look the existing job up so the caller learns its state.
                var existing = await admin.GetJobAsync(queue, ids[i], cancellationToken);
                results[i] = new EnqueueResult(ids[i], existing?.State, Duplicate: true);
            }
            else
            {
                added++;
                results[i] = new EnqueueResult(ids[i], outcome == 1 ? JobState.Ready : JobState.Scheduled, Duplicate: false);
            }
        }
        ConveyorTelemetry.Enqueued.Add(added, ConveyorTelemetry.QueueTag(queue));
        return results;
    }

    private async Task RememberQueueAsync(IDatabase db, string queue)
    {
        var remembered = _knownQueues.GetOrAdd(queue, q => db.SetAddAsync(QueueKeys.Queues, q));
        try
        {
            await remembered;
        }
        catch
        {
            _knownQueues.TryRemove(queue, out _);
            throw;
        }
    }
}
