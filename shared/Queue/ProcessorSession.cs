using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using Conveyor.Storage;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Conveyor.Queue;

/// <summary>
/// One consumer on one queue, from register to deregister. See <see cref="Processor"/>.
/// Under faults: every loop outlives transient Redis errors (<see cref="Transient"/>) with backoff; a claim whose reply
/// was lost is reconciled with this consumer's inflight set (returned to the queue) before the next claim; a session
/// whose heartbeat fails for half the consumer timeout, or that finds itself taken for dead, stops claiming and ends;
/// a claimed job starts only while the last heartbeat Redis recorded was sent less than half the consumer timeout ago
/// (a process frozen, or starved, past the timeout must not start jobs the custodian may have given to others);
/// and however it ends, the same steps run in order, the heartbeat stopping only after them.
/// </summary>
internal sealed class ProcessorSession
{
    /// <summary>How long to wait for handlers that ignore cancellation after the grace period.</summary>
    private static readonly TimeSpan AbandonAfter = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Record bytes (header and payload) one claim brings back at most (8 MiB; one job is always claimed): a batch of large payloads must not
    /// make one Redis reply, and the memory it takes here, unbounded.
    /// </summary>
    internal const int ClaimMaxBytes = 8 * 1024 * 1024;

    private readonly QueueKeys _keys;
    private readonly RedisKey _inflight;
    private readonly ConnectionMultiplexer _multiplexer;
    private readonly IDatabase _db;
    private readonly IServiceScopeFactory _scopes;
    private readonly ProcessorOptions _options;
    private readonly QueueOptions _queueOptions;
    private readonly TimeSpan _consumerTimeout;
    private readonly ILogger _logger;
    private readonly KeyValuePair<string, object?> _queueTag;

    private readonly Channel<ClaimedJob> _buffer = Channel.CreateUnbounded<ClaimedJob>(new() { SingleWriter = true });
    private readonly Channel<Completion> _completions = Channel.CreateUnbounded<Completion>(new() { SingleReader = true });
    private readonly AsyncSignal _wake = new();
    private readonly AsyncSignal _slotFreed = new();
    private readonly AsyncSignal _beatRecorded = new();

    /// <summary>Claimed jobs a worker took from the buffer but did not start because the session ended first.</summary>
    private readonly ConcurrentQueue<ClaimedJob> _parked = new();

    /// <summary>Claims this session knows it holds (id → claim token): claimed, and neither completed nor handed back.</summary>
    private readonly ConcurrentDictionary<string, long> _held = new(StringComparer.Ordinal);

    /// <summary>Stops claiming: cancelled when the session's time is up, on shutdown, or when it must end early.</summary>
    private CancellationTokenSource _stopClaiming = null!;

    /// <summary>Cancelled once the session has spent its consumer timeout trying to settle after it stopped.</summary>
    private CancellationTokenSource _giveUp = null!;

    private int _inHand;

    /// <summary>When (<see cref="Stopwatch"/> timestamp) the last beat that Redis recorded was sent: Redis' record is no older.</summary>
    private long _lastBeatSent;

    /// <summary>1 once a worker logged that it waits for a heartbeat, until the next beat lands (one line per gap).</summary>
    private int _waitLogged;
    private bool _uncertainClaims;
    private int _end = (int)SessionEnd.Stopped;
    private long _claimed, _acked, _retried, _killed, _returned, _lost, _reconciled;

    public ProcessorSession(
        QueueKeys keys, ConnectionMultiplexer multiplexer, IServiceScopeFactory scopes,
        ProcessorOptions options, QueueOptions queueOptions, TimeSpan consumerTimeout, ILogger logger)
    {
        _keys = keys;
        ConsumerId = $"{Environment.MachineName}-{Environment.ProcessId}-{Guid.NewGuid():N}";
        _inflight = keys.Inflight(ConsumerId);
        _multiplexer = multiplexer;
        _db = multiplexer.GetDatabase();
        _scopes = scopes;
        _options = options;
        _queueOptions = queueOptions;
        _consumerTimeout = consumerTimeout;
        _logger = logger;
        _queueTag = ConveyorTelemetry.QueueTag(keys.Queue);
    }

    public string ConsumerId { get; }

    /// <summary>
    /// A heartbeat older than this may be taken for dead at any moment: a session whose beats have all failed for this
    /// long stops claiming and ends.
    /// </summary>
    private TimeSpan HeartbeatLossLimit => _consumerTimeout / 2;

    /// <summary>
    /// Runs the session until cancelled or <paramref name="duration"/> elapses (null: until cancelled), or, with
    /// <paramref name="idleTimeout"/>, until it has found nothing to claim with no job in hand for that long.
    /// </summary>
    public async Task<SessionResult> RunAsync(TimeSpan? duration, CancellationToken cancellationToken, TimeSpan? idleTimeout = null)
    {
        using var stopClaiming = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        _stopClaiming = stopClaiming;
        if (duration is { } limit)
        {
            stopClaiming.CancelAfter(limit);
        }
        using var stopHandlers = new CancellationTokenSource();
        using var stopHeartbeat = new CancellationTokenSource();
        using var giveUp = new CancellationTokenSource();
        _giveUp = giveUp;

        var subscription = await _multiplexer.GetSubscriber().SubscribeAsync(_keys.Signal);
        subscription.OnMessage(_ => _wake.Set());
        try
        {
            var sent = Stopwatch.GetTimestamp();
            await BeatAsync(register: true);
            Volatile.Write(ref _lastBeatSent, sent);
        }
        catch
        {
            await UnsubscribeAsync(subscription);
            throw;
        }
        _logger.LogInformation("Consumer {Consumer} started on queue {Queue}", ConsumerId, _keys.Queue);

        var heartbeat = HeartbeatLoopAsync(stopHeartbeat.Token);
        var flusher = FlushLoopAsync();
        var workers = Task.WhenAll(Enumerable.Range(0, _options.Concurrency).Select(_ => WorkerLoopAsync(stopClaiming.Token, stopHandlers.Token)));
        Exception? failure = null;
        try
        {
            await ClaimLoopAsync(idleTimeout, stopClaiming.Token);
        }
        catch (OperationCanceledException) when (stopClaiming.IsCancellationRequested)
        {
        }
#pragma warning disable CA1031 // Anything unexpected ends the session the same way; it surfaces after the end steps.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            failure = ex;
            EndBecause(SessionEnd.Failed);
            _logger.LogError(ex, "Consumer {Consumer}: claiming failed; ending the session", ConsumerId);
        }
        finally
        {
            await stopClaiming.CancelAsync();
            giveUp.CancelAfter(_consumerTimeout);
        }

        // The end steps, whatever ended the session. Each one outlives transient errors until giveUp; the heartbeat keeps
        // this consumer's claims alive until the last of them, so what they settle is not recovered behind their back.
        var deregistered = false;
        if (!await Finishes(workers, _options.ShutdownGrace))
        {
            // Graceful end: running handlers got the grace period; now their tokens are cancelled.
            _logger.LogWarning("Consumer {Consumer}: handlers still running after the grace period; cancelling them", ConsumerId);
            await stopHandlers.CancelAsync();
            if (!await Finishes(workers, AbandonAfter))
            {
                _logger.LogError(
                    "Consumer {Consumer}: handlers ignore cancellation; their jobs stay claimed and the custodian will recover them", ConsumerId);
            }
        }
        await ReturnUnstartedAsync();
        _completions.Writer.TryComplete();
        await flusher;
        await ReconcileUntilSettledAsync();
        await stopHeartbeat.CancelAsync();
        await heartbeat;
        if (workers.IsCompleted)
        {
            deregistered = await DeregisterAsync();
        }
        await UnsubscribeAsync(subscription);

        var end = (SessionEnd)Volatile.Read(ref _end);
        _logger.Log(
            end is SessionEnd.Stopped or SessionEnd.Idle ? LogLevel.Information : LogLevel.Warning,
            "Consumer {Consumer} stopped on queue {Queue} ({End}): claimed {Claimed}, acked {Acked}, retried {Retried}, killed {Killed}, returned {Returned}, reconciled {Reconciled}, lost claims {Lost}",
            ConsumerId, _keys.Queue, end, _claimed, _acked, _retried, _killed, _returned, _reconciled, _lost);
        if (failure is not null)
        {
            throw new InvalidOperationException($"The processor session of consumer {ConsumerId} on queue {_keys.Queue} failed", failure);
        }
        return new SessionResult(_keys.Queue, ConsumerId, _claimed, _acked, _retried, _killed, _returned, _lost, deregistered)
        {
            Reconciled = _reconciled,
            End = end,
        };
    }

    private static async Task<bool> Finishes(Task task, TimeSpan within)
    {
        if (task.IsCompleted)
        {
            return true;
        }
        return await Task.WhenAny(task, Task.Delay(within)) == task;
    }

    /// <summary>Records why the session ends (the first reason wins) and stops claiming.</summary>
    private void EndBecause(SessionEnd reason)
    {
        Interlocked.CompareExchange(ref _end, (int)reason, (int)SessionEnd.Stopped);
        _stopClaiming.Cancel();
    }

    /// <summary>Registers (first beat) or beats. False when a beat finds this consumer taken for dead.</summary>
    private async Task<bool> BeatAsync(bool register)
    {
        var reply = (RedisResult[])(await LuaScripts.Beat.RunAsync(_db, [_keys.Consumers], [ConsumerId, register ? 1 : 0]))!;
        return (long)reply[1] == 1;
    }

    private async Task HeartbeatLoopAsync(CancellationToken stop)
    {
        var failures = 0;
        while (true)
        {
            try
            {
                await Task.Delay(failures == 0 ? _options.HeartbeatInterval : Transient.Delay(failures, _options.HeartbeatInterval), stop);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            try
            {
                var sent = Stopwatch.GetTimestamp();
                if (!await BeatAsync(register: false))
                {
                    _logger.LogWarning(
                        "Consumer {Consumer} was taken for dead and its claims are recovered; ending the session", ConsumerId);
                    EndBecause(SessionEnd.TakenForDead);
                    return;
                }
                Volatile.Write(ref _lastBeatSent, sent);
                Volatile.Write(ref _waitLogged, 0);
                _beatRecorded.Set();
                failures = 0;
            }
            catch (Exception ex) when (Transient.IsRedis(ex))
            {
                failures++;
                var silent = Stopwatch.GetElapsedTime(Volatile.Read(ref _lastBeatSent));
                _logger.LogWarning(ex, "Consumer {Consumer}: heartbeat failed ({Failures} in a row, none recorded for {Silent})", ConsumerId, failures, silent);
                if (silent > HeartbeatLossLimit && !_stopClaiming.IsCancellationRequested)
                {
                    _logger.LogError(
                        "Consumer {Consumer}: no heartbeat recorded for {Silent}, half the consumer timeout; ending the session before the custodian takes it for dead",
                        ConsumerId, silent);
                    EndBecause(SessionEnd.HeartbeatLost);
                }
            }
#pragma warning disable CA1031 // A beat that fails for good ends the session; its claims are recovered once it is silent.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                _logger.LogError(ex, "Consumer {Consumer}: heartbeat failed; ending the session", ConsumerId);
                EndBecause(SessionEnd.Failed);
                return;
            }
        }
    }

    /// <summary>Under load, the room worth a claim: half the prefetch.</summary>
    private int Refill => Math.Max(1, _options.Prefetch / 2);

    private async Task ClaimLoopAsync(TimeSpan? idleTimeout, CancellationToken stop)
    {
        var capacity = _options.Concurrency + _options.Prefetch;
        var refill = Refill;
        var failures = 0;
        var busy = Stopwatch.GetTimestamp();
        while (!stop.IsCancellationRequested)
        {
            if (_uncertainClaims && !await TryReconcileAsync())
            {
                await Task.Delay(Transient.Delay(++failures), stop);
                continue;
            }
            _slotFreed.Reset();
            var free = capacity - Volatile.Read(ref _inHand);
            // Under load, claim in worthwhile batches; when the buffer runs dry, claim whatever fits.
            if (free < 1 || (free < refill && _buffer.Reader.Count > 0))
            {
                await _slotFreed.WaitAsync(Timeout.InfiniteTimeSpan, stop);
                continue;
            }
            _wake.Reset();
            var wanted = Math.Min(free, _options.Prefetch);
            int claimed;
            try
            {
                claimed = await ClaimAsync(wanted);
                failures = 0;
            }
            catch (Exception ex) when (Transient.IsRedis(ex))
            {
                // The script may have run even though its reply was lost: look in the inflight set before claiming again.
                _uncertainClaims = true;
                _logger.LogWarning(ex, "Consumer {Consumer}: claim failed; reconciling, then retrying", ConsumerId);
                await Task.Delay(Transient.Delay(++failures), stop);
                continue;
            }
            if (claimed < 0)
            {
                _logger.LogWarning("Consumer {Consumer}: claim refused (taken for dead, or heartbeat older than the consumer timeout); ending the session", ConsumerId);
                EndBecause(SessionEnd.TakenForDead);
                return;
            }
            if (claimed > 0 || Volatile.Read(ref _inHand) > 0)
            {
                busy = Stopwatch.GetTimestamp();
            }
            else if (idleTimeout is { } idle && Stopwatch.GetElapsedTime(busy) >= idle)
            {
                EndBecause(SessionEnd.Idle);
                return;
            }
            if (claimed < wanted)
            {
                await _wake.WaitAsync(_options.IdlePollInterval, stop);
            }
        }
    }

    /// <summary>Claims up to <paramref name="count"/> jobs into the buffer; returns how many, or -1 when refused.</summary>
    private async Task<int> ClaimAsync(int count)
    {
        var reply = (RedisResult[])(await LuaScripts.Claim.RunAsync(
            _db,
            [_keys.Consumers, _keys.Ready, _inflight, _keys.Jobs, _keys.State, _keys.Payloads, _keys.Seq],
            [ConsumerId, count, (long)_consumerTimeout.TotalMilliseconds, ClaimMaxBytes, _queueOptions.MaxPayloadBytes]))!;
        var now = (long)reply[0];
        if (now < 0)
        {
            return -1;
        }
        var token = (long)reply[1];
        var claimed = (reply.Length - 2) / 3;
        if (claimed == 0)
        {
            return 0;
        }
        Interlocked.Add(ref _inHand, claimed);
        _claimed += claimed;
        ConveyorTelemetry.Claimed.Add(claimed, _queueTag);
        for (var i = 2; i < reply.Length; i += 3)
        {
            var id = (string)reply[i]!;
            _held[id] = token;
            var record = (RedisValue)reply[i + 1];
            _buffer.Writer.TryWrite(new ClaimedJob(id, token, record, (RedisValue)reply[i + 2], (int)record.Length(), now));
        }
        return claimed;
    }

    /// <summary>
    /// Hands back every claim in this consumer's inflight set that the session does not know it holds: claims whose reply
    /// was lost. False when Redis did not answer (try again later).
    /// </summary>
    private async Task<bool> TryReconcileAsync()
    {
        try
        {
            var entries = await _db.SortedSetRangeByRankWithScoresAsync(_inflight);
            var strays = entries.Where(e => !_held.ContainsKey(e.Element!)).Select(e => ((string)e.Element!, (long)e.Score)).ToList();
            if (strays.Count > 0)
            {
                var back = await HandBackAsync(strays);
                Interlocked.Add(ref _reconciled, back);
                _logger.LogWarning("Consumer {Consumer}: {Count} claims whose reply was lost went back to the queue", ConsumerId, back);
            }
            _uncertainClaims = false;
            return true;
        }
        catch (Exception ex) when (Transient.IsRedis(ex))
        {
            _logger.LogWarning(ex, "Consumer {Consumer}: could not read its inflight set to reconcile", ConsumerId);
            return false;
        }
    }

    private async Task ReconcileUntilSettledAsync()
    {
        for (var failures = 1; !await TryReconcileAsync(); failures++)
        {
            if (!await DelayUnlessGivenUpAsync(failures, "reconcile its claims"))
            {
                return;
            }
        }
    }

    private async Task WorkerLoopAsync(CancellationToken stopClaiming, CancellationToken stopHandlers)
    {
        // Off the caller's stack: the claim loop must start without waiting for a worker.
        await Task.Yield();
        var capacity = _options.Concurrency + _options.Prefetch;
        var refill = Refill;
        while (!stopClaiming.IsCancellationRequested)
        {
            if (!_buffer.Reader.TryRead(out var job))
            {
                // The buffer ran dry: the claim loop claims whatever fits.
                _slotFreed.Set();
                try
                {
                    job = await _buffer.Reader.ReadAsync(stopClaiming);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
            if (!MayStart() && !await WaitUntilMayStartAsync(stopClaiming))
            {
                _parked.Enqueue(job);
                return;
            }
            await RunJobAsync(job, stopHandlers);
            // The claim loop waits for room for a worthwhile batch (or a dry buffer, above): waking it for every finished
            // job would cost a thread hand-off per job for nothing.
            if (capacity - Interlocked.Decrement(ref _inHand) >= refill)
            {
                _slotFreed.Set();
            }
        }
    }

    /// <summary>
    /// Whether the last beat Redis recorded was sent less than <see cref="HeartbeatLossLimit"/> ago, so that the custodian
    /// cannot have taken this consumer for dead (that takes the whole consumer timeout): a claimed job may start. Always,
    /// unless the process was frozen or starved, or Redis stalled.
    /// </summary>
    private bool MayStart() => Stopwatch.GetElapsedTime(Volatile.Read(ref _lastBeatSent)) < HeartbeatLossLimit;

    /// <summary>Waits until <see cref="MayStart"/>; false when the session stops claiming first (the job goes back at the end).</summary>
    private async Task<bool> WaitUntilMayStartAsync(CancellationToken stopClaiming)
    {
        if (Interlocked.Exchange(ref _waitLogged, 1) == 0)
        {
            _logger.LogWarning(
                "Consumer {Consumer}: no heartbeat recorded for {Silent}; claimed jobs wait for one before they start (the custodian may have taken them back)",
                ConsumerId, Stopwatch.GetElapsedTime(Volatile.Read(ref _lastBeatSent)));
        }
        while (true)
        {
            _beatRecorded.Reset();
            if (MayStart())
            {
                return true;
            }
            try
            {
                await _beatRecorded.WaitAsync(_options.HeartbeatInterval, stopClaiming);
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }
    }

    private async Task RunJobAsync(ClaimedJob claimed, CancellationToken stopHandlers)
    {
        JobRecord record;
        try
        {
            record = JobRecord.Read(claimed.Record, claimed.State);
        }
        catch (InvalidDataException ex)
        {
            Complete(Completion.Kill(claimed, 0, 1, claimed.ClaimedAt, $"the job record is unreadable: {ex.Message}"));
            return;
        }
        var attempt = record.Attempt + 1;
        var typeTag = new KeyValuePair<string, object?>("conveyor.job.type", record.Type);
        var waited = claimed.ClaimedAt - Math.Max(record.DueAt, record.EnqueuedAt);
        ConveyorTelemetry.WaitTime.Record(Math.Max(0, waited), _queueTag, typeTag);

        ActivityContext.TryParse(record.TraceParent, null, out var parent);
        using var activity = ConveyorTelemetry.Source.StartActivity($"process {record.Type}", ActivityKind.Consumer, parent);
        activity?.SetTag("conveyor.queue", _keys.Queue);
        activity?.SetTag("conveyor.job.id", claimed.Id);
        activity?.SetTag("conveyor.job.attempt", attempt);

        var job = new Job(
            claimed.Id, _keys.Queue, record.Type, record.Payload, attempt, record.MaxAttempts,
            DateTimeOffset.FromUnixTimeMilliseconds(record.EnqueuedAt));
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stopHandlers);
        timeout.CancelAfter(_options.JobTimeout);
        var started = Stopwatch.GetTimestamp();
        await using var scope = _scopes.CreateAsyncScope();
        try
        {
            var handler = scope.ServiceProvider.GetKeyedService<IJobHandler>(record.Type);
            if (handler is null)
            {
                Complete(Completion.Kill(claimed, record.Attempt, record.MaxAttempts, record.DueAt, $"no handler is registered for job type '{record.Type}'"));
                return;
            }
            await handler.HandleAsync(job, timeout.Token);
            Complete(Completion.Ack(claimed));
        }
#pragma warning disable CA1031 // A handler may throw anything; every failure becomes a retry or a kill.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            var error = stopHandlers.IsCancellationRequested
                ? "interrupted: the processor stopped before the handler finished"
                : timeout.IsCancellationRequested
                    ? $"timed out after {_options.JobTimeout}"
                    : $"{ex.GetType().FullName}: {ex.Message}";
            activity?.SetStatus(ActivityStatusCode.Error, error);
            if (attempt >= record.MaxAttempts)
            {
                Complete(Completion.Kill(claimed, attempt, record.MaxAttempts, record.DueAt, error));
            }
            else
            {
                var delay = Backoff.Delay(attempt, _queueOptions.RetryBaseDelay, _queueOptions.MaxBackoff);
                Complete(Completion.Retry(claimed, attempt, record.MaxAttempts, (long)delay.TotalMilliseconds, error));
            }
        }
        finally
        {
            ConveyorTelemetry.Duration.Record(Stopwatch.GetElapsedTime(started).TotalMilliseconds, _queueTag, typeTag);
        }
    }

    private void Complete(Completion completion)
    {
        if (!_completions.Writer.TryWrite(completion))
        {
            // Only a handler that outlived the session gets here; its claim is left to the custodian.
            _logger.LogWarning("Consumer {Consumer}: job {Job} finished after the session ended", ConsumerId, completion.Job.Id);
        }
    }

    private async Task FlushLoopAsync()
    {
        var reader = _completions.Reader;
        var batch = new List<Completion>(_options.CompletionBatchSize);
        // Completions that pile up while one script call is in flight go out together in the next one.
        while (await reader.WaitToReadAsync())
        {
            while (batch.Count < _options.CompletionBatchSize && reader.TryRead(out var completion))
            {
                batch.Add(completion);
            }
            await FlushAsync(batch);
            batch.Clear();
        }
    }

    private async Task FlushAsync(List<Completion> batch)
    {
        for (var failures = 1; ; failures++)
        {
            try
            {
                await Task.WhenAll(
                    SendAsync(batch, CompletionKind.Ack, LuaScripts.Ack, [_inflight, _keys.Jobs, _keys.State, _keys.History]),
                    SendAsync(batch, CompletionKind.Retry, LuaScripts.Retry, [_inflight, _keys.State, _keys.Scheduled, _keys.History]),
                    SendAsync(batch, CompletionKind.Kill, LuaScripts.Kill, [_inflight, _keys.State, _keys.Dead, _keys.History]));
                return;
            }
            catch (Exception ex) when (Transient.IsRedis(ex))
            {
                // Each script is fenced and idempotent for a held claim, so sending a batch twice is safe. What was
                // not answered may have been recorded all the same: a refusal on the next try does not mean lost.
                foreach (var completion in batch)
                {
                    completion.Unanswered = !completion.Sent;
                }
                _logger.LogWarning(ex, "Consumer {Consumer}: could not record {Count} finished jobs; retrying", ConsumerId, batch.Count(c => !c.Sent));
                if (!await DelayUnlessGivenUpAsync(failures, "record finished jobs"))
                {
                    return;
                }
            }
#pragma warning disable CA1031 // These claims stay held: end the session so that the custodian recovers them.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                _logger.LogError(ex, "Consumer {Consumer}: recording finished jobs failed; ending the session so that the custodian recovers them", ConsumerId);
                EndBecause(SessionEnd.Failed);
                return;
            }
        }
    }

    private async Task SendAsync(List<Completion> batch, CompletionKind kind, RedisScript script, RedisKey[] keys)
    {
        var pending = batch.Where(c => c.Kind == kind && !c.Sent).ToList();
        foreach (var call in LuaScripts.Calls(pending, _options.CompletionBatchSize, c => c.Bytes))
        {
            await SendCallAsync(call, kind, script, keys);
        }
    }

    private async Task SendCallAsync(List<Completion> items, CompletionKind kind, RedisScript script, RedisKey[] keys)
    {
        var args = new List<RedisValue>(items.Count * 6);
        foreach (var item in items)
        {
            args.Add(item.Job.Id);
            args.Add(item.Job.Token);
            if (kind != CompletionKind.Ack)
            {
                args.Add(item.Attempt);
                args.Add(item.MaxAttempts);
                args.Add(item.DelayOrDueMs);
                args.Add(item.Error);
            }
        }
        var reply = (RedisResult[])(await script.RunAsync(_db, keys, [.. args]))!;
        long done = 0;
        for (var i = 0; i < items.Count; i++)
        {
            items[i].Sent = true;
            // Only this claim: a retry's second try can land after the job came back and was claimed again here, and the
            // newer claim must stay known, or reconciling would hand it back while it runs (and run it twice).
            _held.TryRemove(KeyValuePair.Create(items[i].Job.Id, items[i].Job.Token));
            if ((long)reply[i] == 1)
            {
                done++;
            }
            else if (items[i].Unanswered)
            {
                // Most likely recorded by the try whose reply was lost (the claim would otherwise still be held).
                done++;
                _logger.LogDebug("Consumer {Consumer}: job {Job}'s {Kind} was refused on a second try: the first, unanswered, recorded it", ConsumerId, items[i].Job.Id, kind);
            }
            else
            {
                Interlocked.Increment(ref _lost);
                ConveyorTelemetry.LostClaims.Add(1, _queueTag);
                _logger.LogWarning(
                    "Consumer {Consumer}: job {Job} was recovered from this consumer before its {Kind} arrived; the {Kind} changed nothing",
                    ConsumerId, items[i].Job.Id, kind, kind);
            }
        }
        switch (kind)
        {
            case CompletionKind.Ack:
                Interlocked.Add(ref _acked, done);
                ConveyorTelemetry.Acked.Add(done, _queueTag);
                break;
            case CompletionKind.Retry:
                Interlocked.Add(ref _retried, done);
                ConveyorTelemetry.Retried.Add(done, _queueTag);
                break;
            case CompletionKind.Kill:
                Interlocked.Add(ref _killed, done);
                ConveyorTelemetry.Killed.Add(done, _queueTag);
                break;
        }
    }

    private async Task ReturnUnstartedAsync()
    {
        var unstarted = new List<(string Id, long Token)>();
        while (_parked.TryDequeue(out var job) || _buffer.Reader.TryRead(out job))
        {
            unstarted.Add((job.Id, job.Token));
        }
        if (unstarted.Count == 0)
        {
            return;
        }
        for (var failures = 1; ; failures++)
        {
            try
            {
                _returned += await HandBackAsync(unstarted);
                Interlocked.Add(ref _inHand, -unstarted.Count);
                return;
            }
            catch (Exception ex) when (Transient.IsRedis(ex))
            {
                _logger.LogWarning(ex, "Consumer {Consumer}: could not hand back {Count} unstarted jobs; retrying", ConsumerId, unstarted.Count);
                if (!await DelayUnlessGivenUpAsync(failures, "hand back unstarted jobs"))
                {
                    return;
                }
            }
        }
    }

    /// <summary>Returns claims to the front of the ready list, in order (fenced: claims no longer held are skipped).</summary>
    private async Task<long> HandBackAsync(IReadOnlyList<(string Id, long Token)> claims)
    {
        long back = 0;
        // Bounded calls, last chunk first: each call puts its jobs in front of those of the calls before it.
        for (var end = claims.Count; end > 0; end -= _options.CompletionBatchSize)
        {
            var start = Math.Max(0, end - _options.CompletionBatchSize);
            var args = new List<RedisValue>(1 + (end - start) * 2) { _keys.Signal.ToString() };
            for (var i = start; i < end; i++)
            {
                args.Add(claims[i].Id);
                args.Add(claims[i].Token);
            }
            back += (long)await LuaScripts.ReturnUnstarted.RunAsync(_db, [_inflight, _keys.Ready], [.. args]);
            for (var i = start; i < end; i++)
            {
                _held.TryRemove(KeyValuePair.Create(claims[i].Id, claims[i].Token));
            }
        }
        return back;
    }

    private async Task<bool> DeregisterAsync()
    {
        for (var failures = 1; ; failures++)
        {
            try
            {
                return (long)await LuaScripts.Deregister.RunAsync(_db, [_keys.Consumers, _inflight], [ConsumerId]) == 1;
            }
            catch (Exception ex) when (Transient.IsRedis(ex))
            {
                _logger.LogWarning(ex, "Consumer {Consumer}: deregistering failed", ConsumerId);
                if (!await DelayUnlessGivenUpAsync(failures, "deregister; the custodian will remove it"))
                {
                    return false;
                }
            }
        }
    }

    /// <summary>Waits before the next try of an end step; false (logged) once the session has given up settling.</summary>
    private async Task<bool> DelayUnlessGivenUpAsync(int failures, string what)
    {
        try
        {
            await Task.Delay(Transient.Delay(failures), _giveUp.Token);
            return true;
        }
        catch (OperationCanceledException)
        {
            _logger.LogError(
                "Consumer {Consumer}: gave up trying to {What} after the consumer timeout; the custodian recovers what it still holds", ConsumerId, what);
            return false;
        }
    }

    private async Task UnsubscribeAsync(ChannelMessageQueue subscription)
    {
        try
        {
            await subscription.UnsubscribeAsync();
        }
#pragma warning disable CA1031 // Unsubscribing is best effort: it must never hide why the session ended.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            _logger.LogWarning(ex, "Consumer {Consumer}: unsubscribing from the wake-up channel failed", ConsumerId);
        }
    }

    private sealed record ClaimedJob(string Id, long Token, RedisValue Record, RedisValue State, int RecordBytes, long ClaimedAt);

    private enum CompletionKind
    {
        Ack,
        Retry,
        Kill,
    }

    private sealed class Completion
    {
        private Completion(ClaimedJob job, CompletionKind kind, int attempt, int maxAttempts, long delayOrDueMs, string error)
        {
            Job = job;
            Kind = kind;
            Attempt = attempt;
            MaxAttempts = maxAttempts;
            DelayOrDueMs = delayOrDueMs;
            Error = error;
            // What its script call costs beyond the count: the payload an ack frees, the error text a retry or kill passes.
            Bytes = kind == CompletionKind.Ack ? job.RecordBytes : System.Text.Encoding.UTF8.GetByteCount(error);
        }

        public ClaimedJob Job { get; }
        public CompletionKind Kind { get; }
        public int Attempt { get; }
        public int MaxAttempts { get; }

        /// <summary>Retry: the backoff in ms. Kill: the due time the job keeps (ms).</summary>
        public long DelayOrDueMs { get; }

        public string Error { get; }

        /// <summary>Bytes that count against <see cref="LuaScripts.CallBudgetBytes"/>.</summary>
        public int Bytes { get; }

        /// <summary>Set once a script answered for it, so a retried flush does not send it again.</summary>
        public bool Sent { get; set; }

        /// <summary>Set when a try that included it failed without an answer: it may have been recorded.</summary>
        public bool Unanswered { get; set; }

        public static Completion Ack(ClaimedJob job) => new(job, CompletionKind.Ack, 0, 0, 0, "");
        public static Completion Retry(ClaimedJob job, int attempt, int maxAttempts, long delayMs, string error) =>
            new(job, CompletionKind.Retry, attempt, maxAttempts, delayMs, Truncate(error));
        public static Completion Kill(ClaimedJob job, int attempt, int maxAttempts, long dueAt, string error) =>
            new(job, CompletionKind.Kill, attempt, maxAttempts, dueAt, Truncate(error));

        private static string Truncate(string error) => error.Length <= 4096 ? error : error[..4096];
    }
}
