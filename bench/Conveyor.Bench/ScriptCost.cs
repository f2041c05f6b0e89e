using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using Conveyor.Queue;
using StackExchange.Redis;

namespace Conveyor.Bench;

/// <summary>
/// The slowest single script call at the largest batch the options allow, on jobs with the largest payload allowed:
/// retry, kill and recovery (whose time must not depend on payload size; the figure <c>scriptMsMax</c>), plus ack, trim
/// and promote. Retries and kills are measured twice: at the count bound with 100-byte errors, and at the byte bound
/// (<see cref="LuaScripts.CallBudgetBytes"/>) with errors of the longest kept (4,096 characters), each batch cut as the
/// processor cuts it. Times are Redis' own (SLOWLOG: execution, microseconds), one call per figure.
/// </summary>
internal static class ScriptCost
{
    private const string Consumer = "bench-consumer";

    public static async Task<Dictionary<string, object>> MeasureAsync(IDatabase db, IServer server, Producer producer, int payloadBytes)
    {
        var completions = Bound<ProcessorOptions>(nameof(ProcessorOptions.CompletionBatchSize));
        var custodian = Bound<CustodianOptions>(nameof(CustodianOptions.BatchSize));
        var promoteBatch = Bound<SchedulerOptions>(nameof(SchedulerOptions.BatchSize));
        var batch = Math.Max(completions, custodian);
        var queue = "bench-scripts-" + Guid.NewGuid().ToString("N")[..8];
        var keys = new QueueKeys(queue);
        var smallQueue = queue + "-small";
        var small = new QueueKeys(smallQueue);
        var first = new QueueKeys(queue + "-first");
        var shortError = new string('e', 100);
        var longError = new string('e', 4096);

        var large = "\"" + new string('x', payloadBytes - 2) + "\"";
        for (var sent = 0; sent < batch; sent += 16)
        {
            await producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, Math.Min(16, batch - sent)).Select(_ => new JobRequest("noop", large))]);
        }
        Console.Error.WriteLine($"script cost: up to {batch} jobs of {payloadBytes} bytes per call");
        var slowlog = await ConfigAsync(server, "slowlog-log-slower-than");
        await server.ExecuteAsync("CONFIG", "SET", "slowlog-log-slower-than", "0");
        var ms = new Dictionary<string, double>();
        try
        {
            await LuaScripts.Beat.RunAsync(db, [keys.Consumers], [Consumer, 1]);
            var retryKeys = new RedisKey[] { keys.Inflight(Consumer), keys.State, keys.Scheduled, keys.History };
            var killKeys = new RedisKey[] { keys.Inflight(Consumer), keys.State, keys.Dead, keys.History };

            ms["retry"] = await FirstCallAsync(server, db, LuaScripts.Retry, retryKeys, await HoldAsync(db, keys, completions), completions, shortError);
            await PromoteAllAsync(db, keys);
            ms["retryLongErrors"] = await FirstCallAsync(server, db, LuaScripts.Retry, retryKeys, await HoldAsync(db, keys, completions), completions, longError);
            await PromoteAllAsync(db, keys);

            // Promote and the acks at the count bound run on small jobs of their own queue (promote never reads a payload).
            for (var sent = 0; sent < promoteBatch; sent += 1000)
            {
                await producer.EnqueueBatchAsync(smallQueue, [.. Enumerable.Range(0, Math.Min(1000, promoteBatch - sent)).Select(_ => new JobRequest("noop", "1") { Delay = TimeSpan.FromMilliseconds(1) })]);
            }
            await Task.Delay(10);
            ms["promote"] = await TimeAsync(server, LuaScripts.Promote, () => LuaScripts.Promote.RunAsync(db, [small.Scheduled, small.Ready], [small.Signal.ToString(), promoteBatch]));
            await LuaScripts.Beat.RunAsync(db, [small.Consumers], [Consumer, 1]);
            var smallHeld = await HoldAsync(db, small, completions);
            ms["ack"] = await TimeAsync(server, LuaScripts.Ack, () => AckAsync(db, small, smallHeld));

            ms["kill"] = await FirstCallAsync(server, db, LuaScripts.Kill, killKeys, await HoldAsync(db, keys, completions), completions, shortError);
            await RequeueAllAsync(db, keys);
            ms["killLongErrors"] = await FirstCallAsync(server, db, LuaScripts.Kill, killKeys, await HoldAsync(db, keys, completions), completions, longError);
            await RequeueAllAsync(db, keys);

            await HoldAsync(db, keys, custodian);
            await db.SortedSetAddAsync(keys.Consumers, Consumer, 1); // its heartbeat stopped long ago,
            await db.StringSetAsync(keys.Watch, "1|1"); // and a custodian has watched ever since
            ms["recover"] = await TimeAsync(server, LuaScripts.Recover, () => LuaScripts.Recover.RunAsync(
                db, [keys.Consumers, keys.Inflight(Consumer), keys.Ready, keys.Jobs, keys.State, keys.Dead, keys.Watch, keys.History],
                [keys.Signal.ToString(), Consumer, 30_000, custodian]));

            // Recovery of jobs on their first attempt, which have no state yet: it reads their records, each at most 1 KiB
            // (a claim writes the state of a larger one), so a batch of records just under that bound.
            var nearlyLarge = "\"" + new string('x', 900) + "\"";
            for (var sent = 0; sent < custodian; sent += 100)
            {
                await producer.EnqueueBatchAsync(first.Queue, [.. Enumerable.Range(0, Math.Min(100, custodian - sent)).Select(_ => new JobRequest("noop", nearlyLarge))]);
            }
            await LuaScripts.Beat.RunAsync(db, [first.Consumers], [Consumer, 1]);
            await HoldAsync(db, first, custodian);
            await db.SortedSetAddAsync(first.Consumers, Consumer, 1);
            await db.StringSetAsync(first.Watch, "1|1");
            ms["recoverFirstAttempt"] = await TimeAsync(server, LuaScripts.Recover, () => LuaScripts.Recover.RunAsync(
                db, [first.Consumers, first.Inflight(Consumer), first.Ready, first.Jobs, first.State, first.Dead, first.Watch, first.History],
                [first.Signal.ToString(), Consumer, 30_000, custodian]));

            // Acks free payloads: the processor's byte budget cuts a call of large ones short.
            await LuaScripts.Beat.RunAsync(db, [keys.Consumers], [Consumer, 1]);
            var largeHeld = await HoldAsync(db, keys, completions);
            ms["ackLargePayloads"] = await TimeAsync(server, LuaScripts.Ack, () => AckAsync(db, keys, LuaScripts.Calls(largeHeld, completions, _ => payloadBytes).First()));
            await ReturnHeldAsync(db, keys);

            // Trim frees payloads too: at most Custodian.TrimMaxBytes per call.
            await db.SortedSetAddAsync(keys.Dead, [.. (await HoldAsync(db, keys, custodian)).Select(h => new SortedSetEntry(h.Id, 1))]);
            ms["trim"] = await TimeAsync(server, LuaScripts.TrimDead, () => LuaScripts.TrimDead.RunAsync(
                db, [keys.Dead, keys.Jobs, keys.State, keys.Payloads], [0, 86_400_000, custodian, Custodian.TrimMaxBytes]));
        }
        finally
        {
            await server.ExecuteAsync("CONFIG", "SET", "slowlog-log-slower-than", slowlog);
            foreach (var each in new[] { keys, small, first })
            {
                await db.KeyDeleteAsync([each.Jobs, each.State, each.Payloads, each.Ready, each.Scheduled, each.Dead, each.Consumers, each.Seq,
                    each.Registered, each.Idle, each.Watch, each.Inflight(Consumer)]);
                await db.SetRemoveAsync(QueueKeys.Queues, each.Queue);
            }
        }
        return new Dictionary<string, object>
        {
            ["scriptMsMax"] = new[] { ms["retry"], ms["retryLongErrors"], ms["kill"], ms["killLongErrors"], ms["recover"], ms["recoverFirstAttempt"] }.Max(),
            ["scriptMs"] = ms,
            ["scriptBatch"] = new Dictionary<string, int> { ["completions"] = completions, ["custodian"] = custodian, ["promote"] = promoteBatch },
            ["scriptPayloadBytes"] = payloadBytes,
        };
    }

    /// <summary>The largest value the options allow for <paramref name="property"/> (its [Range] maximum).</summary>
    private static int Bound<T>(string property) =>
        Convert.ToInt32(typeof(T).GetProperty(property)!.GetCustomAttribute<RangeAttribute>()!.Maximum, CultureInfo.InvariantCulture);

    /// <summary>Times the first call of a retry or kill batch as the processor cuts it (count and byte bound).</summary>
    private static Task<double> FirstCallAsync(
        IServer server, IDatabase db, RedisScript script, RedisKey[] keys, List<(RedisValue Id, long Token)> held, int maxCount, string error)
    {
        var first = LuaScripts.Calls(held, maxCount, _ => Encoding.UTF8.GetByteCount(error)).First();
        return TimeAsync(server, script, () => script.RunAsync(db, keys, [.. first.SelectMany(h => new RedisValue[] { h.Id, h.Token, 1, 20, 0, error })]));
    }

    private static Task<RedisResult> AckAsync(IDatabase db, QueueKeys keys, IEnumerable<(RedisValue Id, long Token)> held) =>
        LuaScripts.Ack.RunAsync(db, [keys.Inflight(Consumer), keys.Jobs, keys.State, keys.History], [.. held.SelectMany(h => new RedisValue[] { h.Id, h.Token })]);

    /// <summary>Back to the ready list: scheduled retries (promoted) and claims still held.</summary>
    private static async Task PromoteAllAsync(IDatabase db, QueueKeys keys)
    {
        await Task.Delay(2);
        await LuaScripts.Promote.RunAsync(db, [keys.Scheduled, keys.Ready], [keys.Signal.ToString(), 5000]);
        await ReturnHeldAsync(db, keys);
    }

    private static async Task RequeueAllAsync(IDatabase db, QueueKeys keys)
    {
        await LuaScripts.RequeueDead.RunAsync(db, [keys.Dead, keys.Jobs, keys.State, keys.Ready], [keys.Signal.ToString(), 5000]);
        await ReturnHeldAsync(db, keys);
    }

    private static async Task ReturnHeldAsync(IDatabase db, QueueKeys keys)
    {
        var held = await db.SortedSetRangeByRankAsync(keys.Inflight(Consumer));
        await db.KeyDeleteAsync(keys.Inflight(Consumer));
        if (held.Length > 0)
        {
            await db.ListLeftPushAsync(keys.Ready, held);
        }
    }

    /// <summary>Claims <paramref name="count"/> ready jobs for the consumer the way claim.lua records them (without returning payloads).</summary>
    private static async Task<List<(RedisValue Id, long Token)>> HoldAsync(IDatabase db, QueueKeys keys, int count)
    {
        var ids = await db.ListLeftPopAsync(keys.Ready, count) ?? [];
        var token = await db.StringIncrementAsync(keys.Seq);
        await db.SortedSetAddAsync(keys.Inflight(Consumer), [.. ids.Select(id => new SortedSetEntry(id, token))]);
        return [.. ids.Select(id => (id, token))];
    }

    /// <summary>Redis' own execution time (ms) of the one call of <paramref name="script"/> that <paramref name="call"/> makes.</summary>
    private static async Task<double> TimeAsync(IServer server, RedisScript script, Func<Task<RedisResult>> call)
    {
#pragma warning disable CA5350 // SHA1 is how Redis names a script (EVALSHA), not a security measure.
        var sha = Convert.ToHexStringLower(SHA1.HashData(Encoding.UTF8.GetBytes(script.Source)));
#pragma warning restore CA5350
        await server.ScriptLoadAsync(script.Source); // compiled before the measured call
        await server.ExecuteAsync("SLOWLOG", "RESET");
        await call();
        var entries = (RedisResult[])(await server.ExecuteAsync("SLOWLOG", "GET", "100"))!;
        foreach (var entry in entries.Select(e => (RedisResult[])e!))
        {
            var args = (RedisResult[])entry[3]!;
            // EVALSHA names the script by its SHA; EVAL (the first call through a connection) by its source, cut short.
            if (args.Length > 1 && ((string?)args[0])?.StartsWith("EVAL", StringComparison.OrdinalIgnoreCase) == true
                && (string.Equals((string?)args[1], sha, StringComparison.OrdinalIgnoreCase) || script.Source.StartsWith(((string?)args[1] ?? "?")[..Math.Min(64, ((string?)args[1] ?? "?").Length)], StringComparison.Ordinal)))
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
