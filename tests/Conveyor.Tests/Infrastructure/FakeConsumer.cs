using Conveyor.Queue;
using StackExchange.Redis;

namespace Conveyor.Tests.Infrastructure;

/// <summary>
/// A consumer driven by hand through the real scripts: it registers, claims, and then does whatever
/// the test says, including nothing at all (a crash).
/// </summary>
internal sealed class FakeConsumer(IDatabase db, string queue)
{
    private readonly QueueKeys _keys = new(queue);

    public string Id { get; } = "fake-" + Guid.NewGuid().ToString("N");

    public async Task RegisterAsync() => await LuaScripts.Beat.RunAsync(db, [_keys.Consumers], [Id, 1]);

    /// <summary>A heartbeat: false when the consumer was taken for dead.</summary>
    public async Task<bool> BeatAsync() => (long)((RedisResult[])(await LuaScripts.Beat.RunAsync(db, [_keys.Consumers], [Id, 0]))!)[1] == 1;

    /// <summary>The claimed ids with their token; empty when nothing was ready, null when the claim was refused.</summary>
    public async Task<IReadOnlyList<(string Id, long Token)>?> TryClaimAsync(int count, int maxBytes = int.MaxValue)
    {
        var reply = (RedisResult[])(await LuaScripts.Claim.RunAsync(
            db,
            [_keys.Consumers, _keys.Ready, _keys.Inflight(Id), _keys.Jobs, _keys.State, _keys.Payloads, _keys.Seq],
            [Id, count, (long)TimeSpan.FromMinutes(1).TotalMilliseconds, maxBytes, 256 * 1024]))!;
        if ((long)reply[0] < 0)
        {
            return null;
        }
        var claims = new List<(string, long)>();
        for (var i = 2; i < reply.Length; i += 3)
        {
            claims.Add(((string)reply[i]!, (long)reply[1]));
        }
        return claims;
    }

    public async Task<IReadOnlyList<(string Id, long Token)>> ClaimAsync(int count, int maxBytes = int.MaxValue) =>
        await TryClaimAsync(count, maxBytes) ?? throw new InvalidOperationException($"consumer {Id} may not claim (not registered, or taken for dead)");

    /// <summary>
    /// Makes the last heartbeat look <paramref name="age"/> old, as if the process died then, with the custodian watching
    /// the queue without a gap all along (else it would give the consumer a fresh timeout first).
    /// </summary>
    public async Task BackdateHeartbeatAsync(TimeSpan age)
    {
        var reply = (RedisResult[])(await db.ExecuteAsync("TIME"))!;
        var now = (long)reply[0] * 1000 + (long)reply[1] / 1000;
        var then = now - (long)age.TotalMilliseconds;
        await db.SortedSetAddAsync(_keys.Consumers, Id, then);
        await db.StringSetAsync(_keys.Watch, $"{now}|{Math.Min(then, await WatchingSinceAsync(now))}");
    }

    private async Task<long> WatchingSinceAsync(long now)
    {
        var watch = (string?)await db.StringGetAsync(_keys.Watch);
        return watch is null ? now : long.Parse(watch[(watch.IndexOf('|', StringComparison.Ordinal) + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }

    public async Task<long[]> AckAsync(params (string Id, long Token)[] claims)
    {
        var args = claims.SelectMany(c => new RedisValue[] { c.Id, c.Token }).ToArray();
        var reply = (RedisResult[])(await LuaScripts.Ack.RunAsync(db, [_keys.Inflight(Id), _keys.Jobs, _keys.State, _keys.History], args))!;
        return [.. reply.Select(r => (long)r)];
    }

    public async Task<long[]> RetryAsync(params (string Id, long Token)[] claims)
    {
        var args = claims.SelectMany(c => new RedisValue[] { c.Id, c.Token, 1, 20, 0, "late" }).ToArray();
        var reply = (RedisResult[])(await LuaScripts.Retry.RunAsync(db, [_keys.Inflight(Id), _keys.State, _keys.Scheduled, _keys.History], args))!;
        return [.. reply.Select(r => (long)r)];
    }

    public async Task<long[]> KillAsync(params (string Id, long Token)[] claims)
    {
        var args = claims.SelectMany(c => new RedisValue[] { c.Id, c.Token, 1, 20, 0, "late" }).ToArray();
        var reply = (RedisResult[])(await LuaScripts.Kill.RunAsync(db, [_keys.Inflight(Id), _keys.State, _keys.Dead, _keys.History], args))!;
        return [.. reply.Select(r => (long)r)];
    }

    public Task<long> ClaimCountAsync() => db.SortedSetLengthAsync(_keys.Inflight(Id));
}
