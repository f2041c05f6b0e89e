using System.Diagnostics;
using Conveyor.Storage;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor.Queue;

/// <summary>What one processor session did.</summary>
public sealed record SessionResult(
    string Queue,
    string ConsumerId,
    long Claimed,
    long Acked,
    long Retried,
    long Killed,
    long Returned,
    long LostClaims,
    bool Deregistered)
{
    /// <summary>Claims found in the consumer's inflight set that the session did not know it held (their reply was lost), handed back.</summary>
    public long Reconciled { get; init; }

    /// <summary>Why the session ended.</summary>
    public SessionEnd End { get; init; }
}

/// <summary>Why a processor session ended.</summary>
public enum SessionEnd
{
    /// <summary>Its duration elapsed, or it was cancelled (shutdown).</summary>
    Stopped,

    /// <summary>No heartbeat was recorded for half the consumer timeout: it stopped before the custodian took it for dead.</summary>
    HeartbeatLost,

    /// <summary>The custodian took it for dead (its claims were recovered), or its heartbeat had passed the consumer timeout.</summary>
    TakenForDead,

    /// <summary>An unexpected error; the session rethrows it after its end steps.</summary>
    Failed,

    /// <summary>A bounded session found nothing to claim, with no job in hand, for <see cref="ProcessorOptions.IdleTimeout"/>.</summary>
    Idle,

    /// <summary>No session ran: this processor leaves the queue to remote runtimes (<see cref="Processor.ServesAsync"/>).</summary>
    NotServed,
}

/// <summary>
/// The long-poll consumer. A session registers a consumer, heartbeats, claims jobs in batches, runs
/// their handlers with bounded concurrency, and acks/retries/kills them in batches. It ends on
/// cancellation or when its duration elapses: it stops claiming, lets running handlers finish within
/// <see cref="ProcessorOptions.ShutdownGrace"/>, hands unstarted jobs back to the front of the queue
/// and deregisters. It ends early, the same way, when its heartbeat fails for half of
/// <see cref="CustodianOptions.ConsumerTimeout"/> or it finds itself taken for dead; transient Redis errors
/// it outlives with backoff.
/// </summary>
public sealed class Processor(
    RedisConnection redis,
    IServiceScopeFactory scopes,
    IOptions<ProcessorOptions> options,
    IOptions<QueueOptions> queueOptions,
    IOptions<CustodianOptions> custodianOptions,
    IOptions<RuntimeOptions> runtimeOptions,
    ILogger<Processor> logger)
{
    /// <summary>
    /// Runs one session per configured queue (<see cref="ProcessorOptions.Queues"/>; every known queue: those the registry
    /// lists now), all at once, until cancelled or <paramref name="duration"/> elapses.
    /// </summary>
    public async Task<IReadOnlyList<SessionResult>> RunAsync(TimeSpan? duration, CancellationToken cancellationToken)
    {
        var queues = await QueuesToServeAsync(readyOnly: false, cancellationToken);
        return await Task.WhenAll(queues.Select(queue => RunSessionAsync(queue, duration, cancellationToken)));
    }

    /// <summary>
    /// One bounded session per configured queue (every known queue: those with ready jobs now), at most
    /// <see cref="ProcessorOptions.SessionDuration"/> long and ending after <see cref="ProcessorOptions.IdleTimeout"/> with
    /// nothing to claim: what the Functions timer runs per tick, ending well before the host's functionTimeout.
    /// </summary>
    public async Task<IReadOnlyList<SessionResult>> RunBoundedAsync(CancellationToken cancellationToken)
    {
        var caller = Activity.Current;
        using var activity = ConveyorTelemetry.Source.StartActivity("conveyor.processor.run");
        // Jobs continue their producer's trace, not this minutes-long span.
        Activity.Current = caller;
        var queues = await QueuesToServeAsync(readyOnly: true, cancellationToken);
        return await Task.WhenAll(queues.Select(queue => RunBoundedSessionAsync(queue, cancellationToken)));
    }

    /// <summary>
    /// One bounded session on <paramref name="queue"/>, as <see cref="RunBoundedAsync"/> runs them: what a wake-up
    /// message starts (the Functions app's queue trigger). A wake-up runs no session, ending at once with no consumer
    /// registered (<see cref="SessionResult.ConsumerId"/> empty), for a queue this processor leaves to remote runtimes
    /// (<see cref="SessionEnd.NotServed"/>, see <see cref="ServesAsync"/>) and for one with nothing ready
    /// (<see cref="SessionEnd.Idle"/>: sessions already running took the backlog it was posted for, or an instance served
    /// several wake-ups one after another), instead of idling for <see cref="ProcessorOptions.IdleTimeout"/>. Jobs that
    /// arrive later post their own wake-ups.
    /// </summary>
    /// <exception cref="ConveyorValidationException">The message named no valid queue.</exception>
    public async Task<SessionResult> RunWokenSessionAsync(string queue, CancellationToken cancellationToken)
    {
        JobValidation.QueueName(queue);
        if (!await ServesAsync(queue))
        {
            logger.LogInformation("Processor: a wake-up for queue {Queue} ignored: remote runtimes serve it (Conveyor:Runtimes:Queues, or a runtime asked it for jobs)", queue);
            return NoSession(queue, SessionEnd.NotServed);
        }
        var db = await redis.GetDatabaseAsync();
        if (await db.ListLengthAsync(new QueueKeys(queue).Ready) == 0)
        {
            logger.LogInformation("Processor: a wake-up for queue {Queue} found nothing ready; no session", queue);
            return NoSession(queue, SessionEnd.Idle);
        }
        return await RunBoundedSessionAsync(queue, cancellationToken);
    }

    private static SessionResult NoSession(string queue, SessionEnd end) =>
        new(queue, "", 0, 0, 0, 0, 0, 0, Deregistered: false) { End = end };

    /// <summary>
    /// Whether this processor serves <paramref name="queue"/>: a queue <see cref="ProcessorOptions.Queues"/> names, always;
    /// serving every queue, any queue except those remote runtimes serve: listed in <see cref="RuntimeOptions.Queues"/>, or
    /// asked for jobs by a runtime since the queue was last forgotten (<see cref="QueueKeys.Remote"/>). A job of a type
    /// without an in-app handler would otherwise die here.
    /// </summary>
    public async Task<bool> ServesAsync(string queue)
    {
        if (Configured(options.Value, runtimeOptions.Value, queue) is { } configured)
        {
            return configured;
        }
        var db = await redis.GetDatabaseAsync();
        return !await db.KeyExistsAsync(new QueueKeys(queue).Remote);
    }

    /// <summary>
    /// What configuration alone says of serving <paramref name="queue"/> in-app: true when the processor names it, false
    /// when it names others only or <see cref="RuntimeOptions.Queues"/> lists it, null when it depends on
    /// <see cref="QueueKeys.Remote"/> (every queue is served, except those a runtime asked for jobs).
    /// </summary>
    internal static bool? Configured(ProcessorOptions processor, RuntimeOptions runtimes, string queue)
    {
        if (processor.Queues.Contains(queue, StringComparer.Ordinal))
        {
            return true;
        }
        if (!processor.ServesEveryQueue || runtimes.Queues.Contains(queue, StringComparer.Ordinal))
        {
            return false;
        }
        return null;
    }

    /// <summary>
    /// The queues <see cref="ProcessorOptions.Queues"/> names; for every known queue, the registry's (with
    /// <paramref name="readyOnly"/>, only those with ready jobs), plus any named beside <c>*</c>, except those remote
    /// runtimes serve (see <see cref="ServesAsync"/>).
    /// </summary>
    public async Task<IReadOnlyList<string>> QueuesToServeAsync(bool readyOnly, CancellationToken cancellationToken)
    {
        var settings = options.Value;
        var named = settings.Queues.Where(q => q != ProcessorOptions.AllQueues).ToList();
        if (!settings.ServesEveryQueue)
        {
            return named;
        }
        cancellationToken.ThrowIfCancellationRequested();
        var db = await redis.GetDatabaseAsync();
        var known = (await db.SetMembersAsync(QueueKeys.Queues))
            .Select(m => QueueKeys.ParseRegistryMember(m!)).Where(m => !m.Dropping).Select(m => m.Queue)
            // Named queues are served already; queues configured for runtimes never are; the rest ask their mark.
            .Where(q => Configured(settings, runtimeOptions.Value, q) is null)
            .Order(StringComparer.Ordinal).ToList();
        var remote = await Task.WhenAll(known.Select(q => db.KeyExistsAsync(new QueueKeys(q).Remote)));
        known = [.. known.Where((_, i) => !remote[i])];
        if (readyOnly)
        {
            var lengths = await Task.WhenAll(known.Select(q => db.ListLengthAsync(new QueueKeys(q).Ready)));
            known = [.. known.Where((_, i) => lengths[i] > 0)];
        }
        return [.. named, .. known];
    }

    private Task<SessionResult> RunBoundedSessionAsync(string queue, CancellationToken cancellationToken) =>
        RunOneAsync(queue, options.Value.SessionDuration, options.Value.IdleTimeout, cancellationToken);

    /// <summary>Runs one session on one queue until cancelled or <paramref name="duration"/> elapses (null: until cancelled).</summary>
    public Task<SessionResult> RunSessionAsync(string queue, TimeSpan? duration, CancellationToken cancellationToken) =>
        RunOneAsync(queue, duration, idleTimeout: null, cancellationToken);

    private async Task<SessionResult> RunOneAsync(string queue, TimeSpan? duration, TimeSpan? idleTimeout, CancellationToken cancellationToken)
    {
        JobValidation.QueueName(queue);
        var session = new ProcessorSession(
            new QueueKeys(queue), await redis.GetMultiplexerAsync(), scopes, options.Value, queueOptions.Value,
            custodianOptions.Value.ConsumerTimeout, logger);
        return await session.RunAsync(duration, cancellationToken, idleTimeout);
    }
}
