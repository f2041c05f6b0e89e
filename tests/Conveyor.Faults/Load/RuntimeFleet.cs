using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Conveyor.Faults.Infrastructure;
using Conveyor.Faults.Ledger;

namespace Conveyor.Faults.Load;

/// <summary>
/// Worker runtimes over the HTTP API: each registers, then beats every beat interval (alternating between the API
/// instances) until its own stop time. Every beat answered 200 or 202 enters the ledger with the time it reported.
/// Runtimes stop at different moments, many during the faults, so that the last beat of each (the one
/// last_seen_at must end at) lands in every phase of a flush and a sweep.
/// </summary>
internal sealed class RuntimeFleet(Ledger.Ledger ledger, IReadOnlyList<ApiInstance> apis, TimeSpan beatInterval)
{
    private readonly List<(Guid Id, string Token)> _runtimes = [];

    public IReadOnlyList<Guid> Ids => [.. _runtimes.Select(r => r.Id)];

    /// <summary>Registers <paramref name="count"/> runtimes (before any fault), several at a time.</summary>
    public async Task RegisterAsync(int count, CancellationToken cancellationToken)
    {
        var registered = new (Guid Id, string Token)[count];
        await Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = cancellationToken }, async (i, ct) =>
        {
            using var response = await apis[i % apis.Count].Client.PostAsJsonAsync("/api/runtimes", new { name = $"runtime-{i}" }, ct);
            response.EnsureSuccessStatusCode();
            var created = await response.Content.ReadFromJsonAsync<JsonElement>(ct);
            registered[i] = (created.GetProperty("id").GetGuid(), created.GetProperty("token").GetString()!);
        });
        _runtimes.AddRange(registered);
    }

    /// <summary>
    /// Beats until each runtime's stop time (<paramref name="stopAt"/>, by index), or, for those without one, until
    /// <paramref name="faultsOver"/>.
    /// </summary>
    public Task RunAsync(Func<int, DateTime?> stopAt, CancellationToken faultsOver, CancellationToken cancellationToken) =>
        Task.WhenAll(_runtimes.Select((runtime, i) => BeatUntilAsync(runtime.Id, runtime.Token, i, stopAt(i), faultsOver, cancellationToken)));

    private async Task BeatUntilAsync(Guid id, string token, int index, DateTime? stopAt, CancellationToken faultsOver, CancellationToken cancellationToken)
    {
        // Spread the first beats over one interval, so the fleet beats steadily rather than in bursts.
        await Task.Delay(beatInterval * (index % 100) / 100, cancellationToken);
        var acknowledged = false;
        for (var beat = 0; (stopAt is null || DateTime.UtcNow < stopAt) && !faultsOver.IsCancellationRequested; beat++)
        {
            var sent = DateTime.UtcNow;
            acknowledged |= await BeatAsync(apis[(index + beat) % apis.Count], id, token, acknowledged, cancellationToken);
            var next = sent + beatInterval;
            if (next > DateTime.UtcNow)
            {
                await Task.Delay(next - DateTime.UtcNow, cancellationToken);
            }
        }
    }

    /// <summary>True when the API acknowledged the beat.</summary>
    private async Task<bool> BeatAsync(ApiInstance api, Guid id, string token, bool beatBefore, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"/api/runtimes/{id}/heartbeat");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        try
        {
            using var response = await api.Client.SendAsync(request, cancellationToken);
            if (response.StatusCode is HttpStatusCode.OK or HttpStatusCode.Accepted)
            {
                var answer = await response.Content.ReadFromJsonAsync<JsonElement>(cancellationToken);
                var flipped = answer.TryGetProperty("flippedOnline", out var f) && f.GetBoolean();
                ledger.BeatAcknowledged(new BeatAck(id, answer.GetProperty("seenAt").GetDateTimeOffset(), (int)response.StatusCode, flipped && beatBefore));
                return true;
            }
            else if ((int)response.StatusCode is >= 400 and < 500)
            {
                throw new InvalidOperationException($"a beat of {id} was refused: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(cancellationToken)}");
            }
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            // Not acknowledged: the runtime beats again at its next interval, as a real one would.
        }
        return false;
    }
}
