using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using Conveyor.Queue;
using StackExchange.Redis;

namespace Conveyor.Bench;

/// <summary>
/// The slowest single script call at the largest batch the options allow, with payloads of the largest size allowed
/// and error texts of the longest kept: retry, kill and recovery (whose time must not depend on payload size), plus
/// ack and promote. Times are Redis' own (SLOWLOG, microseconds of execution), one call per verb.
/// </summary>
internal static class ScriptCost
{
    public static async Task<Dictionary<string, object>> MeasureAsync(IDatabase db, IServer server, Producer producer, int payloadBytes)
    {
        var batch = Math.Max(Bound<ProcessorOptions>(nameof(ProcessorOptions.CompletionBatchSize)), Bound<CustodianOptions>(nameof(CustodianOptions.BatchSize)));
        var promoteBatch = Bound<SchedulerOptions>(nameof(SchedulerOptions.BatchSize));
        var queue = "bench-scripts-" + Guid.NewGuid().ToString("N")[..8];
        var keys = new QueueKeys(queue);
        var error = new string('e', 4096); // the longest error text a completion keeps

        // `batch` jobs of the largest payload, in calls of a few MB each.
        var payload = "\"" + new string('x', payloadBytes - 2) + "\"";
        for (var sent = 0; sent < batch; sent += 16)
        {
            await producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, Math.Min(16, batch - sent)).Select(_ => new JobRequest("noop", payload))]);
        }
        Console.Error.WriteLine($"script cost: {batch} jobs of {payloadBytes} bytes per call");
        var slowlog = await ConfigAsync(server, "slowlog-log-slower-than");
        await server.ExecuteAsync("CONFIG", "SET", "slowlog-log-slower-than", "0");
        var ms = new Dictionary<string, double>();
        try
        {
            var consumer = "bench-consumer";
            await LuaScripts.Beat.RunAsync(db, [keys.Consumers], [consumer, 1]);

            var held = await HoldAsync(db, keys, consumer, batch);
            ms["retry"] = await TimeAsync(server, LuaScripts.Retry, () => LuaScripts.Retry.RunAsync(
                db, [keys.Inflight(consumer), keys.State, keys.Scheduled], [.. held.SelectMany(h => new RedisValue[] { h.Id, h.Token, 1, 20, 0, error })]));

            // Promote needs more due jobs than there are: small ones make up the rest (promote never reads a payload).
            for (var extra = batch; extra < promoteBatch; extra += 1000)
            {
                await producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, Math.Min(1000, promoteBatch - extra)).Select(_ => new JobRequest("noop", "1") { Delay = TimeSpan.FromMilliseconds(1) })]);
            }
            await Task.Delay(10);
            ms["promote"] = await TimeAsync(server, LuaScripts.Promote, () => LuaScripts.Promote.RunAsync(db, [keys.Scheduled, keys.Ready], [keys.Signal.ToString(), promoteBatch]));
            await db.ListTrimAsync(keys.Ready, 0, batch - 1); // keep the large ones, first in line

            held = await HoldAsync(db, keys, consumer, batch);
            ms["kill"] = await TimeAsync(server, LuaScripts.Kill, () => LuaScripts.Kill.RunAsync(
                db, [keys.Inflight(consumer), keys.State, keys.Dead], [.. held.SelectMany(h => new RedisValue[] { h.Id, h.Token, 20, 20, 0, error })]));

            await LuaScripts.RequeueDead.RunAsync(db, [keys.Dead, keys.Jobs, keys.State, keys.Payloads, keys.Ready], [keys.Signal.ToString(), batch]);
            await HoldAsync(db, keys, consumer, batch);
            await db.SortedSetAddAsync(keys.Consumers, consumer, 1); // its heartbeat stopped long ago,
            await db.StringSetAsync(keys.Watch, "1|1"); // and a custodian has watched ever since
            ms["recover"] = await TimeAsync(server, LuaScripts.Recover, () => LuaScripts.Recover.RunAsync(
                db, [keys.Consumers, keys.Inflight(consumer), keys.Ready, keys.Jobs, keys.State, keys.Payloads, keys.Dead, keys.Watch],
                [keys.Signal.ToString(), consumer, 30_000, batch]));

            await LuaScripts.Beat.RunAsync(db, [keys.Consumers], [consumer, 1]);
            held = await HoldAsync(db, keys, consumer, batch);
            ms["ack"] = await TimeAsync(server, LuaScripts.Ack, () => LuaScripts.Ack.RunAsync(
                db, [keys.Inflight(consumer), keys.Jobs, keys.State, keys.Payloads], [.. held.SelectMany(h => new RedisValue[] { h.Id, h.Token })]));
        }
        finally
        {
            await server.ExecuteAsync("CONFIG", "SET", "slowlog-log-slower-than", slowlog);
            await db.KeyDeleteAsync([keys.Jobs, keys.State, keys.Payloads, keys.Ready, keys.Scheduled, keys.Dead, keys.Consumers, keys.Seq, keys.Registered, keys.Idle, keys.Watch, keys.Inflight("bench-consumer")]);
            await db.SetRemoveAsync(QueueKeys.Queues, queue);
        }
        return new Dictionary<string, object>
        {
            ["scriptMsMax"] = new[] { ms["retry"], ms["kill"], ms["recover"] }.Max(),
            ["scriptMs"] = ms,
            ["scriptBatch"] = batch,
            ["scriptPromoteBatch"] = promoteBatch,
            ["scriptPayloadBytes"] = payloadBytes,
        };
    }

    /// <summary>The largest value the options allow for <paramref name="property"/> (its [Range] maximum).</summary>
    private static int Bound<T>(string property) =>
        Convert.ToInt32(typeof(T).GetProperty(property)!.GetCustomAttribute<RangeAttribute>()!.Maximum, CultureInfo.InvariantCulture);

    /// <summary>Claims <paramref name="count"/> ready jobs for <paramref name="consumer"/> the way claim.lua records them (without returning payloads).</summary>
    private static async Task<List<(RedisValue Id, long Token)>> HoldAsync(IDatabase db, QueueKeys keys, string consumer, int count)
    {
        var ids = await db.ListLeftPopAsync(keys.Ready, count) ?? [];
        var token = await db.StringIncrementAsync(keys.Seq);
        await db.SortedSetAddAsync(keys.Inflight(consumer), [.. ids.Select(id => new SortedSetEntry(id, token))]);
        return [.. ids.Select(id => (id, token))];
    }

    /// <summary>Redis' own execution time (ms) of the one call of <paramref name="script"/> that <paramref name="call"/> makes.</summary>
    private static async Task<double> TimeAsync(IServer server, RedisScript script, Func<Task<RedisResult>> call)
    {
#pragma warning disable CA5350 // SHA1 is how Redis names a script (EVALSHA), not a security measure.
        var sha = Convert.ToHexStringLower(SHA1.HashData(Encoding.UTF8.GetBytes(script.Source)));
#pragma warning restore CA5350
        await server.ExecuteAsync("SLOWLOG", "RESET");
        await call();
        var entries = (RedisResult[])(await server.ExecuteAsync("SLOWLOG", "GET", "100"))!;
        foreach (var entry in entries.Select(e => (RedisResult[])e!))
        {
            var args = (RedisResult[])entry[3]!;
            if (args.Length > 1 && ((string?)args[0])?.StartsWith("EVAL", StringComparison.OrdinalIgnoreCase) == true
                && (string.Equals((string?)args[1], sha, StringComparison.OrdinalIgnoreCase) || ((string?)args[1])?.StartsWith("--", StringComparison.Ordinal) == true))
            {
                return Math.Round((long)entry[2] / 1000.0, 3);
            }
        }
        throw new InvalidOperationException($"SLOWLOG holds no call of {script.Name}");
    }

    private static async Task<string> ConfigAsync(IServer server, string name)
    {
        var reply = (RedisResult[])(await server.ExecuteAsync("CONFIG", "GET", name))!;
        return (string)reply[1]!;
    }
}
