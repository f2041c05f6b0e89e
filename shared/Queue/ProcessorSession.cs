using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Conveyor.Queue;

/// <summary>One consumer on one queue, from register to deregister. See <see cref="Processor"/>.</summary>
internal sealed class ProcessorSession
{
    /// <summary>How long to wait for handlers that ignore cancellation after the grace period.</summary>
    private static readonly TimeSpan AbandonAfter = TimeSpan.FromSeconds(5);

    private static readonly TimeSpan RedisRetryDelay = TimeSpan.FromMilliseconds(500);

    private readonly QueueKeys _keys;
    private readonly RedisKey _inflight;
    private readonly ConnectionMultiplexer _multiplexer;
    private readonly IDatabase _db;
    private readonly IServiceScopeFactory _scopes;
    private readonly ProcessorOptions _options;
    private readonly QueueOptions _queueOptions;
    private readonly ILogger _logger;
    private readonly KeyValuePair<string, object?> _queueTag;

    private readonly Channel<ClaimedJob> _buffer = Channel.CreateUnbounded<ClaimedJob>(new() { SingleWriter = true });
    private readonly Channel<Completion> _completions = Channel.CreateUnbounded<Completion>(new() { SingleReader = true });
    private readonly AsyncSignal _wake = new();
    private readonly AsyncSignal _slotFreed = new();
    private int _inHand;
    private long _claimed, _acked, _retried, _killed, _returned, _lost;

    public ProcessorSession(
        QueueKeys keys, ConnectionMultiplexer multiplexer, IServiceScopeFactory scopes,
        ProcessorOptions options, QueueOptions queueOptions, ILogger logger)
    {
        _keys = keys;
        ConsumerId = $"{Environment.MachineName}-{Environment.ProcessId}-{Guid.NewGuid():N}";
        _inflight = keys.Inflight(ConsumerId);
        _multiplexer = multiplexer;
        _db = multiplexer.GetDatabase();
        _scopes = scopes;
        _options = options;
        _queueOptions = queueOptions;
        _logger = logger;
        _queueTag = ConveyorTelemetry.QueueTag(keys.Queue);
    }

    public string ConsumerId { get; }

    public async Task<SessionResult> RunAsync(TimeSpan? duration, CancellationToken cancellationToken)
    {
        using var stopClaiming = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        if (duration is { } limit)
        {
            stopClaiming.CancelAfter(limit);
        }
        using var stopHandlers = new CancellationTokenSource();
        using var stopHeartbeat = new CancellationTokenSource();

        var subscription = await _multiplexer.GetSubscriber().SubscribeAsync(_keys.Signal);
        subscription.OnMessage(_ => _wake.Set());
        try
        {
            await BeatAsync();
            _logger.LogInformation("Consumer {Consumer} started on queue {Queue}", ConsumerId, _keys.Queue);

            var heartbeat = HeartbeatLoopAsync(stopHeartbeat.Token);
            var flusher = FlushLoopAsync();
            var workers = Task.WhenAll(Enumerable.Range(0, _options.Concurrency).Select(_ => WorkerLoopAsync(stopClaiming.Token, stopHandlers.Token)));
            try
            {
                await ClaimLoopAsync(stopClaiming.Token);
            }
            catch (OperationCanceledException) when (stopClaiming.IsCancellationRequested)
            {
            }

            // Graceful end: running handlers get the grace period, then their tokens are cancelled.
            if (!await Finishes(workers, _options.ShutdownGrace))
            {
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
            await stopHeartbeat.CancelAsync();
            await heartbeat;
            var deregistered = workers.IsCompleted && await DeregisterAsync();
            _logger.LogInformation(
                "Consumer {Consumer} stopped on queue {Queue}: claimed {Claimed}, acked {Acked}, retried {Retried}, killed {Killed}, returned {Returned}",
                ConsumerId, _keys.Queue, _claimed, _acked, _retried, _killed, _returned);
            return new SessionResult(_keys.Queue, ConsumerId, _claimed, _acked, _retried, _killed, _returned, _lost, deregistered);
        }
        finally
        {
            await subscription.UnsubscribeAsync();
        }
    }

    private static async Task<bool> Finishes(Task task, TimeSpan within)
    {
        if (task.IsCompleted)
        {
            return true;
        }
        return await Task.WhenAny(task, Task.Delay(within)) == task;
    }

    private async Task<bool> BeatAsync()
    {
        var reply = (RedisResult[])(await LuaScripts.Beat.RunAsync(_db, [_keys.Consumers], [ConsumerId]))!;
        return (long)reply[1] == 1;
    }

    private async Task HeartbeatLoopAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            try
            {
                await Task.Delay(_options.HeartbeatInterval, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            try
            {
                if (!await BeatAsync())
                {
                    _logger.LogWarning(
                        "Consumer {Consumer} was taken for dead and its claims were recovered; it registered again", ConsumerId);
                }
            }
            catch (RedisException ex)
            {
                _logger.LogWarning(ex, "Consumer {Consumer}: heartbeat failed", ConsumerId);
            }
        }
    }

    private async Task ClaimLoopAsync(CancellationToken stop)
    {
        var capacity = _options.Concurrency + _options.Prefetch;
        var refill = Math.Max(1, _options.Prefetch / 2);
        while (!stop.IsCancellationRequested)
        {
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
            }
            catch (RedisException ex)
            {
                _logger.LogWarning(ex, "Consumer {Consumer}: claim failed; retrying", ConsumerId);
                await Task.Delay(RedisRetryDelay, stop);
                continue;
            }
            if (claimed < wanted)
            {
                await _wake.WaitAsync(_options.IdlePollInterval, stop);
            }
        }
    }

    private async Task<int> ClaimAsync(int count)
    {
        var reply = (RedisResult[])(await LuaScripts.Claim.RunAsync(
            _db, [_keys.Consumers, _keys.Ready, _inflight, _keys.Jobs, _keys.Seq], [ConsumerId, count]))!;
        var now = (long)reply[0];
        if (now < 0)
        {
            // The custodian removed this consumer (it looked dead); register again and claim next round.
            await BeatAsync();
            return count;
        }
        var token = (long)reply[1];
        var claimed = (reply.Length - 2) / 2;
        if (claimed == 0)
        {
            return 0;
        }
        Interlocked.Add(ref _inHand, claimed);
        _claimed += claimed;
        ConveyorTelemetry.Claimed.Add(claimed, _queueTag);
        for (var i = 2; i < reply.Length; i += 2)
        {
            _buffer.Writer.TryWrite(new ClaimedJob((string)reply[i]!, token, (string)reply[i + 1]!, now));
        }
        return claimed;
    }

    private async Task WorkerLoopAsync(CancellationToken stopClaiming, CancellationToken stopHandlers)
    {
        // Off the caller's stack: the claim loop must start without waiting for a worker.
        await Task.Yield();
        while (true)
        {
            ClaimedJob job;
            try
            {
                job = await _buffer.Reader.ReadAsync(stopClaiming);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            await RunJobAsync(job, stopHandlers);
            Interlocked.Decrement(ref _inHand);
            _slotFreed.Set();
        }
    }

    private async Task RunJobAsync(ClaimedJob claimed, CancellationToken stopHandlers)
    {
        JobRecord record;
        try
        {
            record = JobRecord.Parse(claimed.Record);
        }
        catch (Exception ex) when (ex is System.Text.Json.JsonException or InvalidDataException)
        {
            Complete(Completion.Kill(claimed, 0, $"the job record is unreadable: {ex.Message}"));
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
                Complete(Completion.Kill(claimed, record.Attempt, $"no handler is registered for job type '{record.Type}'"));
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
                Complete(Completion.Kill(claimed, attempt, error));
            }
            else
            {
                var delay = Backoff.Delay(attempt, _queueOptions.RetryBaseDelay, _queueOptions.MaxBackoff);
                Complete(Completion.Retry(claimed, attempt, (long)delay.TotalMilliseconds, error));
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
        for (var failures = 0; ; failures++)
        {
            try
            {
                await Task.WhenAll(
                    SendAsync(batch, CompletionKind.Ack, LuaScripts.Ack, [_inflight, _keys.Jobs]),
                    SendAsync(batch, CompletionKind.Retry, LuaScripts.Retry, [_inflight, _keys.Jobs, _keys.Scheduled]),
                    SendAsync(batch, CompletionKind.Kill, LuaScripts.Kill, [_inflight, _keys.Jobs, _keys.Dead]));
                return;
            }
            catch (RedisException ex) when (failures < 20)
            {
                // Each script is fenced and idempotent for a held claim, so sending a batch twice is safe.
                _logger.LogWarning(ex, "Consumer {Consumer}: could not record {Count} finished jobs; retrying", ConsumerId, batch.Count);
                await Task.Delay(RedisRetryDelay * Math.Min(failures + 1, 10));
            }
            catch (RedisException ex)
            {
                _logger.LogError(
                    ex, "Consumer {Consumer}: gave up recording {Count} finished jobs; they stay claimed and the custodian will requeue them",
                    ConsumerId, batch.Count);
                return;
            }
        }
    }

    private async Task SendAsync(List<Completion> batch, CompletionKind kind, RedisScript script, RedisKey[] keys)
    {
        var items = batch.Where(c => c.Kind == kind && !c.Sent).ToList();
        if (items.Count == 0)
        {
            return;
        }
        var args = new List<RedisValue>(items.Count * 5);
        foreach (var item in items)
        {
            args.Add(item.Job.Id);
            args.Add(item.Job.Token);
            switch (kind)
            {
                case CompletionKind.Retry:
                    args.Add(item.Attempt);
                    args.Add(item.DelayMs);
                    args.Add(item.Error);
                    break;
                case CompletionKind.Kill:
                    args.Add(item.Attempt);
                    args.Add(item.Error);
                    break;
            }
        }
        var reply = (RedisResult[])(await script.RunAsync(_db, keys, [.. args]))!;
        long done = 0;
        for (var i = 0; i < items.Count; i++)
        {
            items[i].Sent = true;
            if ((long)reply[i] == 1)
            {
                done++;
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
        var unstarted = new List<ClaimedJob>();
        while (_buffer.Reader.TryRead(out var job))
        {
            unstarted.Add(job);
        }
        if (unstarted.Count == 0)
        {
            return;
        }
        var args = new List<RedisValue>(1 + unstarted.Count * 2) { _keys.Signal.ToString() };
        foreach (var job in unstarted)
        {
            args.Add(job.Id);
            args.Add(job.Token);
        }
        for (var failures = 0; ; failures++)
        {
            try
            {
                _returned = (long)await LuaScripts.ReturnUnstarted.RunAsync(_db, [_inflight, _keys.Ready], [.. args]);
                Interlocked.Add(ref _inHand, -unstarted.Count);
                return;
            }
            catch (RedisException ex) when (failures < 5)
            {
                _logger.LogWarning(ex, "Consumer {Consumer}: could not hand back {Count} unstarted jobs; retrying", ConsumerId, unstarted.Count);
                await Task.Delay(RedisRetryDelay);
            }
            catch (RedisException ex)
            {
                _logger.LogError(ex, "Consumer {Consumer}: gave up handing back unstarted jobs; the custodian will requeue them", ConsumerId);
                return;
            }
        }
    }

    private async Task<bool> DeregisterAsync()
    {
        try
        {
            return (long)await LuaScripts.Deregister.RunAsync(_db, [_keys.Consumers, _inflight], [ConsumerId]) == 1;
        }
        catch (RedisException ex)
        {
            _logger.LogWarning(ex, "Consumer {Consumer}: deregistering failed; the custodian will remove it", ConsumerId);
            return false;
        }
    }

    private sealed record ClaimedJob(string Id, long Token, string Record, long ClaimedAt);

    private enum CompletionKind
    {
        Ack,
        Retry,
        Kill,
    }

    private sealed class Completion
    {
        private Completion(ClaimedJob job, CompletionKind kind, int attempt, long delayMs, string error)
        {
            Job = job;
            Kind = kind;
            Attempt = attempt;
            DelayMs = delayMs;
            Error = error;
        }

        public ClaimedJob Job { get; }
        public CompletionKind Kind { get; }
        public int Attempt { get; }
        public long DelayMs { get; }
        public string Error { get; }

        /// <summary>Set once a script answered for it, so a retried flush does not send it again.</summary>
        public bool Sent { get; set; }

        public static Completion Ack(ClaimedJob job) => new(job, CompletionKind.Ack, 0, 0, "");
        public static Completion Retry(ClaimedJob job, int attempt, long delayMs, string error) => new(job, CompletionKind.Retry, attempt, delayMs, Truncate(error));
        public static Completion Kill(ClaimedJob job, int attempt, string error) => new(job, CompletionKind.Kill, attempt, 0, Truncate(error));

        private static string Truncate(string error) => error.Length <= 4096 ? error : error[..4096];
    }
}
