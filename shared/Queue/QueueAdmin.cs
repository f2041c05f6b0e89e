using Conveyor.Storage;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Conveyor.Queue;

/// <summary>Looks jobs and queues up, and manages the dead set.</summary>
public sealed class QueueAdmin(RedisConnection redis, IOptions<QueueOptions>? options = null)
{
    /// <summary>Most dead jobs requeued per script call by <see cref="RequeueAllDeadAsync"/> (a call stays in single-digit milliseconds).</summary>
    private const int RequeueBatch = 500;

    /// <summary>A job's state and record, or null when it is unknown or already acked.</summary>
    public async Task<JobInfo?> GetJobAsync(string queue, string id, CancellationToken cancellationToken = default)
    {
        JobValidation.QueueName(queue);
        JobValidation.JobId(id);
        cancellationToken.ThrowIfCancellationRequested();
        var db = await redis.GetDatabaseAsync();
        return await LocateAsync(db, new QueueKeys(queue), id, int.MaxValue, skipUnreadable: false) is { } job
            ? ToInfo(queue, id, job.State, job.Record, job.DiedAt)
            : null;
    }

    /// <summary>
    /// Where job <paramref name="id"/> is: its record (the payload only up to <paramref name="maxPayloadBytes"/>, see
    /// <see cref="PeekAsync"/>) and the payload's size, its state, the consumer holding it when it runs (among the first
    /// <paramref name="maxConsumers"/> consumers; all when -1) with its claim token, and when it died. Null for an id
    /// without a job.
    /// </summary>
    internal static async Task<LocatedJob?> LocateAsync(
        IDatabase db, QueueKeys keys, string id, int maxPayloadBytes, bool skipUnreadable, int maxConsumers = -1)
    {
        var batch = db.CreateBatch();
        var peek = PeekAsync(batch, keys, [id], maxPayloadBytes, skipUnreadable);
        var scheduled = batch.SortedSetScoreAsync(keys.Scheduled, id);
        var dead = batch.SortedSetScoreAsync(keys.Dead, id);
        var consumers = batch.SortedSetRangeByRankAsync(keys.Consumers, 0, maxConsumers < 0 ? -1 : maxConsumers - 1);
        batch.Execute();
        await Task.WhenAll(peek, scheduled, dead, consumers);
        if ((await peek)[0] is not ({ } record, var bytes))
        {
            return null;
        }
        if ((await dead) is { } diedAt)
        {
            return new LocatedJob(record, bytes, JobState.Dead, null, diedAt);
        }
        if ((await scheduled).HasValue)
        {
            return new LocatedJob(record, bytes, JobState.Scheduled, null, null);
        }
        // Not scheduled nor dead: either in the ready list or held by a consumer.
        var names = (await consumers).Select(c => (string)c!).ToList();
        var claims = await Task.WhenAll(names.Select(c => db.SortedSetScoreAsync(keys.Inflight(c), id)));
        var index = Array.FindIndex(claims, c => c.HasValue);
        return index < 0
            ? new LocatedJob(record, bytes, JobState.Ready, null, null)
            : new LocatedJob(record, bytes, JobState.Running, names[index], null) { ClaimToken = (long)claims[index]!.Value };
    }

    /// <summary>Every registered queue (a queue is registered by its first job and dropped after staying empty), sorted.</summary>
    public async Task<IReadOnlyList<string>> ListQueuesAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var db = await redis.GetDatabaseAsync();
        var members = await db.SetMembersAsync(QueueKeys.Queues);
        return [.. members.Select(m => QueueKeys.ParseRegistryMember(m!)).Where(m => !m.Dropping).Select(m => m.Queue).Order(StringComparer.Ordinal)];
    }

    /// <summary>Counts of one queue.</summary>
    public async Task<QueueStats> GetStatsAsync(string queue, CancellationToken cancellationToken = default)
    {
        JobValidation.QueueName(queue);
        cancellationToken.ThrowIfCancellationRequested();
        var keys = new QueueKeys(queue);
        var db = await redis.GetDatabaseAsync();
        var batch = db.CreateBatch();
        var ready = batch.ListLengthAsync(keys.Ready);
        var scheduled = batch.SortedSetLengthAsync(keys.Scheduled);
        var dead = batch.SortedSetLengthAsync(keys.Dead);
        var consumers = batch.SortedSetRangeByRankWithScoresAsync(keys.Consumers);
        var unserved = batch.StringGetAsync(keys.Unserved);
        batch.Execute();
        await Task.WhenAll(ready, scheduled, dead, consumers, unserved);
        // Consumers taken for dead (score 0) still hold claims until the custodian has recovered them all.
        var running = await Task.WhenAll((await consumers).Select(c => db.SortedSetLengthAsync(keys.Inflight(c.Element!))));
        DateTimeOffset? unservedSince = null;
        if ((await unserved) is { HasValue: true } since && since.TryParse(out long sinceMs)
            && await RedisTime.NowMsAsync(db) - sinceMs >= (long)(options?.Value ?? new QueueOptions()).UnservedAfter.TotalMilliseconds)
        {
            unservedSince = DateTimeOffset.FromUnixTimeMilliseconds(sinceMs);
        }
        return new QueueStats(queue, await ready, await scheduled, running.Sum(), await dead, (await consumers).Count(c => c.Score > 0))
        {
            UnservedSince = unservedSince,
        };
    }

    /// <summary>Jobs enqueued, processed and failed per minute over the last hour (two round trips, one HMGET of 180 fields).</summary>
    public async Task<QueueHistory> GetHistoryAsync(string queue, CancellationToken cancellationToken = default) =>
        (await GetHistoriesAsync([queue], cancellationToken))[0];

    /// <summary>The last hour of each queue, in their order, over one Redis clock reading (then one HMGET per queue, pipelined).</summary>
    public async Task<QueueHistory[]> GetHistoriesAsync(IReadOnlyList<string> queues, CancellationToken cancellationToken = default)
    {
        foreach (var queue in queues)
        {
            JobValidation.QueueName(queue);
        }
        cancellationToken.ThrowIfCancellationRequested();
        var db = await redis.GetDatabaseAsync();
        var now = await RedisTime.NowMsAsync(db);
        return await Task.WhenAll(queues.Select(queue => QueueHistory.ReadAsync(db, new QueueKeys(queue), now)));
    }

    /// <summary>Dead jobs, most recent death first.</summary>
    public async Task<IReadOnlyList<JobInfo>> ListDeadAsync(string queue, int offset, int count, CancellationToken cancellationToken = default)
    {
        JobValidation.QueueName(queue);
        if (offset < 0)
        {
            throw new ConveyorValidationException("offset", "must be 0 or more");
        }
        if (count is < 1 or > 1000)
        {
            throw new ConveyorValidationException("count", "must be between 1 and 1000");
        }
        cancellationToken.ThrowIfCancellationRequested();
        var keys = new QueueKeys(queue);
        var db = await redis.GetDatabaseAsync();
        var entries = await db.SortedSetRangeByRankWithScoresAsync(keys.Dead, offset, offset + count - 1, Order.Descending);
        if (entries.Length == 0)
        {
            return [];
        }
        var ids = Array.ConvertAll(entries, e => e.Element);
        var peeked = await PeekAsync(db, keys, ids, int.MaxValue, skipUnreadable: false);
        var jobs = new List<JobInfo>(ids.Length);
        for (var i = 0; i < ids.Length; i++)
        {
            if (peeked[i] is ({ } record, _))
            {
                jobs.Add(ToInfo(queue, ids[i]!, JobState.Dead, record, entries[i].Score));
            }
        }
        return jobs;
    }

    /// <summary>Moves one dead job back to the ready list with a fresh set of attempts. False when it is not dead.</summary>
    public async Task<bool> RequeueDeadAsync(string queue, string id, CancellationToken cancellationToken = default)
    {
        JobValidation.QueueName(queue);
        JobValidation.JobId(id);
        cancellationToken.ThrowIfCancellationRequested();
        var keys = new QueueKeys(queue);
        var db = await redis.GetDatabaseAsync();
        var moved = (long)await LuaScripts.RequeueDead.RunAsync(db, DeadSetKeys(keys), [keys.Signal.ToString(), 1, id]);
        return moved == 1;
    }

    /// <summary>Moves every dead job back to the ready list, in bounded batches. Returns how many moved.</summary>
    public async Task<long> RequeueAllDeadAsync(string queue, CancellationToken cancellationToken = default)
    {
        JobValidation.QueueName(queue);
        var keys = new QueueKeys(queue);
        var db = await redis.GetDatabaseAsync();
        long total = 0;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var moved = (long)await LuaScripts.RequeueDead.RunAsync(db, DeadSetKeys(keys), [keys.Signal.ToString(), RequeueBatch]);
            total += moved;
            if (moved < RequeueBatch)
            {
                return total;
            }
        }
    }

    /// <summary>Deletes one dead job for good. False when it is not dead.</summary>
    public async Task<bool> DeleteDeadAsync(string queue, string id, CancellationToken cancellationToken = default)
    {
        JobValidation.QueueName(queue);
        JobValidation.JobId(id);
        cancellationToken.ThrowIfCancellationRequested();
        var keys = new QueueKeys(queue);
        var db = await redis.GetDatabaseAsync();
        return (long)await LuaScripts.DeleteDead.RunAsync(db, [keys.Dead, keys.Jobs, keys.State, keys.Payloads], [id]) == 1;
    }

    private static RedisKey[] DeadSetKeys(QueueKeys keys) => [keys.Dead, keys.Jobs, keys.State, keys.Ready];

    /// <summary>
    /// Jobs' records and states, read together by one script (peek.lua): a pipelined HGET of each could straddle an ack
    /// and find a record without its state. Each payload comes back only when it is at most
    /// <paramref name="maxPayloadBytes"/> (its size always), so a page of jobs does not carry their payloads. Null for an
    /// id without a job, and with <paramref name="skipUnreadable"/> for one whose record is unreadable (the processor
    /// kills such a job when it claims it).
    /// </summary>
    /// <exception cref="InvalidDataException">A record is unreadable and <paramref name="skipUnreadable"/> is false.</exception>
    internal static async Task<(JobRecord Record, long PayloadBytes)?[]> PeekAsync(
        IDatabaseAsync db, QueueKeys keys, RedisValue[] ids, int maxPayloadBytes, bool skipUnreadable)
    {
        var reply = (RedisResult[])(await LuaScripts.Peek.RunAsync(db, [keys.Jobs, keys.State, keys.Payloads], [maxPayloadBytes, .. ids]))!;
        var peeked = new (JobRecord, long)?[ids.Length];
        for (var i = 0; i < ids.Length; i++)
        {
            var header = (RedisValue)reply[4 * i];
            if (header.IsNull)
            {
                continue;
            }
            try
            {
                var record = JobRecord.Read(header, (RedisValue)reply[4 * i + 1], (RedisValue)reply[4 * i + 3]);
                var bytes = (long)reply[4 * i + 2];
                peeked[i] = (record, bytes < 0 ? System.Text.Encoding.UTF8.GetByteCount(record.Payload) : bytes);
            }
            catch (InvalidDataException) when (skipUnreadable)
            {
            }
        }
        return peeked;
    }

    private static JobInfo ToInfo(string queue, string id, JobState state, JobRecord record, double? diedAt) => new(
        id,
        queue,
        state,
        record.Type,
        record.Payload,
        record.Attempt,
        record.MaxAttempts,
        DateTimeOffset.FromUnixTimeMilliseconds(record.EnqueuedAt),
        DateTimeOffset.FromUnixTimeMilliseconds(record.DueAt),
        record.LastError,
        diedAt is { } died ? DateTimeOffset.FromUnixTimeMilliseconds((long)died) : null,
        record.TraceParent);
}

/// <summary>A job as <see cref="QueueAdmin.LocateAsync"/> found it; <see cref="ClaimToken"/> is its holder's claim (running).</summary>
internal sealed record LocatedJob(JobRecord Record, long PayloadBytes, JobState State, string? Holder, double? DiedAt)
{
    public long? ClaimToken { get; init; }
}
