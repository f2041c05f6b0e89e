using System.Diagnostics;
using Conveyor.Storage;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Conveyor.Queue;

/// <summary>
/// Adds jobs to queues: now, at a time, or after a delay; idempotent by job id. Jobs made ready may post wake-ups
/// (<see cref="WakeGate"/>) when the queue's backlog outgrows its live consumers.
/// </summary>
public sealed class Producer(RedisConnection redis, IOptions<QueueOptions> options, QueueAdmin admin, WakeGate? wake = null)
{
    /// <summary>Enqueues one job.</summary>
    /// <exception cref="ConveyorValidationException">The queue or the job is invalid; nothing was written.</exception>
    /// <exception cref="ConveyorQueueLimitException">The queue is new and the registry holds <see cref="QueueOptions.MaxQueues"/> queues; nothing was written.</exception>
    /// <exception cref="EnqueueUnconfirmedException">Redis did not confirm: the job may be stored; retry with its id.</exception>
    public async Task<EnqueueResult> EnqueueAsync(string queue, JobRequest job, CancellationToken cancellationToken = default)
    {
        var results = await EnqueueBatchAsync(queue, [job], cancellationToken);
        return results[0];
    }

    /// <summary>Enqueues up to 1,000 jobs in one script call. Results come in request order.</summary>
    /// <exception cref="ConveyorValidationException">The queue or any job is invalid; nothing was written.</exception>
    /// <exception cref="ConveyorQueueLimitException">The queue is new and the registry holds <see cref="QueueOptions.MaxQueues"/> queues; nothing was written.</exception>
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

        var args = new RedisValue[1 + 4 * jobs.Count];
        args[0] = keys.Signal.ToString();
        // Jobs of a batch mostly share their type and attempts, so their headers are one string.
        (string Type, int MaxAttempts, RedisValue Header) shared = ("", 0, RedisValue.Null);
        for (var i = 0; i < jobs.Count; i++)
        {
            var job = jobs[i];
            var maxAttempts = job.MaxAttempts ?? settings.DefaultMaxAttempts;
            if (shared.Header.IsNull || shared.MaxAttempts != maxAttempts || !string.Equals(shared.Type, job.Type, StringComparison.Ordinal))
            {
                shared = (job.Type, maxAttempts, JobRecord.OpenHeader(job.Type, maxAttempts, traceParent));
            }
            args[1 + 4 * i] = ids[i];
            args[2 + 4 * i] = shared.Header;
            args[3 + 4 * i] = job.Payload;
            args[4 + 4 * i] = job switch
            {
                { Delay: { } delay } => "+" + (long)delay.TotalMilliseconds,
                { RunAt: { } runAt } => "@" + runAt.ToUnixTimeMilliseconds(),
                _ => "",
            };
        }

        var db = await redis.GetDatabaseAsync();
        RedisResult[] reply;
        for (var registrations = 0; ; registrations++)
        {
            reply = (RedisResult[])(await LuaScripts.Enqueue.RunAsync(
                db, [keys.Jobs, keys.Ready, keys.Scheduled, keys.Registered, keys.Idle, keys.History], args))!;
            if ((long)reply[0] >= 0)
            {
                break;
            }
            // Rare: the queue is new, or the custodian forgot it after it stayed empty. Registering twice in a row can only
            // be lost to a custodian dropping it in between, which needs the queue empty for EmptyQueueRetention.
            if (registrations == 2)
            {
                throw new InvalidOperationException($"Queue '{queue}' lost its registration twice while jobs were being enqueued");
            }
            await RegisterAsync(db, keys, settings.MaxQueues);
        }

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
        if (wake is not null && results.Any(r => r is { Duplicate: false, State: JobState.Ready }))
        {
            await wake.WakeAsync(queue, cancellationToken);
        }
        return results;
    }

    /// <summary>
    /// Lists the queue in the registry (refused when full), then marks it registered in its own hash slot, then checks
    /// the registry still lists it: a custodian that dropped the queue in between took it out after this call listed it
    /// and before the mark. Only a listed queue carries the mark, which enqueue needs: no job lands where timers never look.
    /// </summary>
    private static async Task RegisterAsync(IDatabase db, QueueKeys keys, int maxQueues)
    {
        for (var tries = 0; tries < 3; tries++)
        {
            if ((long)await LuaScripts.RegisterQueue.RunAsync(db, [QueueKeys.Queues], [keys.Queue, maxQueues]) == 0)
            {
                throw new ConveyorQueueLimitException(keys.Queue, maxQueues);
            }
            await db.StringSetAsync(keys.Registered, 1);
            if (await db.SetContainsAsync(QueueKeys.Queues, keys.Queue))
            {
                return;
            }
        }
        throw new InvalidOperationException($"Queue '{keys.Queue}' was dropped from the registry three times while it was being registered");
    }
}
