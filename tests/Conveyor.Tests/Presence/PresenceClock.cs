using Conveyor.Presence;
using Conveyor.Tests.Infrastructure;
using StackExchange.Redis;

namespace Conveyor.Tests.Presence;

/// <summary>
/// Moves presence through time without waiting: every time it recorded becomes older by the same amount, which is what
/// the passing of that time looks like to every script and statement (they compare recorded times with Redis's now).
/// </summary>
internal static class PresenceClock
{
    // KEYS: online, seen, beats, flushing. ARGV[1]: ms to subtract; ARGV[2..]: runtime ids (none: every runtime).
    private const string SilenceScript = """
        local d = tonumber(ARGV[1])
        local ids = {}
        if #ARGV > 1 then
          for i = 2, #ARGV do ids[ARGV[i]] = true end
        else
          for _, key in ipairs({KEYS[1], KEYS[2]}) do
            for _, id in ipairs(redis.call('HKEYS', key)) do ids[id] = true end
          end
          for _, key in ipairs({KEYS[3], KEYS[4]}) do
            for _, id in ipairs(redis.call('ZRANGE', key, 0, -1)) do ids[id] = true end
          end
        end
        for id in pairs(ids) do
          local known = redis.call('HGET', KEYS[1], id)
          local written = known and tonumber(string.sub(known, 66))
          if written then redis.call('HSET', KEYS[1], id, string.sub(known, 1, 64) .. ':' .. (written - d)) end
          local seen = tonumber(redis.call('HGET', KEYS[2], id))
          if seen then redis.call('HSET', KEYS[2], id, seen - d) end
          for _, key in ipairs({KEYS[3], KEYS[4]}) do
            local score = redis.call('ZSCORE', key, id)
            if score then redis.call('ZADD', key, tonumber(score) - d, id) end
          end
        end
        """;

    // KEYS: intake, disruption. ARGV[1]: ms to subtract.
    private const string ServiceScript = """
        local d = tonumber(ARGV[1])
        local last, since = string.match(redis.call('GET', KEYS[1]) or '', '^(%d+)|(%d+)$')
        if last then redis.call('SET', KEYS[1], (tonumber(last) - d) .. '|' .. (tonumber(since) - d)) end
        for _, field in ipairs({'since', 'at', 'refilled'}) do
          local v = tonumber(redis.call('HGET', KEYS[2], field))
          if v then redis.call('HSET', KEYS[2], field, v - d) end
        end
        """;

    /// <summary>
    /// The runtimes <paramref name="ids"/> (every runtime when none) have been silent <paramref name="time"/> longer:
    /// their last_seen_at, recorded beats and write-window starts are that much older.
    /// </summary>
    public static async Task SilenceAsync(this PresenceHost host, TimeSpan time, params Guid[] ids)
    {
        var ms = (long)time.TotalMilliseconds;
        await host.Db.ScriptEvaluateAsync(
            SilenceScript, [PresenceKeys.Online, PresenceKeys.Seen, PresenceKeys.Beats, PresenceKeys.Flushing],
            [ms, .. ids.Select(id => (RedisValue)id.ToString())]);
        if (ids.Length == 0)
        {
            await host.Database.ExecuteAsync("UPDATE runtimes SET last_seen_at = last_seen_at - $1", time);
        }
        else
        {
            await host.Database.ExecuteAsync("UPDATE runtimes SET last_seen_at = last_seen_at - $1 WHERE id = ANY($2)", time, ids);
        }
    }

    /// <summary>
    /// <paramref name="time"/> passes with nothing running: every runtime's recorded times, the beat intake's stamp and
    /// the sweeper's record (its verdict's start, its last run, the mass-offline bucket) are that much older.
    /// </summary>
    public static async Task PassAsync(this PresenceHost host, TimeSpan time)
    {
        await host.SilenceAsync(time);
        await host.Db.ScriptEvaluateAsync(ServiceScript, [PresenceKeys.Intake, PresenceKeys.Disruption], [(long)time.TotalMilliseconds]);
    }

    /// <summary>
    /// <paramref name="time"/> passes with the service running: in steps of <paramref name="step"/>, each followed by a
    /// heartbeat flush and one beat of every runtime in <paramref name="beating"/> (the rest stay silent).
    /// </summary>
    public static async Task RunForAsync(this PresenceHost host, TimeSpan time, TimeSpan step, IReadOnlyList<RegisteredRuntime> beating)
    {
        for (var passed = TimeSpan.Zero; passed < time; passed += step)
        {
            await host.PassAsync(step);
            await host.Flusher.RunOnceAsync(CancellationToken.None);
            foreach (var runtime in beating)
            {
                var beat = await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token);
                Assert.Contains(beat.Outcome, (BeatOutcome[])[BeatOutcome.Buffered, BeatOutcome.Synchronous]);
            }
        }
    }
}
