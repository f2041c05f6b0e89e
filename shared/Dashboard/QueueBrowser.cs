using System.Buffers;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Conveyor.Presence;
using Conveyor.Queue;
using Conveyor.Storage;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Conveyor.Dashboard;

/// <summary>One row of a job list. What a list does not know stays null (a ready job has no consumer).</summary>
/// <param name="Id">The job id.</param>
/// <param name="Type">Its type; null when its record is gone or unreadable.</param>
/// <param name="Attempt">Attempts made so far.</param>
/// <param name="MaxAttempts">Attempts allowed.</param>
/// <param name="EnqueuedAt">When it was enqueued.</param>
/// <param name="At">The list's own time: due (scheduled), lease deadline (running on a runtime), died (dead).</param>
/// <param name="LastError">The error of its last failed attempt.</param>
/// <param name="Consumer">The processor session or runtime holding it (running).</param>
/// <param name="Since">When its consumer claimed it (running): the claim token's time, see <see cref="ClaimToken.ClaimedAt"/>.</param>
public sealed record JobRow(
    string Id, string? Type, int Attempt, int MaxAttempts, DateTimeOffset? EnqueuedAt, DateTimeOffset? At, string? LastError, string? Consumer,
    DateTimeOffset? Since = null);

/// <summary>One page of a list, and where it sits in the whole.</summary>
public sealed record Slice<T>(IReadOnlyList<T> Rows, long Total, int Page, int PageSize)
{
    public int Pages => (int)Math.Max(1, (Total + PageSize - 1) / PageSize);
}

/// <summary>Which page of each list the queue page shows (from 1).</summary>
public sealed record QueuePages(int Ready = 1, int Scheduled = 1, int Running = 1, int Dead = 1);

/// <summary>Every queue's counts, as <c>GET /api/queues</c> answers them, and each one's last hour (in the same order).</summary>
public sealed record OverviewView(IReadOnlyList<QueueStats> Queues, IReadOnlyList<QueueHistory> History, DateTimeOffset Now);

/// <summary>One queue: its counts and a page of each list.</summary>
public sealed record QueueView(
    QueueStats Stats, Slice<JobRow> Ready, Slice<JobRow> Scheduled, Slice<JobRow> Running, Slice<JobRow> Dead, QueuePages Pages, DateTimeOffset Now);

/// <summary>One job, with its payload pretty-printed when it is small enough (<see cref="PayloadBytes"/> says its size either way).</summary>
public sealed record JobView(JobInfo Job, string? Consumer, long PayloadBytes, string? PrettyPayload, DateTimeOffset Now)
{
    /// <summary>When its consumer claimed it (running): the claim token's time, see <see cref="ClaimToken.ClaimedAt"/>.</summary>
    public DateTimeOffset? RunningSince { get; init; }
}

/// <summary>A processor session or runtime consumer of one queue, with its last heartbeat (null for a runtime: its presence is its liveness).</summary>
public sealed record ConsumerRow(string Queue, string Consumer, Guid? Runtime, DateTimeOffset? LastBeat, bool TakenForDead, long Holding);

/// <summary>A runtime and the claims it holds, per queue.</summary>
public sealed record RuntimeRow(RuntimeInfo Runtime, IReadOnlyList<(string Queue, long Jobs)> Holds);

/// <summary>The consumers of every queue and one page of runtimes (PostgreSQL, id order).</summary>
public sealed record RuntimesView(
    IReadOnlyList<ConsumerRow> Consumers, long ConsumersLeftOut, IReadOnlyList<RuntimeRow> Runtimes, RuntimeStatus? Status, string? After, string? Next, DateTimeOffset Now);

/// <summary>
/// The dashboard's reads. Each is bounded whatever a queue holds: a page of ids by rank (<c>LRANGE</c>/<c>ZRANGE</c> with
/// limits), then the small header and state of those ids only (never payloads, except the one job page's, and that
/// only under <see cref="DashboardOptions.MaxPayloadBytes"/>), counts by <c>LLEN</c>/<c>ZCARD</c>. No <c>HGETALL</c>,
/// no whole-list read.
/// </summary>
public sealed class QueueBrowser(RedisConnection redis, QueueAdmin admin, RuntimeRegistry runtimes, IOptions<DashboardOptions> options)
{
    /// <summary>Most consumers read per queue (a queue has a handful of sessions and runtimes; this only bounds a pathological one).</summary>
    public const int MaxConsumersPerQueue = 200;

    /// <summary>Deepest page a list can be paged to (1-based).</summary>
    public const int MaxPage = 1_000_000;

    /// <summary>Every known queue with the counts <c>GET /api/queues</c> answers (the same reads), and its last hour (one HMGET each).</summary>
    public async Task<OverviewView> OverviewAsync(CancellationToken cancellationToken)
    {
        var names = await admin.ListQueuesAsync(cancellationToken);
        var stats = Task.WhenAll(names.Select(name => admin.GetStatsAsync(name, cancellationToken)));
        var history = admin.GetHistoriesAsync(names, cancellationToken);
        return new OverviewView(await stats, await history, await NowAsync());
    }

    /// <summary>One queue: ready oldest first, scheduled soonest first, running by consumer, dead most recent first.</summary>
    public async Task<QueueView> QueueAsync(string queue, QueuePages pages, CancellationToken cancellationToken)
    {
        JobValidation.QueueName(queue);
        cancellationToken.ThrowIfCancellationRequested();
        var size = options.Value.PageSize;
        var keys = new QueueKeys(queue);
        var db = await redis.GetDatabaseAsync();
        var stats = await admin.GetStatsAsync(queue, cancellationToken);

        var batch = db.CreateBatch();
        // Claims pop from the head of the ready list: the head is the oldest.
        var ready = batch.ListRangeAsync(keys.Ready, First(pages.Ready, size), Last(pages.Ready, size));
        var scheduled = batch.SortedSetRangeByRankWithScoresAsync(keys.Scheduled, First(pages.Scheduled, size), Last(pages.Scheduled, size));
        var dead = batch.SortedSetRangeByRankWithScoresAsync(keys.Dead, First(pages.Dead, size), Last(pages.Dead, size), Order.Descending);
        var consumers = batch.SortedSetRangeByRankWithScoresAsync(keys.Consumers, 0, MaxConsumersPerQueue - 1);
        var now = batch.ExecuteAsync("TIME");
        batch.Execute();
        await Task.WhenAll(ready, scheduled, dead, consumers, now);
        var nowAt = ToTime((RedisResult[])(await now)!);

        var running = await RunningAsync(db, keys, await consumers, pages.Running, size);
        var readyIds = await ready;
        var readyRows = await RowsAsync(db, keys, [.. readyIds.Select(id => (id, (DateTimeOffset?)null, (string?)null, (DateTimeOffset?)null))]);
        var scheduledRows = await RowsAsync(db, keys, [.. (await scheduled).Select(e => (e.Element, (DateTimeOffset?)FromMs(e.Score), (string?)null, (DateTimeOffset?)null))]);
        var deadRows = await RowsAsync(db, keys, [.. (await dead).Select(e => (e.Element, (DateTimeOffset?)FromMs(e.Score), (string?)null, (DateTimeOffset?)null))]);
        var runningRows = await RowsAsync(db, keys, running.Rows);
        return new QueueView(
            stats,
            new Slice<JobRow>(readyRows, stats.Ready, pages.Ready, size),
            new Slice<JobRow>(scheduledRows, stats.Scheduled, pages.Scheduled, size),
            new Slice<JobRow>(runningRows, running.Total, pages.Running, size),
            new Slice<JobRow>(deadRows, stats.Dead, pages.Dead, size),
            pages,
            nowAt);
    }

    /// <summary>One job, or null when it is unknown or finished. The payload is read only when it is at most <see cref="DashboardOptions.MaxPayloadBytes"/>.</summary>
    public async Task<JobView?> JobAsync(string queue, string id, CancellationToken cancellationToken)
    {
        JobValidation.QueueName(queue);
        JobValidation.JobId(id);
        cancellationToken.ThrowIfCancellationRequested();
        var db = await redis.GetDatabaseAsync();
        var now = db.ExecuteAsync("TIME");
        var located = await QueueAdmin.LocateAsync(
            db, new QueueKeys(queue), id, options.Value.MaxPayloadBytes, skipUnreadable: true, MaxConsumersPerQueue);
        if (located is not ({ } record, var bytes, var jobState, var holder, var diedAt))
        {
            return null;
        }
        // A payload too big to show reads as "null" here: say its size instead.
        var shown = bytes <= options.Value.MaxPayloadBytes ? Pretty(record.Payload) : null;
        var info = new JobInfo(
            id, queue, jobState, record.Type, shown is null ? "" : record.Payload, record.Attempt, record.MaxAttempts,
            FromMs(record.EnqueuedAt), FromMs(record.DueAt), record.LastError,
            diedAt is { } died ? FromMs(died) : null, record.TraceParent);
        return new JobView(info, holder, bytes, shown, ToTime((RedisResult[])(await now)!))
        {
            RunningSince = located.ClaimToken is { } token ? ClaimToken.ClaimedAt(token) : null,
        };
    }

    /// <summary>Consumers of every queue, and one page of runtimes with what each holds.</summary>
    public async Task<RuntimesView> RuntimesAsync(RuntimeStatus? status, string? after, CancellationToken cancellationToken)
    {
        var page = await runtimes.ListAsync(status, after, options.Value.PageSize, cancellationToken);
        var queues = await admin.ListQueuesAsync(cancellationToken);
        var db = await redis.GetDatabaseAsync();
        var batch = db.CreateBatch();
        var keys = queues.Select(q => new QueueKeys(q)).ToList();
        var sets = keys.Select(k => batch.SortedSetRangeByRankWithScoresAsync(k.Consumers, 0, MaxConsumersPerQueue - 1)).ToList();
        var lengths = keys.Select(k => batch.SortedSetLengthAsync(k.Consumers)).ToList();
        var now = batch.ExecuteAsync("TIME");
        batch.Execute();
        var consumerSets = await Task.WhenAll(sets);
        var consumerCounts = await Task.WhenAll(lengths);

        var holding = db.CreateBatch();
        var entries = keys.SelectMany((k, i) => consumerSets[i].Select(c => (k.Queue, Consumer: (string)c.Element!, c.Score,
            Holding: holding.SortedSetLengthAsync(k.Inflight((string)c.Element!))))).ToList();
        holding.Execute();
        var held = await Task.WhenAll(entries.Select(e => e.Holding));
        var consumers = entries.Select((e, i) => new ConsumerRow(
            e.Queue, e.Consumer, RuntimeClaims.RuntimeOf(e.Consumer),
            double.IsFinite(e.Score) && e.Score > 0 ? FromMs(e.Score) : null, e.Score == 0, held[i])).ToList();
        var leftOut = consumerCounts.Sum() - consumerSets.Sum(c => c.Length);

        var holds = consumers.Where(c => c.Runtime is not null && c.Holding > 0)
            .GroupBy(c => c.Runtime!.Value)
            .ToDictionary(g => g.Key, g => (IReadOnlyList<(string, long)>)[.. g.Select(c => (c.Queue, c.Holding))]);
        var runtimeRows = page.Items.Select(r => new RuntimeRow(r, holds.GetValueOrDefault(r.Id, []))).ToList();
        return new RuntimesView(consumers, leftOut, runtimeRows, status, after, page.Next, ToTime((RedisResult[])(await now)!));
    }

    /// <summary>The running jobs of one page: consumers in their set's order, each one's claims in token order.</summary>
    private static async Task<(List<(RedisValue Id, DateTimeOffset? At, string? Consumer, DateTimeOffset? Since)> Rows, long Total)> RunningAsync(
        IDatabase db, QueueKeys keys, SortedSetEntry[] consumers, int page, int size)
    {
        var counts = db.CreateBatch();
        var sizes = consumers.Select(c => counts.SortedSetLengthAsync(keys.Inflight((string)c.Element!))).ToList();
        counts.Execute();
        var claimed = await Task.WhenAll(sizes);
        var rows = new List<(RedisValue, DateTimeOffset?, string?, DateTimeOffset?)>();
        var skip = (long)(page - 1) * size;
        for (var i = 0; i < consumers.Length && rows.Count < size; i++)
        {
            var held = claimed[i];
            if (skip >= held)
            {
                skip -= held;
                continue;
            }
            var consumer = (string)consumers[i].Element!;
            var claims = await db.SortedSetRangeByRankWithScoresAsync(keys.Inflight(consumer), skip, skip + size - rows.Count - 1);
            var ids = Array.ConvertAll(claims, c => c.Element);
            skip = 0;
            // A runtime's claims carry a lease deadline; a processor's run until it acks or the custodian takes them back.
            var leases = RuntimeClaims.RuntimeOf(consumer) is null ? null : await db.SortedSetScoresAsync(keys.Leases(consumer), ids);
            for (var j = 0; j < ids.Length; j++)
            {
                rows.Add((ids[j], leases?[j] is { } lease ? FromMs(lease) : null, consumer, ClaimToken.ClaimedAt((long)claims[j].Score)));
            }
        }
        return (rows, claimed.Sum());
    }

    /// <summary>Rows for ids, from their headers and states (one script call for a page of ids; payloads are not sent).</summary>
    private static async Task<List<JobRow>> RowsAsync(
        IDatabase db, QueueKeys keys, List<(RedisValue Id, DateTimeOffset? At, string? Consumer, DateTimeOffset? Since)> items)
    {
        if (items.Count == 0)
        {
            return [];
        }
        var peeked = await QueueAdmin.PeekAsync(db, keys, [.. items.Select(i => i.Id)], 0, skipUnreadable: true);
        var rows = new List<JobRow>(items.Count);
        for (var i = 0; i < items.Count; i++)
        {
            var (id, at, consumer, since) = items[i];
            var record = peeked[i]?.Record;
            rows.Add(record is null
                ? new JobRow(id!, null, 0, 0, null, at, null, consumer, since)
                : new JobRow(id!, record.Type, record.Attempt, record.MaxAttempts, FromMs(record.EnqueuedAt), at, record.LastError, consumer, since));
        }
        return rows;
    }

    /// <summary>Indented JSON for reading; raw text when it is not JSON.</summary>
    private static string Pretty(string payload)
    {
        try
        {
            using var document = JsonDocument.Parse(payload);
            var buffer = new ArrayBufferWriter<byte>(payload.Length * 2);
            using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            {
                document.RootElement.WriteTo(writer);
            }
            return Encoding.UTF8.GetString(buffer.WrittenSpan);
        }
        catch (JsonException)
        {
            return payload;
        }
    }

    private static long First(int page, int size) => (long)(page - 1) * size;

    private static long Last(int page, int size) => (long)page * size - 1;

    private static DateTimeOffset FromMs(double ms) => DateTimeOffset.FromUnixTimeMilliseconds((long)ms);

    private static DateTimeOffset ToTime(RedisResult[] time) =>
        DateTimeOffset.FromUnixTimeMilliseconds((long)time[0] * 1000 + (long)time[1] / 1000);

    private async Task<DateTimeOffset> NowAsync() => DateTimeOffset.FromUnixTimeMilliseconds(await RedisTime.NowMsAsync(await redis.GetDatabaseAsync()));
}
