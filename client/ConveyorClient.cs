using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Conveyor.Client;

/// <summary>How a <see cref="ConveyorClient"/> talks to the server.</summary>
public sealed class ConveyorClientOptions
{
    /// <summary>The app's URL (<c>https://app.azurewebsites.net</c>); routes are under <c>/api</c>. Needed unless the HttpClient has a base address.</summary>
    public Uri? BaseAddress { get; set; }

    /// <summary>The function key (or a self-host key), sent as <c>x-functions-key</c>.</summary>
    public string? ApiKey { get; set; }

    /// <summary>
    /// Retries of an idempotent call answered 503 (or with no answer at all: a refused or dropped connection). Default: 3.
    /// Calls that are not idempotent (register a runtime, claim, requeue dead jobs) are never retried.
    /// </summary>
    public int MaxRetries { get; set; } = 3;

    /// <summary>Wait before the first retry; it doubles per retry, with jitter, unless the answer says <c>Retry-After</c>. Default: 200 ms.</summary>
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromMilliseconds(200);
}

/// <summary>
/// The Conveyor HTTP API: enqueue and look up jobs, queue counts, dead sets, and the runtime calls (register, beat,
/// claim, ack, fail, extend) that <see cref="RuntimeAgent"/> builds on. Every error answer becomes a
/// <see cref="ConveyorProblemException"/>. Thread-safe; keep one per server.
/// </summary>
public sealed class ConveyorClient : IDisposable
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    private readonly HttpClient _http;
    private readonly bool _ownsHttp;
    private readonly ConveyorClientOptions _options;

    /// <summary>A client over <paramref name="http"/> (its lifetime stays the caller's).</summary>
    public ConveyorClient(HttpClient http, ConveyorClientOptions? options = null)
        : this(http, options ?? new ConveyorClientOptions(), ownsHttp: false)
    {
    }

    /// <summary>A client with its own HttpClient.</summary>
    public ConveyorClient(Uri baseAddress, string apiKey)
        : this(new HttpClient(), new ConveyorClientOptions { BaseAddress = baseAddress, ApiKey = apiKey }, ownsHttp: true)
    {
    }

    private ConveyorClient(HttpClient http, ConveyorClientOptions options, bool ownsHttp)
    {
        ArgumentNullException.ThrowIfNull(http);
        _http = http;
        _options = options;
        _ownsHttp = ownsHttp;
        if (options.BaseAddress is null && http.BaseAddress is null)
        {
            throw new ArgumentException("Give the server's URL: ConveyorClientOptions.BaseAddress or HttpClient.BaseAddress", nameof(options));
        }
    }

    /// <summary>Enqueues one job (idempotent by id: an id is always sent, so a retry never adds it twice).</summary>
    public async Task<EnqueueResult> EnqueueAsync(string queue, NewJob job, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(job);
        var body = Body(job);
        return (await SendAsync<EnqueueResult>(HttpMethod.Post, $"queues/{Escape(queue)}/jobs", body, Retry.Yes, cancellationToken))!;
    }

    /// <summary>Enqueues 1 to 1,000 jobs in one call, all or none validated; results in request order.</summary>
    public async Task<IReadOnlyList<EnqueueResult>> EnqueueBatchAsync(string queue, IReadOnlyList<NewJob> jobs, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(jobs);
        var body = new EnqueueBatchBody([.. jobs.Select(Body)]);
        return (await SendAsync<EnqueueBatchResults>(HttpMethod.Post, $"queues/{Escape(queue)}/jobs/batch", body, Retry.Yes, cancellationToken))!.Results;
    }

    /// <summary>The job, or null when it is unknown or already acked.</summary>
    public Task<JobInfo?> GetJobAsync(string queue, string id, CancellationToken cancellationToken = default) =>
        SendAsync<JobInfo>(HttpMethod.Get, $"queues/{Escape(queue)}/jobs/{Escape(id)}", null, Retry.Yes, cancellationToken, notFoundIsNull: true);

    /// <summary>One queue's counts (all zero for a queue that never saw a job).</summary>
    public async Task<QueueStats> GetQueueAsync(string queue, CancellationToken cancellationToken = default) =>
        (await SendAsync<QueueStats>(HttpMethod.Get, $"queues/{Escape(queue)}", null, Retry.Yes, cancellationToken))!;

    /// <summary>Jobs enqueued, processed (acked) and failed (attempts that ended in an error) per minute over the last hour, current minute last.</summary>
    public async Task<QueueHistory> GetHistoryAsync(string queue, CancellationToken cancellationToken = default) =>
        (await SendAsync<QueueHistory>(HttpMethod.Get, $"queues/{Escape(queue)}/history", null, Retry.Yes, cancellationToken))!;

    /// <summary>Every known queue with its counts.</summary>
    public async Task<IReadOnlyList<QueueStats>> ListQueuesAsync(CancellationToken cancellationToken = default) =>
        (await SendAsync<QueueList>(HttpMethod.Get, "queues", null, Retry.Yes, cancellationToken))!.Queues;

    /// <summary>Dead jobs, most recent death first (page from 1, size 1–1000).</summary>
    public async Task<DeadJobsPage> ListDeadAsync(string queue, int page = 1, int pageSize = 50, CancellationToken cancellationToken = default) =>
        (await SendAsync<DeadJobsPage>(HttpMethod.Get, $"queues/{Escape(queue)}/dead?page={page}&pageSize={pageSize}", null, Retry.Yes, cancellationToken))!;

    /// <summary>Gives a dead job a fresh set of attempts; false when it is not dead. Not retried (a second try could requeue it again).</summary>
    public async Task<bool> RequeueDeadAsync(string queue, string id, CancellationToken cancellationToken = default) =>
        await SendAsync<RequeueCount>(HttpMethod.Post, $"queues/{Escape(queue)}/dead/{Escape(id)}/requeue", null, Retry.No, cancellationToken, notFoundIsNull: true) is not null;

    /// <summary>Gives every dead job of the queue a fresh set of attempts; how many. Not retried.</summary>
    public async Task<long> RequeueAllDeadAsync(string queue, CancellationToken cancellationToken = default) =>
        (await SendAsync<RequeueCount>(HttpMethod.Post, $"queues/{Escape(queue)}/dead/requeue", null, Retry.No, cancellationToken))!.Requeued;

    /// <summary>Deletes a dead job for good; false when it is not dead (after a retry: perhaps because the first try deleted it).</summary>
    public async Task<bool> DeleteDeadAsync(string queue, string id, CancellationToken cancellationToken = default) =>
        await SendAsync(HttpMethod.Delete, $"queues/{Escape(queue)}/dead/{Escape(id)}", Retry.Yes, notFoundIsNull: true, cancellationToken);

    /// <summary>Registers a runtime (offline until its first beat). Store the credentials: the token is shown only here. Not retried.</summary>
    public async Task<RuntimeCredentials> RegisterRuntimeAsync(string name, JsonElement? metadata = null, CancellationToken cancellationToken = default)
    {
        var registered = await SendAsync<RuntimeCredentials>(HttpMethod.Post, "runtimes", new RegisterBody(name, metadata), Retry.No, cancellationToken);
        return registered!;
    }

    /// <summary>The runtime, or null when it does not exist.</summary>
    public Task<RuntimeInfo?> GetRuntimeAsync(Guid id, CancellationToken cancellationToken = default) =>
        SendAsync<RuntimeInfo>(HttpMethod.Get, $"runtimes/{id}", null, Retry.Yes, cancellationToken, notFoundIsNull: true);

    /// <summary>Deletes a runtime; false when it did not exist. Its claims go back to their queues at the custodian's next pass.</summary>
    public async Task<bool> DeleteRuntimeAsync(Guid id, CancellationToken cancellationToken = default) =>
        await SendAsync(HttpMethod.Delete, $"runtimes/{id}", Retry.Yes, notFoundIsNull: true, cancellationToken);

    /// <summary>A heartbeat; the answer says when to beat next. The first beat brings the runtime online.</summary>
    public async Task<HeartbeatResult> BeatAsync(RuntimeCredentials runtime, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        return (await SendAsync<HeartbeatResult>(HttpMethod.Post, $"runtimes/{runtime.Id}/heartbeat", null, Retry.Yes, cancellationToken, bearer: runtime.Token))!;
    }

    /// <summary>
    /// Claims up to <paramref name="max"/> (1–1000) ready jobs of <paramref name="queue"/>, waiting up to
    /// <paramref name="wait"/> (whole or fractional seconds, at most the server's <c>Conveyor:Runtimes:MaxClaimWait</c>)
    /// for one. An offline runtime gets a <c>runtime-offline</c> problem: beat, then claim again. Not retried: a claim
    /// whose answer was lost leaves its jobs claimed until the claim times out.
    /// </summary>
    public async Task<ClaimedJobs> ClaimAsync(RuntimeCredentials runtime, string queue, int max, TimeSpan wait, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        return (await SendAsync<ClaimedJobs>(
            HttpMethod.Post, $"runtimes/{runtime.Id}/claims", new ClaimBody(queue, max, wait.TotalSeconds), Retry.No, cancellationToken, bearer: runtime.Token))!;
    }

    /// <summary>Acks claims (1–1000, any queues): per claim, in order, <see cref="ClaimOutcome.Acked"/> or <see cref="ClaimOutcome.Lost"/>.</summary>
    public Task<IReadOnlyList<ClaimResult>> AckAsync(RuntimeCredentials runtime, IReadOnlyList<string> claims, CancellationToken cancellationToken = default) =>
        SettleAsync(runtime, "ack", new ClaimsBody(claims), cancellationToken);

    /// <summary>Fails claims: per claim, in order, retried, dead or lost.</summary>
    public Task<IReadOnlyList<ClaimResult>> FailAsync(RuntimeCredentials runtime, IReadOnlyList<ClaimFailure> failures, CancellationToken cancellationToken = default) =>
        SettleAsync(runtime, "fail", new FailBody(failures), cancellationToken);

    /// <summary>Extends claims by the server's claim timeout from now: per claim, extended (with the new expiry) or lost.</summary>
    public Task<IReadOnlyList<ClaimResult>> ExtendAsync(RuntimeCredentials runtime, IReadOnlyList<string> claims, CancellationToken cancellationToken = default) =>
        SettleAsync(runtime, "extend", new ClaimsBody(claims), cancellationToken);

    public void Dispose()
    {
        if (_ownsHttp)
        {
            _http.Dispose();
        }
    }

    private async Task<IReadOnlyList<ClaimResult>> SettleAsync(RuntimeCredentials runtime, string verb, object body, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        return (await SendAsync<ClaimResults>(HttpMethod.Post, $"runtimes/{runtime.Id}/claims/{verb}", body, Retry.Yes, cancellationToken, bearer: runtime.Token))!.Results;
    }

    private static EnqueueBody Body(NewJob job) => new(
        job.Type, job.Payload, job.Id ?? Guid.CreateVersion7().ToString(), job.RunAt, job.Delay?.TotalSeconds, job.MaxAttempts);

    private static string Escape(string value) => Uri.EscapeDataString(value ?? throw new ArgumentNullException(nameof(value)));

    private enum Retry
    {
        No,
        Yes,
    }

    private async Task<T?> SendAsync<T>(
        HttpMethod method, string path, object? body, Retry retry, CancellationToken cancellationToken, bool notFoundIsNull = false, string? bearer = null)
    {
        using var response = await SendRawAsync(method, path, body, retry, notFoundIsNull, bearer, cancellationToken);
        return response is null ? default : await response.Content.ReadFromJsonAsync<T>(Json, cancellationToken);
    }

    /// <summary>For answers without a body: false when <paramref name="notFoundIsNull"/> and the server said not-found.</summary>
    private async Task<bool> SendAsync(HttpMethod method, string path, Retry retry, bool notFoundIsNull, CancellationToken cancellationToken)
    {
        using var response = await SendRawAsync(method, path, null, retry, notFoundIsNull, null, cancellationToken);
        return response is not null;
    }

    /// <summary>A success answer; null for a <c>not-found</c> problem when <paramref name="notFoundIsNull"/>; any other error thrown.</summary>
    private async Task<HttpResponseMessage?> SendRawAsync(
        HttpMethod method, string path, object? body, Retry retry, bool notFoundIsNull, string? bearer, CancellationToken cancellationToken)
    {
        for (var attempt = 0; ; attempt++)
        {
            using var request = new HttpRequestMessage(method, Url(path));
            if (body is not null)
            {
                request.Content = JsonContent.Create(body, body.GetType(), options: Json);
            }
            if (_options.ApiKey is { } key)
            {
                request.Headers.Add("x-functions-key", key);
            }
            if (bearer is not null)
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
            }
            HttpResponseMessage response;
            try
            {
                response = await _http.SendAsync(request, cancellationToken);
            }
            catch (HttpRequestException) when (retry == Retry.Yes && attempt < _options.MaxRetries)
            {
                await Task.Delay(Backoff(attempt, null), cancellationToken);
                continue;
            }
            if (response.IsSuccessStatusCode)
            {
                return response;
            }
            using (response)
            {
                if (response.StatusCode == HttpStatusCode.ServiceUnavailable && retry == Retry.Yes && attempt < _options.MaxRetries)
                {
                    await Task.Delay(Backoff(attempt, response.Headers.RetryAfter), cancellationToken);
                    continue;
                }
                var problem = await ConveyorProblemException.ReadAsync(response, cancellationToken);
                if (notFoundIsNull && problem.Type == "urn:conveyor:problem:not-found")
                {
                    return null;
                }
                throw problem;
            }
        }
    }

    private Uri Url(string path)
    {
        var root = _options.BaseAddress ?? _http.BaseAddress!;
        var text = root.ToString();
        return new Uri(text.EndsWith('/') ? text + "api/" + path : text + "/api/" + path);
    }

    private TimeSpan Backoff(int attempt, RetryConditionHeaderValue? retryAfter)
    {
        if (retryAfter?.Delta is { } delta && delta <= TimeSpan.FromSeconds(30))
        {
            return delta;
        }
        var cap = _options.RetryDelay * Math.Pow(2, attempt);
        return cap / 2 + cap / 2 * Random.Shared.NextDouble();
    }
}
