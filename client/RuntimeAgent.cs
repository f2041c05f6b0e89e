using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Conveyor.Client;

/// <summary>How a <see cref="RuntimeAgent"/> runs.</summary>
public sealed class RuntimeAgentOptions
{
    /// <summary>The name it registers with when it has no <see cref="Credentials"/>. Default: the machine name.</summary>
    public string Name { get; set; } = Environment.MachineName;

    /// <summary>Metadata it registers with (a JSON object).</summary>
    public JsonElement? Metadata { get; set; }

    /// <summary>
    /// Credentials of a runtime registered before (stored from <see cref="OnRegistered"/>): the agent reuses them, and
    /// registers a new runtime only when the server no longer knows this one.
    /// </summary>
    public RuntimeCredentials? Credentials { get; set; }

    /// <summary>Called once a new runtime is registered: store its credentials to reuse them next time.</summary>
    public Func<RuntimeCredentials, CancellationToken, Task>? OnRegistered { get; set; }

    /// <summary>The queues to claim from, one claim loop each. Default: <c>default</c>.</summary>
    public IReadOnlyList<string> Queues { get; set; } = ["default"];

    /// <summary>Jobs running at once, over all queues. Default: 8. Bounds: 1 to 1000.</summary>
    public int Concurrency { get; set; } = 8;

    /// <summary>Most jobs one claim takes (never more than the free slots). Default: 100. Bounds: 1 to 1000.</summary>
    public int MaxPerClaim { get; set; } = 100;

    /// <summary>
    /// Claims each queue keeps in flight at once, waiting ones included. Default: 1. Bounds: 1 to 16. With one, the next
    /// claim leaves only once the last one answered, so a queue yields at most <see cref="MaxPerClaim"/> jobs per round
    /// trip; raise it (with <see cref="Concurrency"/> at least this times <see cref="MaxPerClaim"/>) when the round trip,
    /// not the jobs, bounds throughput. Each waiting claim holds one HTTP request open.
    /// </summary>
    public int ClaimsInFlight { get; set; } = 1;

    /// <summary>
    /// How long one claim waits for a job (a long poll). Default: 20 s. At most the server's
    /// <c>Conveyor:Runtimes:MaxClaimWait</c>, and keep it below the HttpClient's <c>Timeout</c> (100 s by default).
    /// </summary>
    public TimeSpan ClaimWait { get; set; } = TimeSpan.FromSeconds(20);

    /// <summary>When stopping, running jobs get this long to finish before their token is cancelled. Default: 30 s.</summary>
    public TimeSpan ShutdownGrace { get; set; } = TimeSpan.FromSeconds(30);
}

/// <summary>Throw it from a job delegate to send the job to the dead set now, without further attempts.</summary>
public sealed class PermanentJobFailureException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// A remote runtime in a .NET process: registers (or reuses stored credentials), beats at the interval the server
/// answers, claims jobs with bounded concurrency (long polls, <see cref="RuntimeAgentOptions.ClaimsInFlight"/> per
/// queue), runs a delegate per job, acks what returns and fails what throws (retried with backoff;
/// <see cref="PermanentJobFailureException"/>: dead now), extends the claims of running jobs, and stops gracefully: no
/// more claims, running jobs get
/// <see cref="RuntimeAgentOptions.ShutdownGrace"/>, then their token is cancelled and they count as failed.
/// Delivery is at least once: a job can run again (after a crash, an expired claim, or this runtime going offline),
/// so make its effect idempotent with <see cref="ClaimedJob.Id"/>.
/// </summary>
public sealed class RuntimeAgent : IDisposable
{
    private const string OfflineProblem = "urn:conveyor:problem:runtime-offline";
    private static readonly TimeSpan AbandonAfter = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(5);

    private readonly ConveyorClient _client;
    private readonly RuntimeAgentOptions _options;
    private readonly Func<ClaimedJob, CancellationToken, Task> _run;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _slots;
    private readonly Channel<Settlement> _settlements = Channel.CreateUnbounded<Settlement>(new() { SingleReader = true });
    private readonly ConcurrentDictionary<string, ClaimedJob> _running = new(StringComparer.Ordinal);
    private RuntimeCredentials? _credentials;
    private TimeSpan _beatInterval = TimeSpan.FromSeconds(15);
    private long _claimTimeoutTicks;

    /// <summary>Set once the first claim has told the server's claim timeout, which paces extensions.</summary>
    private readonly TaskCompletionSource _claimTimeoutKnown = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public RuntimeAgent(ConveyorClient client, RuntimeAgentOptions options, Func<ClaimedJob, CancellationToken, Task> run, ILogger<RuntimeAgent>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(run);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Concurrency, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.Concurrency, 1000);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxPerClaim, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.MaxPerClaim, 1000);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.ClaimsInFlight, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.ClaimsInFlight, 16);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.ClaimWait, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.ShutdownGrace, TimeSpan.Zero);
        if (options.Queues.Count == 0)
        {
            throw new ArgumentException("Give at least one queue", nameof(options));
        }
        _client = client;
        _options = options;
        _run = run;
        _logger = logger ?? NullLogger<RuntimeAgent>.Instance;
        _slots = new SemaphoreSlim(options.Concurrency, options.Concurrency);
    }

    /// <summary>The runtime this agent runs as, once <see cref="RunAsync"/> has registered or reused it.</summary>
    public RuntimeCredentials? Credentials => Volatile.Read(ref _credentials);

    public void Dispose() => _slots.Dispose();

    /// <summary>Jobs running now.</summary>
    public int Running => _running.Count;

    /// <summary>
    /// Runs until <paramref name="stoppingToken"/> is cancelled, then stops gracefully. Throws
    /// <see cref="ConveyorProblemException"/> when the runtime is deleted or its token refused while it runs (after the
    /// same graceful end).
    /// </summary>
    public async Task RunAsync(CancellationToken stoppingToken)
    {
        var credentials = await StartAsync(stoppingToken);
        Volatile.Write(ref _credentials, credentials);
        using var stopClaiming = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        using var stopJobs = new CancellationTokenSource();
        using var stopBackground = new CancellationTokenSource();
        var fatal = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
        var beating = BeatLoopAsync(credentials, fatal, stopClaiming, stopBackground.Token);
        var extending = ExtendLoopAsync(credentials, stopBackground.Token);
        var settling = SettleLoopAsync(credentials);
        try
        {
            await Task.WhenAll(_options.Queues.SelectMany(queue => Enumerable.Range(0, _options.ClaimsInFlight)
                .Select(_ => ClaimLoopAsync(credentials, queue, fatal, stopClaiming, stopJobs.Token))));
        }
        finally
        {
            await stopClaiming.CancelAsync();
            // Every slot back means no job runs: grace first, then cancellation, then give up on the stubborn ones.
            if (!await AllSlotsBackAsync(_options.ShutdownGrace))
            {
                await stopJobs.CancelAsync();
                if (!await AllSlotsBackAsync(AbandonAfter))
                {
                    _logger.LogError("Runtime {Runtime}: {Count} jobs ignore cancellation; their claims go back when they expire", credentials.Id, _running.Count);
                }
            }
            _settlements.Writer.TryComplete();
            await settling;
            await stopBackground.CancelAsync();
            await Task.WhenAll(beating, extending);
        }
        if (fatal.Task.IsCompleted)
        {
            throw await fatal.Task;
        }
    }

    private async Task<RuntimeCredentials> StartAsync(CancellationToken cancellationToken)
    {
        if (_options.Credentials is { } stored)
        {
            try
            {
                _beatInterval = (await _client.BeatAsync(stored, cancellationToken)).BeatInterval;
                return stored;
            }
            catch (ConveyorProblemException ex) when (ex.Status == HttpStatusCode.NotFound)
            {
                _logger.LogWarning("Runtime {Runtime} no longer exists on the server; registering a new one", stored.Id);
            }
        }
        var fresh = await _client.RegisterRuntimeAsync(_options.Name, _options.Metadata, cancellationToken);
        if (_options.OnRegistered is { } onRegistered)
        {
            await onRegistered(fresh, cancellationToken);
        }
        _beatInterval = (await _client.BeatAsync(fresh, cancellationToken)).BeatInterval;
        _logger.LogInformation("Registered runtime {Runtime} ({Name})", fresh.Id, _options.Name);
        return fresh;
    }

    private async Task<bool> AllSlotsBackAsync(TimeSpan within)
    {
        using var limit = new CancellationTokenSource(within);
        var taken = 0;
        try
        {
            for (; taken < _options.Concurrency; taken++)
            {
                await _slots.WaitAsync(limit.Token);
            }
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        finally
        {
            if (taken > 0)
            {
                _slots.Release(taken);
            }
        }
    }

    private async Task ClaimLoopAsync(
        RuntimeCredentials runtime, string queue, TaskCompletionSource<Exception> fatal, CancellationTokenSource stopClaiming, CancellationToken stopJobs)
    {
        var stop = stopClaiming.Token;
        for (var failures = 0; !stop.IsCancellationRequested;)
        {
            var reserved = 0;
            try
            {
                await _slots.WaitAsync(stop);
                reserved = 1;
                while (reserved < _options.MaxPerClaim && _slots.Wait(0, CancellationToken.None))
                {
                    reserved++;
                }
                var claimed = await _client.ClaimAsync(runtime, queue, reserved, _options.ClaimWait, stop);
                failures = 0;
                Interlocked.Exchange(ref _claimTimeoutTicks, claimed.ClaimTimeout.Ticks);
                _claimTimeoutKnown.TrySetResult();
                foreach (var job in claimed.Jobs)
                {
                    reserved--;
                    _running[job.Claim] = job;
                    _ = Task.Run(() => RunJobAsync(job, stopJobs), CancellationToken.None);
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (ConveyorProblemException ex) when (ex.Type == OfflineProblem)
            {
                // Swept offline (it missed beats): a beat brings it back, then it claims again.
                _logger.LogWarning("Runtime {Runtime} is offline on the server; beating before it claims again", runtime.Id);
                await BeatOnceAsync(runtime, fatal, stopClaiming);
            }
            catch (ConveyorProblemException ex) when (ex.Status is HttpStatusCode.NotFound or HttpStatusCode.Unauthorized)
            {
                Fail(fatal, stopClaiming, ex);
                return;
            }
            catch (Exception ex) when (IsTransient(ex))
            {
                failures++;
                _logger.LogWarning(ex, "Runtime {Runtime}: claiming from {Queue} failed ({Failures} in a row); trying again", runtime.Id, queue, failures);
                await DelayAsync(failures, stop);
            }
            finally
            {
                if (reserved > 0)
                {
                    _slots.Release(reserved);
                }
            }
        }
    }

    private async Task RunJobAsync(ClaimedJob job, CancellationToken stopJobs)
    {
        try
        {
            await _run(job, stopJobs);
            _settlements.Writer.TryWrite(new Settlement(job.Claim, null, Retry: false));
        }
        catch (PermanentJobFailureException ex)
        {
            _settlements.Writer.TryWrite(new Settlement(job.Claim, ex.Message, Retry: false));
        }
#pragma warning disable CA1031 // A job delegate may throw anything; every failure becomes a fail of its claim.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            var error = stopJobs.IsCancellationRequested
                ? "interrupted: the runtime agent stopped before the job finished"
                : $"{ex.GetType().FullName}: {ex.Message}";
            _settlements.Writer.TryWrite(new Settlement(job.Claim, error, Retry: true));
        }
        finally
        {
            _running.TryRemove(job.Claim, out _);
            _slots.Release();
        }
    }

    /// <summary>Acks and fails in batches: whatever finished while one request was in flight goes in the next.</summary>
    private async Task SettleLoopAsync(RuntimeCredentials runtime)
    {
        var reader = _settlements.Reader;
        var batch = new List<Settlement>();
        while (await reader.WaitToReadAsync())
        {
            while (batch.Count < 1000 && reader.TryRead(out var settlement))
            {
                batch.Add(settlement);
            }
            var acks = batch.Where(s => s.Error is null).Select(s => s.Claim).ToList();
            var fails = batch.Where(s => s.Error is not null).Select(s => new ClaimFailure(s.Claim, s.Error!, s.Retry)).ToList();
            await Task.WhenAll(
                SettleAsync(runtime, "ack", acks, () => _client.AckAsync(runtime, acks)),
                SettleAsync(runtime, "fail", fails, () => _client.FailAsync(runtime, fails)));
            batch.Clear();
        }
    }

    private async Task SettleAsync<T>(RuntimeCredentials runtime, string verb, List<T> items, Func<Task<IReadOnlyList<ClaimResult>>> send)
    {
        if (items.Count == 0)
        {
            return;
        }
        for (var failures = 1; ; failures++)
        {
            try
            {
                foreach (var lost in (await send()).Where(r => r.Outcome == ClaimOutcome.Lost))
                {
                    _logger.LogWarning("Runtime {Runtime}: the {Verb} of claim {Claim} changed nothing: the claim was no longer held (expired, or the runtime was taken offline)", runtime.Id, verb, lost.Claim);
                }
                return;
            }
            catch (Exception ex) when (IsTransient(ex) && failures < 5)
            {
                _logger.LogWarning(ex, "Runtime {Runtime}: {Verb} of {Count} claims failed; trying again", runtime.Id, verb, items.Count);
                await DelayAsync(failures, CancellationToken.None);
            }
            catch (Exception ex) when (IsTransient(ex) || ex is ConveyorProblemException)
            {
                _logger.LogError(ex, "Runtime {Runtime}: {Verb} of {Count} claims failed for good; those jobs run again once their claims expire", runtime.Id, verb, items.Count);
                return;
            }
        }
    }

    /// <summary>Extends the claims of running jobs every third of the claim timeout, so none expires while it runs.</summary>
    private async Task ExtendLoopAsync(RuntimeCredentials runtime, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await _claimTimeoutKnown.Task.WaitAsync(stop);
                await Task.Delay(TimeSpan.FromTicks(Interlocked.Read(ref _claimTimeoutTicks) / 3), stop);
                foreach (var chunk in _running.Keys.Chunk(1000))
                {
                    foreach (var lost in (await _client.ExtendAsync(runtime, chunk, stop)).Where(r => r.Outcome == ClaimOutcome.Lost))
                    {
                        _logger.LogWarning("Runtime {Runtime}: claim {Claim} was lost while its job runs (expired, or the runtime was taken offline): its result will not count", runtime.Id, lost.Claim);
                    }
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (IsTransient(ex) || ex is ConveyorProblemException)
            {
                _logger.LogWarning(ex, "Runtime {Runtime}: extending claims failed; trying again at the next interval", runtime.Id);
            }
        }
    }

    private async Task BeatLoopAsync(RuntimeCredentials runtime, TaskCompletionSource<Exception> fatal, CancellationTokenSource stopClaiming, CancellationToken stop)
    {
        var failures = 0;
        while (true)
        {
            try
            {
                await Task.Delay(failures == 0 ? _beatInterval : Backoff(failures, _beatInterval), stop);
                _beatInterval = (await _client.BeatAsync(runtime, stop)).BeatInterval;
                failures = 0;
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (ConveyorProblemException ex) when (ex.Status is HttpStatusCode.NotFound or HttpStatusCode.Unauthorized)
            {
                Fail(fatal, stopClaiming, ex);
                return;
            }
            catch (Exception ex) when (IsTransient(ex) || ex is ConveyorProblemException)
            {
                failures++;
                _logger.LogWarning(ex, "Runtime {Runtime}: heartbeat failed ({Failures} in a row)", runtime.Id, failures);
            }
        }
    }

    private async Task BeatOnceAsync(RuntimeCredentials runtime, TaskCompletionSource<Exception> fatal, CancellationTokenSource stopClaiming)
    {
        try
        {
            _beatInterval = (await _client.BeatAsync(runtime, stopClaiming.Token)).BeatInterval;
        }
        catch (OperationCanceledException) when (stopClaiming.IsCancellationRequested)
        {
        }
        catch (ConveyorProblemException ex) when (ex.Status is HttpStatusCode.NotFound or HttpStatusCode.Unauthorized)
        {
            Fail(fatal, stopClaiming, ex);
        }
        catch (Exception ex) when (IsTransient(ex) || ex is ConveyorProblemException)
        {
            _logger.LogWarning(ex, "Runtime {Runtime}: heartbeat failed", runtime.Id);
            await DelayAsync(1, stopClaiming.Token);
        }
    }

    private void Fail(TaskCompletionSource<Exception> fatal, CancellationTokenSource stopClaiming, ConveyorProblemException ex)
    {
        if (fatal.TrySetResult(ex))
        {
            _logger.LogError(ex, "Runtime {Runtime} was refused by the server ({Type}); stopping", Credentials?.Id, ex.Type);
        }
        stopClaiming.Cancel();
    }

    /// <summary>Worth another try: no answer, a timeout, or a 5xx (other than the problems handled above).</summary>
    private static bool IsTransient(Exception ex) =>
        ex is HttpRequestException or TimeoutException or TaskCanceledException { InnerException: TimeoutException }
        || ex is ConveyorProblemException { Status: >= HttpStatusCode.InternalServerError };

    private static async Task DelayAsync(int failures, CancellationToken cancellationToken)
    {
        try
        {
            await Task.Delay(Backoff(failures, MaxBackoff), cancellationToken);
        }
        catch (OperationCanceledException)
        {
        }
    }

    private static TimeSpan Backoff(int failures, TimeSpan max)
    {
        var cap = Math.Min(max.TotalMilliseconds, 100 * Math.Pow(2, Math.Min(failures, 20)));
        return TimeSpan.FromMilliseconds(cap / 2 + (cap / 2 * Random.Shared.NextDouble()));
    }

    private sealed record Settlement(string Claim, string? Error, bool Retry);
}
