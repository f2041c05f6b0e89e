using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Conveyor.Faults.Infrastructure;
using Conveyor.Faults.Ledger;

namespace Conveyor.Faults.Load;

/// <summary>
/// A producer over the HTTP API: enqueues the scenario's jobs in small batches spread over a time span, every job
/// with an id of its own, so that an enqueue that failed (503, timeout, cut connection) is retried with the same ids
/// until the API acknowledges it. Only acknowledged enqueues enter the ledger. Most jobs just work a few tens of
/// milliseconds; some are delayed (the scheduler promotes them), some fail once (a retry), a few fail on every
/// attempt they have (they must end dead).
/// </summary>
internal sealed class JobFeeder(Ledger.Ledger ledger, IReadOnlyList<ApiInstance> apis, string queue, int seed)
{
    private const int BatchSize = 20;
    private static readonly TimeSpan RetryDelay = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan GiveUpAfter = TimeSpan.FromMinutes(2);

    public IReadOnlyList<JobPlan> Plan(int count)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, count).Select(n => n switch
        {
            _ when n % 50 == 7 => new JobPlan($"job-{n:D5}", random.Next(5, 30), Fail: 1, MaxAttempts: 1, DelaySeconds: 0),
            _ when n % 15 == 3 => new JobPlan($"job-{n:D5}", random.Next(10, 60), Fail: 1, MaxAttempts: 20, DelaySeconds: 0),
            _ when n % 10 == 5 => new JobPlan($"job-{n:D5}", random.Next(10, 60), Fail: 0, MaxAttempts: 20, DelaySeconds: 1),
            _ => new JobPlan($"job-{n:D5}", random.Next(10, 80), Fail: 0, MaxAttempts: 20, DelaySeconds: 0),
        })];
    }

    /// <summary>Sends the jobs of <see cref="Plan"/> spread evenly over <paramref name="over"/>; returns when every batch was acknowledged or given up.</summary>
    public async Task RunAsync(int count, TimeSpan over, CancellationToken cancellationToken)
    {
        var batches = Plan(count).Chunk(BatchSize).ToList();
        var clock = Stopwatch.StartNew();
        var sends = new List<Task>(batches.Count);
        for (var i = 0; i < batches.Count; i++)
        {
            var due = over * i / batches.Count;
            if (due > clock.Elapsed)
            {
                await Task.Delay(due - clock.Elapsed, cancellationToken);
            }
            sends.Add(SendAsync(batches[i], i, cancellationToken));
        }
        await Task.WhenAll(sends);
    }

    private async Task SendAsync(JobPlan[] batch, int index, CancellationToken cancellationToken)
    {
        var giveUp = Stopwatch.StartNew();
        for (var attempt = 0; giveUp.Elapsed < GiveUpAfter; attempt++)
        {
            var api = apis[(index + attempt) % apis.Count];
            // Every fifth batch goes one job at a time through the single-job route.
            var acknowledged = index % 5 == 0
                ? await SendEachAsync(api, batch, cancellationToken)
                : await SendBatchAsync(api, batch, cancellationToken);
            if (acknowledged)
            {
                return;
            }
            await Task.Delay(RetryDelay, cancellationToken);
        }
    }

    private async Task<bool> SendBatchAsync(ApiInstance api, JobPlan[] batch, CancellationToken cancellationToken)
    {
        var body = new { jobs = batch.Select(Body).ToArray() };
        var answered = await PostAsync(api, $"/api/queues/{queue}/jobs/batch", body, batch, cancellationToken);
        if (answered is not { } json)
        {
            return false;
        }
        var results = json.GetProperty("results");
        if (results.GetArrayLength() != batch.Length)
        {
            throw new InvalidOperationException($"the batch of {batch.Length} got {results.GetArrayLength()} results: {json}");
        }
        foreach (var plan in batch)
        {
            ledger.Acknowledge(plan);
        }
        return true;
    }

    private async Task<bool> SendEachAsync(ApiInstance api, JobPlan[] batch, CancellationToken cancellationToken)
    {
        foreach (var plan in batch.Where(p => !ledger.Acknowledged.ContainsKey(p.Id)))
        {
            if (await PostAsync(api, $"/api/queues/{queue}/jobs", Body(plan), [plan], cancellationToken) is null)
            {
                return false;
            }
            ledger.Acknowledge(plan);
        }
        return true;
    }

    /// <summary>The answer of a 200 or 202; null (and the jobs marked as maybe stored) when the enqueue failed.</summary>
    private async Task<JsonElement?> PostAsync(ApiInstance api, string path, object body, JobPlan[] jobs, CancellationToken cancellationToken)
    {
        try
        {
            using var response = await api.Client.PostAsJsonAsync(path, body, cancellationToken);
            if (response.StatusCode is HttpStatusCode.OK or HttpStatusCode.Accepted)
            {
                return await response.Content.ReadFromJsonAsync<JsonElement>(cancellationToken);
            }
            if ((int)response.StatusCode is >= 400 and < 500)
            {
                throw new InvalidOperationException($"{path} refused the scenario's jobs: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(cancellationToken)}");
            }
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
        }
        foreach (var plan in jobs)
        {
            ledger.MaybeStored(plan.Id);
        }
        return null;
    }

    private static object Body(JobPlan plan) => plan.DelaySeconds > 0
        ? new { type = "fault", id = plan.Id, payload = new { ms = plan.WorkMs, fail = plan.Fail }, maxAttempts = plan.MaxAttempts, delaySeconds = plan.DelaySeconds }
        : new { type = "fault", id = plan.Id, payload = new { ms = plan.WorkMs, fail = plan.Fail }, maxAttempts = plan.MaxAttempts };
}
