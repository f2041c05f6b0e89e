using System.Diagnostics;
using System.Text.Json.Serialization;
using Conveyor.Presence;
using Conveyor.Storage;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Conveyor.Queue;

/// <summary>A job claimed by a remote runtime.</summary>
/// <param name="Id">The job's id.</param>
/// <param name="Queue">Its queue.</param>
/// <param name="Type">Its type (handler name).</param>
/// <param name="Payload">Its payload, JSON.</param>
/// <param name="Attempt">This run's number: 1 on the first run.</param>
/// <param name="MaxAttempts">Runs the job gets in all.</param>
/// <param name="EnqueuedAt">When it was enqueued (Redis time).</param>
/// <param name="Claim">The claim token to ack, fail or extend it with (opaque).</param>
/// <param name="ClaimExpiresAt">The claim goes back to the queue after this (Redis time) unless extended.</param>
/// <param name="TraceParent">The producer's W3C trace parent, to continue its trace.</param>
public sealed record RuntimeJob(
    string Id,
    string Queue,
    string Type,
    [property: JsonConverter(typeof(RawJsonConverter))] string Payload,
    int Attempt,
    int MaxAttempts,
    DateTimeOffset EnqueuedAt,
    string Claim,
    DateTimeOffset ClaimExpiresAt,
    string? TraceParent);

/// <summary>What became of one claim a runtime acked, failed or extended.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ClaimOutcome>))]
public enum ClaimOutcome
{
    /// <summary>Acked: the job left Redis.</summary>
    [JsonStringEnumMemberName("acked")]
    Acked,

    /// <summary>Failed with attempts left: scheduled for another attempt after a backoff.</summary>
    [JsonStringEnumMemberName("retried")]
    Retried,

    /// <summary>Failed on its last attempt, or failed with retry false: in the dead set.</summary>
    [JsonStringEnumMemberName("dead")]
    Dead,

    /// <summary>Extended: see the result's <c>claimExpiresAt</c>.</summary>
    [JsonStringEnumMemberName("extended")]
    Extended,

    /// <summary>
    /// The runtime no longer holds this claim (it expired, its runtime went offline, or the job was acked, failed or claimed
    /// again since): nothing changed. Another run of the job may be under way; whatever this run did, it does not count.
    /// </summary>
    [JsonStringEnumMemberName("lost")]
    Lost,
}

/// <summary>One claim's outcome.</summary>
/// <param name="Claim">The claim token, as sent.</param>
/// <param name="Outcome">What became of it.</param>
public sealed record ClaimResult(string Claim, ClaimOutcome Outcome)
{
    /// <summary>For <see cref="ClaimOutcome.Extended"/>: when the claim now expires (Redis time).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public DateTimeOffset? ClaimExpiresAt { get; init; }
}

/// <summary>A claimed job that failed.</summary>
/// <param name="Claim">Its claim token.</param>
/// <param name="Error">What went wrong (kept as the job's lastError, at most 4,096 characters).</param>
/// <param name="Retry">True: another attempt after a backoff, if it has attempts left. False: to the dead set now.</param>
public sealed record ClaimFailure(string Claim, string Error, bool Retry = true);

/// <summary>
/// Remote runtimes' side of the queue: claim (a long poll), ack, fail and extend, on the same scripts as processors.
/// A runtime's claims sit in its own inflight set (consumer <c>runtime:&lt;id&gt;</c>), fenced by claim tokens like a
/// processor's; their liveness is the runtime's presence (the custodian gives them back once it is offline or deleted)
/// plus a lease per claim (<see cref="RuntimeOptions.ClaimTimeout"/>, renewed by extend).
/// </summary>
public sealed class RuntimeClaims(
    RedisConnection redis,
    HeartbeatService presence,
    IOptions<RuntimeOptions> options,
    IOptions<QueueOptions> queueOptions,
    IOptions<ProcessorOptions> processorOptions,
    IHostApplicationLifetime? lifetime = null)
{
    /// <summary>Most jobs one claim takes, and most claims one ack, fail or extend settles.</summary>
    public const int MaxBatch = 1000;

    /// <summary>Longest error text kept.</summary>
    public const int MaxErrorLength = 4096;

    /// <summary>
    /// Claims one ack, fail or extend script call settles at most (<c>Conveyor:Processor:CompletionBatchSize</c>, as for
    /// processors); a call also frees or passes at most <see cref="LuaScripts.CallBudgetBytes"/> of payloads or error text.
    /// A request of up to <see cref="MaxBatch"/> claims makes as many calls as that takes.
    /// </summary>
    private int CallSize => processorOptions.Value.CompletionBatchSize;

    private const string ConsumerPrefix = "runtime:";

    /// <summary>How long a claim lives without an extension.</summary>
    public TimeSpan ClaimTimeout => options.Value.ClaimTimeout;

    /// <summary>The consumer id of a runtime's claims in every queue.</summary>
    internal static string ConsumerId(Guid runtimeId) => ConsumerPrefix + RuntimeCredentials.Canonical(runtimeId);

    /// <summary>The runtime of a consumer id, or null for a processor's.</summary>
    internal static Guid? RuntimeOf(string consumerId) =>
        consumerId.StartsWith(ConsumerPrefix, StringComparison.Ordinal) && Guid.TryParse(consumerId.AsSpan(ConsumerPrefix.Length), out var id)
            ? id
            : null;

    /// <summary>
    /// Claims up to <paramref name="max"/> ready jobs of <paramref name="queue"/> for the runtime, waiting up to
    /// <paramref name="wait"/> for one to become ready: woken by the queue's pub/sub signal, trying again every
    /// <see cref="RuntimeOptions.IdlePollInterval"/> without one. Empty when none came within the wait, or when the host
    /// is stopping. Cancelled (the caller went away), it claims nothing more and hands back what a claim in flight took.
    /// </summary>
    /// <exception cref="ConveyorValidationException">A bad id, queue, max or wait; nothing changed.</exception>
    /// <exception cref="RuntimeAccessException">Unknown runtime, wrong token, or an offline runtime; nothing changed.</exception>
    public async Task<IReadOnlyList<RuntimeJob>> ClaimAsync(
        string runtimeId, string? token, string queue, int max, TimeSpan wait, CancellationToken cancellationToken = default)
    {
        var runtime = RuntimeCredentials.ParseId(runtimeId);
        JobValidation.QueueName(queue);
        if (max is < 1 or > MaxBatch)
        {
            throw new ConveyorValidationException("max", $"must be between 1 and {MaxBatch}");
        }
        var settings = options.Value;
        if (wait < TimeSpan.Zero || wait > settings.MaxClaimWait)
        {
            throw new ConveyorValidationException("waitSeconds", $"must be between 0 and {settings.MaxClaimWait.TotalSeconds} (Conveyor:Runtimes:MaxClaimWait)");
        }
        await RequireAsync(runtimeId, token, claiming: true, cancellationToken);

        var claim = new Claim(runtimeId, token, new QueueKeys(queue), ConsumerId(runtime), max, (long)settings.ClaimTimeout.TotalMilliseconds);
        var stopping = lifetime?.ApplicationStopping ?? CancellationToken.None;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, stopping);
        try
        {
            return await LongPollAsync(claim, wait, stop.Token, cancellationToken);
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return []; // The host is stopping: answer now (what a claim in flight took went back) rather than hold its shutdown.
        }
    }

    private async Task<IReadOnlyList<RuntimeJob>> LongPollAsync(Claim claim, TimeSpan wait, CancellationToken stop, CancellationToken cancellationToken)
    {
        var settings = options.Value;
        var started = Stopwatch.GetTimestamp();
        var jobs = await TryClaimAsync(claim, stop);
        if (jobs.Count > 0 || wait == TimeSpan.Zero)
        {
            return jobs;
        }
        var wake = new AsyncSignal();
        Action<RedisChannel, RedisValue> onSignal = (_, _) => wake.Set();
        var subscriber = (await redis.GetMultiplexerAsync()).GetSubscriber();
        await subscriber.SubscribeAsync(claim.Keys.Signal, onSignal);
        try
        {
            while (true)
            {
                // Reset, then claim: a job that becomes ready after this claim sets the signal again.
                wake.Reset();
                jobs = await TryClaimAsync(claim, stop);
                var left = wait - Stopwatch.GetElapsedTime(started);
                if (jobs.Count > 0 || left <= TimeSpan.Zero)
                {
                    return jobs;
                }
                await wake.WaitAsync(left < settings.IdlePollInterval ? left : settings.IdlePollInterval, stop);
                // It may have been swept offline while it waited.
                await RequireAsync(claim.RuntimeId, claim.Token, claiming: true, cancellationToken);
            }
        }
        finally
        {
            await UnsubscribeAsync(subscriber, claim.Keys.Signal, onSignal);
        }
    }

    private static async Task UnsubscribeAsync(ISubscriber subscriber, RedisChannel channel, Action<RedisChannel, RedisValue> handler)
    {
        try
        {
            await subscriber.UnsubscribeAsync(channel, handler);
        }
        catch (Exception ex) when (Transient.Is(ex))
        {
            // Best effort: the multiplexer drops the handler's subscription with its connection anyway.
        }
    }

    /// <summary>Acks claims: their jobs leave Redis. Per claim, in request order: acked, or lost (nothing changed).</summary>
    /// <exception cref="ConveyorValidationException">A malformed or repeated claim token; nothing changed.</exception>
    /// <exception cref="RuntimeAccessException">Unknown runtime or wrong token; nothing changed.</exception>
    public async Task<IReadOnlyList<ClaimResult>> AckAsync(
        string runtimeId, string? token, IReadOnlyList<string?> claims, CancellationToken cancellationToken = default)
    {
        var (runtime, parsed) = await SettlingAsync(runtimeId, token, claims, "claims", i => $"claims[{i}]", cancellationToken);
        var db = await redis.GetDatabaseAsync();
        var consumer = ConsumerId(runtime);
        var results = new ClaimResult[parsed.Count];
        foreach (var (queue, group) in ByQueue(parsed))
        {
            var keys = new QueueKeys(queue);
            // An ack frees the records: the calls are cut by the bytes they free as well as by count (the sizes are
            // read first, in one pipelined round trip; one job alone needs none).
            var sizes = group.Count == 1
                ? [0L]
                : await Task.WhenAll(group.Select(c => db.HashStringLengthAsync(keys.Jobs, c.Token.JobId)));
            var sized = group.Select((c, i) => (Claim: c, Bytes: (int)Math.Min(sizes[i], int.MaxValue))).ToList();
            foreach (var call in LuaScripts.Calls(sized, CallSize, c => c.Bytes))
            {
                var items = call.Select(c => c.Claim).ToList();
                var reply = (RedisResult[])(await LuaScripts.Ack.RunAsync(
                    db, [keys.Inflight(consumer), keys.Jobs, keys.State, keys.Leases(consumer), keys.History], Pairs(items)))!;
                Settle(items, reply, results, ClaimOutcome.Acked, ConveyorTelemetry.Acked, claims);
            }
        }
        return results;
    }

    /// <summary>
    /// Fails claims: each job retries after a backoff (as a processor's failed handler does) while it has attempts left and
    /// the failure asks for it, else goes to the dead set. Per claim, in request order: retried, dead, or lost.
    /// </summary>
    /// <exception cref="ConveyorValidationException">A malformed or repeated claim token; nothing changed.</exception>
    /// <exception cref="RuntimeAccessException">Unknown runtime or wrong token; nothing changed.</exception>
    public async Task<IReadOnlyList<ClaimResult>> FailAsync(
        string runtimeId, string? token, IReadOnlyList<ClaimFailure?> failures, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(failures);
        for (var i = 0; i < failures.Count; i++)
        {
            if (failures[i] is null)
            {
                throw new ConveyorValidationException($"failures[{i}]", "must be a failure object, not null");
            }
        }
        var claims = failures.Select(f => f!.Claim).ToList();
        var (runtime, parsed) = await SettlingAsync(runtimeId, token, claims, "failures", i => $"failures[{i}].claim", cancellationToken);
        var settings = queueOptions.Value;
        var db = await redis.GetDatabaseAsync();
        var consumer = ConsumerId(runtime);
        var results = new ClaimResult[parsed.Count];
        foreach (var (queue, group) in ByQueue(parsed))
        {
            var keys = new QueueKeys(queue);
            // The state is stable while this runtime holds the claim; if it does not, the fenced scripts below refuse.
            var states = await ClaimedStatesAsync(db, keys, [.. group.Select(c => (RedisValue)c.Token.JobId)]);
            List<Completion> retries = [], kills = [];
            for (var i = 0; i < group.Count; i++)
            {
                var (index, claim) = group[i];
                if (states[i] is not var (attempt, maxAttempts, dueAt))
                {
                    results[index] = Lost(claims[index]!, queue);
                    continue;
                }
                var failure = failures[index]!;
                var error = failure.Error ?? "";
                error = error.Length <= MaxErrorLength ? error : error[..MaxErrorLength];
                attempt++;
                var bytes = System.Text.Encoding.UTF8.GetByteCount(error);
                if (failure.Retry && attempt < maxAttempts)
                {
                    var delay = Backoff.Delay(attempt, settings.RetryBaseDelay, settings.MaxBackoff);
                    retries.Add(new((index, claim), bytes, [claim.JobId, claim.Token, attempt, maxAttempts, (long)delay.TotalMilliseconds, error]));
                }
                else
                {
                    kills.Add(new((index, claim), bytes, [claim.JobId, claim.Token, attempt, maxAttempts, dueAt, error]));
                }
            }
            // Each call passes at most CallBudgetBytes of error text, as a processor's do.
            foreach (var call in LuaScripts.Calls(retries, CallSize, r => r.Bytes))
            {
                var reply = (RedisResult[])(await LuaScripts.Retry.RunAsync(
                    db, [keys.Inflight(consumer), keys.State, keys.Scheduled, keys.Leases(consumer), keys.History], [.. call.SelectMany(r => r.Args)]))!;
                Settle(call.Select(r => r.Claim), reply, results, ClaimOutcome.Retried, ConveyorTelemetry.Retried, claims);
            }
            foreach (var call in LuaScripts.Calls(kills, CallSize, k => k.Bytes))
            {
                var reply = (RedisResult[])(await LuaScripts.Kill.RunAsync(
                    db, [keys.Inflight(consumer), keys.State, keys.Dead, keys.Leases(consumer), keys.History], [.. call.SelectMany(k => k.Args)]))!;
                Settle(call.Select(k => k.Claim), reply, results, ClaimOutcome.Dead, ConveyorTelemetry.Killed, claims);
            }
        }
        return results;
    }

    /// <summary>
    /// Extends claims the runtime still holds: each expires <see cref="RuntimeOptions.ClaimTimeout"/> from now. Per claim,
    /// in request order: extended (with the new expiry), or lost.
    /// </summary>
    /// <exception cref="ConveyorValidationException">A malformed or repeated claim token; nothing changed.</exception>
    /// <exception cref="RuntimeAccessException">Unknown runtime or wrong token; nothing changed.</exception>
    public async Task<IReadOnlyList<ClaimResult>> ExtendAsync(
        string runtimeId, string? token, IReadOnlyList<string?> claims, CancellationToken cancellationToken = default)
    {
        var (runtime, parsed) = await SettlingAsync(runtimeId, token, claims, "claims", i => $"claims[{i}]", cancellationToken);
        var db = await redis.GetDatabaseAsync();
        var consumer = ConsumerId(runtime);
        var results = new ClaimResult[parsed.Count];
        foreach (var (queue, group) in ByQueue(parsed))
        {
            var keys = new QueueKeys(queue);
            foreach (var call in LuaScripts.Calls(group, CallSize, _ => 0))
            {
                var reply = (RedisResult[])(await LuaScripts.Extend.RunAsync(
                    db, [keys.Inflight(consumer), keys.Leases(consumer)], [(long)ClaimTimeout.TotalMilliseconds, .. Pairs(call)]))!;
                var expiresAt = DateTimeOffset.FromUnixTimeMilliseconds((long)reply[0]);
                for (var i = 0; i < call.Count; i++)
                {
                    var index = call[i].Index;
                    results[index] = (long)reply[i + 1] == 1
                        ? new ClaimResult(claims[index]!, ClaimOutcome.Extended) { ClaimExpiresAt = expiresAt }
                        : Lost(claims[index]!, queue);
                }
            }
        }
        return results;
    }

    private async Task<IReadOnlyList<RuntimeJob>> TryClaimAsync(Claim claim, CancellationToken stop)
    {
        stop.ThrowIfCancellationRequested();
        var keys = claim.Keys;
        var db = await redis.GetDatabaseAsync();
        var reply = (RedisResult[])(await LuaScripts.Claim.RunAsync(
            db,
            [keys.Consumers, keys.Ready, keys.Inflight(claim.Consumer), keys.Jobs, keys.State, keys.Payloads, keys.Seq, keys.Leases(claim.Consumer), keys.Expiring, keys.Remote],
            [claim.Consumer, claim.Max, 0, ProcessorSession.ClaimMaxBytes, queueOptions.Value.MaxPayloadBytes, claim.LeaseMs]))!;
        var count = (reply.Length - 2) / 3;
        if (count == 0)
        {
            return [];
        }
        var now = (long)reply[0];
        var token = (long)reply[1];
        var expiresAt = DateTimeOffset.FromUnixTimeMilliseconds(now + claim.LeaseMs);
        var jobs = new List<RuntimeJob>(count);
        var pairs = new List<RedisValue>(count * 2);
        List<RedisValue>? unreadable = null;
        for (var i = 2; i < reply.Length; i += 3)
        {
            var id = (string)reply[i]!;
            pairs.AddRange([id, token]);
            try
            {
                var record = JobRecord.Read((RedisValue)reply[i + 1], (RedisValue)reply[i + 2]);
                jobs.Add(new RuntimeJob(
                    id, keys.Queue, record.Type, record.Payload, record.Attempt + 1, record.MaxAttempts,
                    DateTimeOffset.FromUnixTimeMilliseconds(record.EnqueuedAt), new ClaimToken(keys.Queue, token, id).ToString(),
                    expiresAt, record.TraceParent));
            }
            catch (InvalidDataException ex)
            {
                // As a processor does: a record nobody can read goes to the dead set, visibly, instead of to the runtime.
                (unreadable ??= []).AddRange([id, token, 0, 1, now, $"the job record is unreadable: {ex.Message}"]);
            }
        }
        if (unreadable is not null)
        {
            await LuaScripts.Kill.RunAsync(db, [keys.Inflight(claim.Consumer), keys.State, keys.Dead, keys.Leases(claim.Consumer), keys.History], [.. unreadable]);
        }
        var queueTag = ConveyorTelemetry.QueueTag(keys.Queue);
        if (stop.IsCancellationRequested)
        {
            // Nobody will read this answer: the jobs go back to the head of the queue, no attempt counted.
            await LuaScripts.ReturnUnstarted.RunAsync(
                db, [keys.Inflight(claim.Consumer), keys.Ready, keys.Leases(claim.Consumer)], [keys.Signal.ToString(), .. pairs]);
            stop.ThrowIfCancellationRequested();
        }
        ConveyorTelemetry.Claimed.Add(jobs.Count, queueTag);
        return jobs;
    }

    /// <summary>Validates claims to settle and the runtime's token (an offline runtime may still settle what it holds).</summary>
    private async Task<(Guid Runtime, List<(int Index, ClaimToken Token)> Claims)> SettlingAsync(
        string runtimeId, string? token, IReadOnlyList<string?> claims, string list, Func<int, string> field, CancellationToken cancellationToken)
    {
        var runtime = RuntimeCredentials.ParseId(runtimeId);
        ArgumentNullException.ThrowIfNull(claims);
        if (claims.Count is 0 or > MaxBatch)
        {
            throw new ConveyorValidationException(list, $"must hold 1 to {MaxBatch} items");
        }
        var parsed = new List<(int, ClaimToken)>(claims.Count);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < claims.Count; i++)
        {
            var claim = ClaimToken.Parse(claims[i], field(i));
            if (!seen.Add(claims[i]!))
            {
                throw new ConveyorValidationException(field(i), "appears twice in one request");
            }
            parsed.Add((i, claim));
        }
        await RequireAsync(runtimeId, token, claiming: false, cancellationToken);
        return (runtime, parsed);
    }

    private async Task RequireAsync(string runtimeId, string? token, bool claiming, CancellationToken cancellationToken)
    {
        var access = await presence.CheckAsync(runtimeId, token, cancellationToken);
        if (access is RuntimeAccess.NotFound or RuntimeAccess.Unauthorized || (claiming && access == RuntimeAccess.Offline))
        {
            throw new RuntimeAccessException(runtimeId, access);
        }
    }

    private static IEnumerable<(string Queue, List<(int Index, ClaimToken Token)> Items)> ByQueue(List<(int Index, ClaimToken Token)> claims) =>
        claims.GroupBy(c => c.Token.Queue, StringComparer.Ordinal).Select(g => (g.Key, g.ToList()));

    private static RedisValue[] Pairs(IEnumerable<(int Index, ClaimToken Token)> group) =>
        [.. group.SelectMany(c => new RedisValue[] { c.Token.JobId, c.Token.Token })];

    /// <summary>Per-item replies of a fenced script (1 done, 0 lost) into <paramref name="results"/>, counted.</summary>
    private static void Settle(
        IEnumerable<(int Index, ClaimToken Token)> items, RedisResult[] reply, ClaimResult[] results, ClaimOutcome done,
        System.Diagnostics.Metrics.Counter<long> counter, IReadOnlyList<string?> claims)
    {
        var i = 0;
        long count = 0;
        string? queue = null;
        foreach (var (index, token) in items)
        {
            queue = token.Queue;
            if ((long)reply[i++] == 1)
            {
                results[index] = new ClaimResult(claims[index]!, done);
                count++;
            }
            else
            {
                results[index] = Lost(claims[index]!, queue);
            }
        }
        if (queue is not null)
        {
            counter.Add(count, ConveyorTelemetry.QueueTag(queue));
        }
    }

    private static ClaimResult Lost(string claim, string queue)
    {
        ConveyorTelemetry.LostClaims.Add(1, ConveyorTelemetry.QueueTag(queue));
        return new ClaimResult(claim, ClaimOutcome.Lost);
    }

    /// <summary>
    /// The states of claimed jobs (null: no such job). A job with no transition yet has none stored: its state is read from
    /// its header by <c>peek.lua</c>, for those jobs only (their records are at most 1 KiB: a claim stores the state of a
    /// larger one), so no large record is read here.
    /// </summary>
    private static async Task<(int Attempt, int MaxAttempts, long DueAt)?[]> ClaimedStatesAsync(IDatabase db, QueueKeys keys, RedisValue[] ids)
    {
        var stored = await db.HashGetAsync(keys.State, ids);
        var states = stored.Select(s => s.IsNull ? ((int, int, long)?)null : ReadState(s!)).ToArray();
        var missing = Enumerable.Range(0, ids.Length).Where(i => stored[i].IsNull).ToArray();
        if (missing.Length > 0)
        {
            var peeked = await QueueAdmin.PeekAsync(db, keys, [.. missing.Select(i => ids[i])], 0, skipUnreadable: true);
            for (var j = 0; j < missing.Length; j++)
            {
                if (peeked[j] is ({ } record, _))
                {
                    states[missing[j]] = (record.Attempt, record.MaxAttempts, record.DueAt);
                }
            }
        }
        return states;
    }

    private static (int Attempt, int MaxAttempts, long DueAt) ReadState(string state)
    {
        try
        {
            var (attempt, maxAttempts, dueAt, _) = JobRecord.ParseState(state);
            return (attempt, maxAttempts, dueAt);
        }
        catch (InvalidDataException)
        {
            return (0, 1, 0); // Unreadable: its one attempt is spent, so it goes to the dead set, visibly.
        }
    }

    /// <summary>A retry or kill to send: its claim, the error bytes it passes, its script arguments.</summary>
    private sealed record Completion((int Index, ClaimToken Token) Claim, int Bytes, RedisValue[] Args);

    private sealed record Claim(string RuntimeId, string? Token, QueueKeys Keys, string Consumer, int Max, long LeaseMs);
}
