using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Conveyor.Faults.Infrastructure;
using Conveyor.Faults.Ledger;

namespace Conveyor.Faults.Load;

/// <summary>
/// Worker runtimes over the HTTP API: each registers, beats once (the synchronous path flips it online), and from
/// then on beats every beat interval (alternating between the API instances) until its own stop time, or until the
/// faults are over. Every beat answered 200 or 202 enters the ledger with the time it reported. Runtimes stop at
/// different moments, many during the faults, so that the last beat of each (the one last_seen_at must end at)
/// lands in every phase of a flush and a sweep.
/// </summary>
internal sealed class RuntimeFleet(Ledger.Ledger ledger, IReadOnlyList<ApiInstance> apis, TimeSpan beatInterval)
{
    private (Guid Id, string Token)[] _runtimes = [];
    private long[] _stopAtTicks = [];
    private Task _beating = Task.CompletedTask;

    /// <summary>
    /// Registers <paramref name="count"/> runtimes (before any fault), several at a time, and starts each beating as
    /// soon as it is registered, so none goes stale while the others register.
    /// </summary>
    public async Task RegisterAsync(int count, CancellationToken faultsOver, CancellationToken cancellationToken)
    {
        _runtimes = new (Guid Id, string Token)[count];
        _stopAtTicks = new long[count];
        var loops = new Task[count];
        await Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = cancellationToken }, async (i, ct) =>
        {
            using var response = await apis[i % apis.Count].Client.PostAsJsonAsync("/api/runtimes", new { name = $"runtime-{i}" }, ct);
            response.EnsureSuccessStatusCode();
            var created = await response.Content.ReadFromJsonAsync<JsonElement>(ct);
            var (id, token) = (created.GetProperty("id").GetGuid(), created.GetProperty("token").GetString()!);
            _runtimes[i] = (id, token);
            if (!await BeatAsync(apis[i % apis.Count], id, token, beatBefore: false, ct))
            {
                throw new InvalidOperationException($"the first beat of runtime {id} was not acknowledged");
            }
            loops[i] = BeatUntilAsync(id, token, i, faultsOver, cancellationToken);
        });
        _beating = Task.WhenAll(loops);
    }

    /// <summary>Runtime <paramref name="index"/> beats for the last time at or before <paramref name="at"/>.</summary>
    public void StopAt(int index, DateTime at) => Volatile.Write(ref _stopAtTicks[index], at.Ticks);

    /// <summary>Ends when every runtime stopped beating.</summary>
    public Task Beating => _beating;

    private async Task BeatUntilAsync(Guid id, string token, int index, CancellationToken faultsOver, CancellationToken cancellationToken)
    {
        for (var beat = 0; !faultsOver.IsCancellationRequested; beat++)
        {
            var sent = DateTime.UtcNow;
            var next = sent + beatInterval;
            if (next > DateTime.UtcNow)
            {
                await Task.Delay(next - DateTime.UtcNow, cancellationToken);
            }
            var stopAt = Volatile.Read(ref _stopAtTicks[index]);
            if (faultsOver.IsCancellationRequested || (stopAt != 0 && DateTime.UtcNow.Ticks >= stopAt))
            {
                return;
            }
            await BeatAsync(apis[(index + beat) % apis.Count], id, token, beatBefore: true, cancellationToken);
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
