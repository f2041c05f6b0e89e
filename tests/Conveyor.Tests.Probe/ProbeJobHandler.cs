using System.Diagnostics;
using System.Text.Json;
using Conveyor.Queue;
using Conveyor.Storage;
using StackExchange.Redis;

namespace Conveyor.Tests.Probe;

/// <summary>
/// Job type <c>probe</c>: records every run in Redis, so a test reads it whichever process ran the job, and does
/// what the payload asks. A payload object may hold <c>failTimes</c> (the first n runs of the job throw
/// <see cref="InvalidOperationException"/> with <c>error</c>, default "probe failure") and <c>holdMs</c> (the run
/// waits that long on the handler's token before it ends). Any other payload just runs.
/// </summary>
public sealed class ProbeJobHandler(RedisConnection redis) : IJobHandler
{
    public const string Type = "probe";

    private static readonly TimeSpan Keep = TimeSpan.FromHours(1);

    public async Task HandleAsync(Job job, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(job);
        var db = await redis.GetDatabaseAsync();
        var key = RunsKey(job.Queue, job.Id);
        var run = new ProbeRun(job.Id, job.Queue, job.Attempt, job.Payload, Activity.Current?.Id);
        var runs = await db.ListRightPushAsync(key, JsonSerializer.Serialize(run, JsonSerializerOptions.Web));
        await db.KeyExpireAsync(key, Keep);

        var (failTimes, error, hold) = Instructions(job.Payload);
        if (hold > TimeSpan.Zero)
        {
            await Task.Delay(hold, cancellationToken);
        }
        if (runs <= failTimes)
        {
            throw new InvalidOperationException(error);
        }
    }

    /// <summary>Every run of job <paramref name="id"/> on <paramref name="queue"/>, oldest first.</summary>
    public static async Task<IReadOnlyList<ProbeRun>> RunsAsync(IDatabaseAsync db, string queue, string id)
    {
        ArgumentNullException.ThrowIfNull(db);
        var values = await db.ListRangeAsync(RunsKey(queue, id));
        return [.. values.Select(v => JsonSerializer.Deserialize<ProbeRun>(v.ToString(), JsonSerializerOptions.Web)!)];
    }

    private static RedisKey RunsKey(string queue, string id) => $"conveyor-test:probe:{{{queue}}}:{id}";

    private static (long FailTimes, string Error, TimeSpan Hold) Instructions(string payload)
    {
        using var document = JsonDocument.Parse(payload);
        var root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
        {
            return (0, "", TimeSpan.Zero);
        }
        var failTimes = root.TryGetProperty("failTimes", out var f) ? f.GetInt64() : 0;
        var error = root.TryGetProperty("error", out var e) ? e.GetString() ?? "" : "probe failure";
        var hold = root.TryGetProperty("holdMs", out var h) ? TimeSpan.FromMilliseconds(h.GetInt32()) : TimeSpan.Zero;
        return (failTimes, error, hold);
    }
}

/// <summary>One run of a probe job: what the handler saw, including the activity it ran under (W3C id, or null).</summary>
public sealed record ProbeRun(string Id, string Queue, int Attempt, string Payload, string? TraceParent);
