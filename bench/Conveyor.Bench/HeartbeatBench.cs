using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Conveyor.Hosting;
using Conveyor.Presence;
using Conveyor.Storage;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;
using StackExchange.Redis;

namespace Conveyor.Bench;

/// <summary>
/// R runtimes (bulk-inserted, tokens hashed as the registry does) are brought online by one synchronous beat each
/// (written in groups), then beaten through <see cref="HeartbeatService"/> by C concurrent callers for S seconds
/// (recorded in Redis); flushes of the steady state's share of due runtimes (and one of all R) are timed, and a
/// Passthrough run of N beats gives the per-beat PostgreSQL cost without the buffer. Prints one JSON line.
/// </summary>
internal static class HeartbeatBench
{
    public static async Task<int> RunAsync(BenchArgs args)
    {
        var redis = args.String("redis", "127.0.0.1:6379");
        var postgres = args.String("postgres", "Host=127.0.0.1;Port=5432;Database=conveyor;Username=conveyor");
        var runtimes = args.Int("runtimes", 100_000);
        var concurrency = args.Int("concurrency", 512);
        var seconds = args.Int("seconds", 10);
        var syncConcurrency = args.Int("sync-concurrency", 2048);
        var passthroughConcurrency = args.Int("passthrough-concurrency", 64);
        var fullFlush = args.Int("full-flush", 1) == 1;
        var passthroughBeats = args.Int("passthrough-beats", 10_000);
        var idleBeats = args.Int("idle-beats", 2_000);
        // Only the steady-state formula uses these (what a deployment would configure); nothing here waits on them.
        var beatInterval = args.Int("beat-interval", (int)new PresenceOptions().BeatInterval.TotalSeconds);
        var flushInterval = args.Int("flush-interval", (int)new PresenceOptions().FlushInterval.TotalSeconds);
        var run = Guid.NewGuid().ToString("N")[..8];

        await using var batched = Build(args, redis, postgres, PresenceMode.Batched);
        var presence = batched.GetRequiredService<IOptions<PresenceOptions>>().Value;
        var writeWindow = presence.EffectiveWriteWindow.TotalSeconds;
        // Steady state: a runtime's row is written once per period: its own window (7/8 of WriteWindow on average,
        // see beat.lua) and then half a beat interval, on average, until its next beat; every beat when there is no
        // window. A flush interval holds R × F / period due runtimes.
        var period = writeWindow == 0 ? beatInterval : Math.Max(beatInterval, 7.0 / 8 * writeWindow + beatInterval / 2.0);
        var duePerFlush = (int)Math.Min(runtimes, Math.Round(runtimes * flushInterval / period));
        var dataSource = batched.GetRequiredService<NpgsqlDataSource>();
        var heartbeats = batched.GetRequiredService<HeartbeatService>();
        var flusher = batched.GetRequiredService<HeartbeatFlusher>();
        flusher.Writers = args.Int("writers", HeartbeatFlusher.ConcurrentBatches);
        var multiplexer = await batched.GetRequiredService<RedisConnection>().GetMultiplexerAsync();
        var server = multiplexer.GetServers()[0];
        var db = multiplexer.GetDatabase();
        var stats = new PostgresStats(postgres);
        using var statements = new StatementCounter();

        await batched.GetRequiredService<SchemaMigrator>().MigrateAsync();
        var postmaster = await PostmasterAsync(dataSource);
        Console.Error.WriteLine(postmaster is { } pm
            ? $"PostgreSQL CPU: the server's own processes (postmaster {pm} and its children)"
            : "PostgreSQL CPU: every local process named postgres (the server's data directory could not be read)");
        // Beats another process left buffered would inflate the measured flush: write them out first.
        await flusher.RunOnceAsync(CancellationToken.None);

        var ids = new string[runtimes];
        var tokens = new string[runtimes];

        try
        {
            // 1. Register R runtimes in one COPY: the registry's INSERT one by one would dominate the run.
            Console.Error.WriteLine($"register {runtimes} runtimes (COPY)");
            var clock = Stopwatch.StartNew();
            await RegisterAsync(dataSource, run, ids, tokens);
            var registerSeconds = clock.Elapsed.TotalSeconds;
            if (args.String("order", "shuffled") == "shuffled")
            {
                // Independent runtimes beat in an order unrelated to the order they registered in (= heap order).
                var order = Enumerable.Range(0, runtimes).ToArray();
                new Random(42).Shuffle(order);
                ids = [.. order.Select(i => ids[i])];
                tokens = [.. order.Select(i => tokens[i])];
            }

            // 2. First beat of each: the synchronous path flips it online (in groups: one UPDATE per group) and marks it
            //    online in Redis. A mass reconnect: every runtime at once, as many in flight as the app would take.
            Console.Error.WriteLine($"bring {runtimes} online (synchronous path, {syncConcurrency} in flight)");
            var onlineStatementsBefore = statements.Statements;
            var onlineCpuBefore = await CpuTimes.ReadAsync(server, postmaster);
            var online = await BeatAsync(heartbeats, ids, tokens, syncConcurrency, TimeSpan.MaxValue, runtimes, BeatOutcome.Synchronous);
            var onlineCpu = await CpuTimes.ReadAsync(server, postmaster) - onlineCpuBefore;
            var onlineStatements = statements.Statements - onlineStatementsBefore;
            if (online.Unexpected > 0)
            {
                throw new InvalidOperationException($"{online.Unexpected} first beats did not take the synchronous path");
            }

            // Each runtime's token hash, as the online set holds it: the steady flushes below make runtimes due by hand.
            var hashes = tokens.Select(t => RuntimeCredentials.Hash(t)!).ToArray();
            var rotation = 0;
            // Flushes what fell due on its own (not measured), then makes the next n runtimes of the rotation due (their
            // write window has run out: PostgreSQL's value is as old as the window) and beats each of them once.
            async Task<long> PrepareFlushAsync(int n)
            {
                await flusher.RunOnceAsync(CancellationToken.None);
                var picked = Enumerable.Range(rotation, n).Select(i => i % runtimes).ToArray();
                rotation = (rotation + n) % runtimes;
                foreach (var chunk in picked.Chunk(1000))
                {
                    await db.HashSetAsync(PresenceKeys.Online, [.. chunk.Select(i => new HashEntry(ids[i], hashes[i] + ":0"))]);
                }
                await BeatAsync(heartbeats, [.. picked.Select(i => ids[i])], [.. picked.Select(i => tokens[i])], concurrency, TimeSpan.MaxValue, n, BeatOutcome.Buffered);
                return await db.SortedSetLengthAsync(PresenceKeys.Beats);
            }

            // 3. Warm the buffered path and the flusher (JIT tiers, pools, script cache, prepared statements): a
            //    deployed flusher runs every 10 s for as long as the app lives, so what it costs warm is what counts.
            var warmFlushes = args.Int("warm-flushes", 3);
            Console.Error.WriteLine($"warm up: buffered beats and {warmFlushes} steady flushes");
            await BeatAsync(heartbeats, ids, tokens, concurrency, TimeSpan.FromSeconds(2), int.MaxValue, BeatOutcome.Buffered);
            for (var w = 0; w < warmFlushes; w++)
            {
                await PrepareFlushAsync(duePerFlush);
                await flusher.RunOnceAsync(CancellationToken.None);
            }

            // 4. One caller, one beat at a time: the latency of a beat on an idle service.
            Console.Error.WriteLine($"idle beats x{idleBeats}");
            var idle = await BeatAsync(heartbeats, ids, tokens, 1, TimeSpan.MaxValue, idleBeats, BeatOutcome.Buffered);

            // 5. The measured phase: C callers beat round-robin over the R runtimes for S seconds.
            Console.Error.WriteLine($"buffered beats for {seconds} s, {concurrency} in flight");
            var redisBefore = await RedisStats.ReadAsync(server);
            var measured = await BeatAsync(heartbeats, ids, tokens, concurrency, TimeSpan.FromSeconds(seconds), int.MaxValue, BeatOutcome.Buffered);
            var redisDelta = await RedisStats.ReadAsync(server) - redisBefore;
            if (measured.Beats < runtimes + concurrency)
            {
                // Too short to reach every runtime: beat the rest (not measured) so the flush sees all R. Callers
                // stopped by the deadline skipped up to C indexes, hence the overlap.
                var from = Math.Max(0, measured.Beats - concurrency);
                await BeatAsync(heartbeats, ids[from..], tokens[from..], concurrency, TimeSpan.MaxValue, runtimes - from, BeatOutcome.Buffered);
            }

            // 6. Steady flushes: F of them, each of the steady state's due share of the R runtimes (made due and beaten
            //    first, not measured); flushMs is their median.
            var flushes = args.Int("flushes", 5);
            long flushStatementsTotal = 0;
            var flushStatementTime = TimeSpan.Zero;
            var pgFlush = default(PostgresStats.Snapshot);
            var runs = new List<FlushRun>();
            for (var f = 0; f < flushes; f++)
            {
                var pending = await PrepareFlushAsync(duePerFlush);
                Console.Error.WriteLine($"flush {f + 1}/{flushes}: {pending} due runtimes, batches of {presence.FlushBatchSize}");
                var pgBefore = await stats.ReadAsync(dataSource);
                var measuredFlush = await MeasureFlushAsync(pending);
                pgFlush += await stats.ReadAsync(dataSource) - pgBefore;
                runs.Add(measuredFlush);
            }
            var flushStatements = (double)flushStatementsTotal / flushes;
            var flushStatementMs = flushStatementTime.TotalMilliseconds / flushes;
            var median = runs.OrderBy(r => r.Ms).ElementAt(flushes / 2);

            // One flush of every runtime at once: the most a flush can hold (the first flush after a version without the
            // window rolls out, or after Redis lost the online set's window starts).
            FlushRun? full = null;
            if (fullFlush)
            {
                var pending = await PrepareFlushAsync(runtimes);
                Console.Error.WriteLine($"full flush: {pending} due runtimes");
                full = await MeasureFlushAsync(pending);
            }

            async Task<FlushRun> MeasureFlushAsync(long pending)
            {
                await WarmPoolAsync(dataSource, HeartbeatFlusher.ConcurrentBatches);
                var cpuBefore = await CpuTimes.ReadAsync(server, postmaster);
                var backgroundBefore = await BackgroundWorkAsync(dataSource);
                var gen2Before = GC.CollectionCount(2);
                var (statementsBefore, statementTimeBefore) = (statements.Statements, statements.Elapsed);
                var load = LoadAverage();
                clock.Restart();
                var result = await flusher.RunOnceAsync(CancellationToken.None);
                var elapsed = clock.Elapsed.TotalMilliseconds;
                flushStatementsTotal += statements.Statements - statementsBefore;
                flushStatementTime += statements.Elapsed - statementTimeBefore;
                var cpu = await CpuTimes.ReadAsync(server, postmaster) - cpuBefore;
                var gen2 = GC.CollectionCount(2) - gen2Before;
                var background = await BackgroundWorkAsync(dataSource) - backgroundBefore;
                var run = new FlushRun(pending, result, elapsed, cpu, background.Checkpoints, background.Autovacuums, gen2, load, background.WalBytes);
                Console.Error.WriteLine($"  {run.Ms:F0} ms, {result.Flushed} rows, CPU ms {string.Join(", ", run.Cpu.ToJson().Select(p => $"{p.Key} {p.Value}"))}, checkpoints {run.Checkpoints}, autovacuum/analyze ends {run.Autovacuums}, WAL {run.WalBytes / 1048576.0:F1} MiB, gen2 GCs {run.Gen2}, load {load}");
                return run;
            }

            // 7. Passthrough: every beat writes PostgreSQL at once.
            Console.Error.WriteLine($"passthrough beats x{passthroughBeats}, {passthroughConcurrency} in flight");
            await using var passthrough = Build(args, redis, postgres, PresenceMode.Passthrough);
            var passthroughSource = passthrough.GetRequiredService<NpgsqlDataSource>();
            var passthroughHeartbeats = passthrough.GetRequiredService<HeartbeatService>();
            await BeatAsync(passthroughHeartbeats, ids, tokens, passthroughConcurrency, TimeSpan.MaxValue, Math.Min(1000, runtimes), BeatOutcome.Synchronous);
            var pgPassthroughBefore = await stats.ReadAsync(dataSource, passthroughSource);
            await WarmPoolAsync(passthroughSource, Math.Min(passthroughConcurrency, FlipWriter.ConcurrentGroups * 2));
            var passthroughBefore = statements.Statements;
            var direct = await BeatAsync(passthroughHeartbeats, ids, tokens, passthroughConcurrency, TimeSpan.MaxValue, passthroughBeats, BeatOutcome.Synchronous);
            var passthroughStatements = statements.Statements - passthroughBefore;
            if (direct.Unexpected > 0)
            {
                throw new InvalidOperationException($"{direct.Unexpected} passthrough beats were not written synchronously");
            }
            var pgPassthrough = await stats.ReadAsync(dataSource, passthroughSource) - pgPassthroughBefore;

            // Steady state: each runtime beats once per beat interval, so one flush interval brings R·F/B beats, and a
            // flush writes the due share of the runtimes, which is what step 6 measured.
            var beatsPerFlushInterval = (double)runtimes * flushInterval / beatInterval;
            var writesPerBeatBatched = flushStatements / beatsPerFlushInterval;
            var rowsPerBeatBatched = (double)pgFlush.TupUpdated / flushes / beatsPerFlushInterval;
            var writesPerBeatPassthrough = (double)passthroughStatements / direct.Beats;
            var line = new Dictionary<string, object>
            {
                ["mode"] = "heartbeats",
                ["runtimes"] = runtimes,
                ["concurrency"] = concurrency,
                ["beats"] = measured.Beats,
                ["beatsPerSec"] = Math.Round(measured.PerSecond),
                ["beatP50Ms"] = Math.Round(measured.Percentile(0.50), 3),
                ["beatP99Ms"] = Math.Round(measured.Percentile(0.99), 3),
                ["idleBeatP50Ms"] = Math.Round(idle.Percentile(0.50), 3),
                ["idleBeatP99Ms"] = Math.Round(idle.Percentile(0.99), 3),
                ["unbuffered"] = measured.Unexpected + idle.Unexpected,
                ["redisCommandsPerBeat"] = Math.Round((double)redisDelta.Commands / measured.Beats, 3),
                ["redisCpuPct"] = Math.Round(100 * redisDelta.CpuSeconds / measured.Seconds, 1),
                ["registerSec"] = Math.Round(registerSeconds, 2),
                ["syncConcurrency"] = syncConcurrency,
                ["onlinePerSec"] = Math.Round(online.PerSecond),
                ["onlineP50Ms"] = Math.Round(online.Percentile(0.50), 1),
                ["onlineP99Ms"] = Math.Round(online.Percentile(0.99), 1),
                ["onlineStatements"] = onlineStatements,
                ["onlineCpuMs"] = onlineCpu.ToJson(),
                ["writeWindowSec"] = writeWindow,
                ["duePerFlush"] = duePerFlush,
                ["buffered"] = median.Buffered,
                ["flushMs"] = Math.Round(median.Ms, 1),
                ["flushMsRuns"] = runs.Select(r => Math.Round(r.Ms, 1)).ToArray(),
                ["flushed"] = median.Result.Flushed,
                ["raced"] = median.Result.Raced,
                ["batches"] = median.Result.Batches,
                ["batchSize"] = presence.FlushBatchSize,
                ["statementsPerFlush"] = flushStatements,
                ["flushStatementMs"] = Math.Round(flushStatementMs, 1),
                ["flushCpuMs"] = median.Cpu.ToJson(),
                ["pgCoresAtFlushInterval"] = median.Cpu.Postgres is { } pgCpu ? Math.Round(pgCpu / flushInterval, 3) : null!,
                ["flushLoadAvg"] = median.LoadAverage,
                ["flushCheckpoints"] = runs.Sum(r => r.Checkpoints),
                ["flushWalMiB"] = Math.Round(median.WalBytes / 1048576.0, 1),
                ["flushAutovacuums"] = runs.Sum(r => r.Autovacuums),
                ["pgFlushXactCommits"] = pgFlush.XactCommit / flushes,
                ["pgFlushRowsUpdated"] = pgFlush.TupUpdated / flushes,
                ["pgFlushHotPct"] = Math.Round(100.0 * pgFlush.HotUpdated / Math.Max(1, pgFlush.TupUpdated), 1),
                ["beatIntervalSec"] = beatInterval,
                ["flushIntervalSec"] = flushInterval,
                ["beatsPerFlushInterval"] = Math.Round(beatsPerFlushInterval),
                ["dbWritesPerBeatBatched"] = Math.Round(writesPerBeatBatched, 6),
                ["dbRowsPerBeat"] = Math.Round(rowsPerBeatBatched, 4),
                ["dbWritesPerBeatPassthrough"] = Math.Round(writesPerBeatPassthrough, 4),
                ["writeReduction"] = Math.Round(writesPerBeatPassthrough / writesPerBeatBatched),
                ["passthroughBeats"] = direct.Beats,
                ["passthroughBeatsPerSec"] = Math.Round(direct.PerSecond),
                ["passthroughP50Ms"] = Math.Round(direct.Percentile(0.50), 3),
                ["passthroughP99Ms"] = Math.Round(direct.Percentile(0.99), 3),
                ["pgPassthroughXactPerBeat"] = Math.Round((double)pgPassthrough.XactCommit / direct.Beats, 4),
                ["pgPassthroughRowsPerBeat"] = Math.Round((double)pgPassthrough.TupUpdated / direct.Beats, 4),
            };
            if (full is { } all)
            {
                line["fullFlushMs"] = Math.Round(all.Ms, 1);
                line["fullFlushRows"] = all.Result.Flushed;
                line["fullFlushCpuMs"] = all.Cpu.ToJson();
                line["fullFlushWalMiB"] = Math.Round(all.WalBytes / 1048576.0, 1);
            }
            Console.WriteLine(JsonSerializer.Serialize(line));
            return 0;
        }
        finally
        {
            Console.Error.WriteLine("clean up the bench runtimes");
            await ForgetAsync(dataSource, db, ids);
        }
    }

    private static ServiceProvider Build(BenchArgs args, string redis, string postgres, PresenceMode mode)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Conveyor:Redis:ConnectionString"] = redis + ",allowAdmin=true",
            ["Conveyor:Postgres:ConnectionString"] = postgres,
            ["Conveyor:Presence:Mode"] = mode.ToString(),
            ["Conveyor:Presence:FlushBatchSize"] = args.Int("batch", 5000).ToString(CultureInfo.InvariantCulture),
        };
        if (args.Int("write-window", -1) is var window and >= 0)
        {
            // Seconds; not given: the option's default.
            settings["Conveyor:Presence:WriteWindow"] = TimeSpan.FromSeconds(window).ToString();
        }
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        var services = new ServiceCollection().AddLogging(logging => logging.AddConsole().SetMinimumLevel(LogLevel.Warning));
        services.AddConveyor(configuration);
        return services.BuildServiceProvider();
    }

    /// <summary>Inserts the runtimes as <see cref="RuntimeRegistry.RegisterAsync"/> would (v7 id, SHA-256 of a fresh token), offline.</summary>
    private static async Task RegisterAsync(NpgsqlDataSource dataSource, string run, string[] ids, string[] tokens)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        await using (var writer = await connection.BeginBinaryImportAsync("COPY runtimes (id, name, token_hash) FROM STDIN (FORMAT BINARY)"))
        {
            for (var i = 0; i < ids.Length; i++)
            {
                var id = Guid.CreateVersion7();
                ids[i] = RuntimeCredentials.Canonical(id);
                tokens[i] = RuntimeCredentials.NewToken();
                await writer.StartRowAsync();
                await writer.WriteAsync(id, NpgsqlDbType.Uuid);
                await writer.WriteAsync($"bench-{run}-{i}", NpgsqlDbType.Text);
                await writer.WriteAsync(RuntimeCredentials.Hash(tokens[i])!, NpgsqlDbType.Text);
            }
            await writer.CompleteAsync();
        }
        // Fresh statistics and visibility, as autovacuum keeps them for a table that grew over time.
        await using var vacuum = new NpgsqlCommand("VACUUM ANALYZE runtimes", connection);
        await vacuum.ExecuteNonQueryAsync();
    }

    /// <summary>
    /// Opens <paramref name="connections"/> pooled connections at once and returns them, so a measured phase does not
    /// pay for connections the stats read closed (a flush timer finds its pool warm).
    /// </summary>
    private static async Task WarmPoolAsync(NpgsqlDataSource dataSource, int connections)
    {
        var open = await Task.WhenAll(Enumerable.Range(0, connections).Select(_ => dataSource.OpenConnectionAsync().AsTask()));
        foreach (var connection in open)
        {
            await connection.DisposeAsync();
        }
    }

    /// <summary>
    /// <paramref name="callers"/> loops beat the runtimes round-robin until <paramref name="limit"/> beats or
    /// <paramref name="duration"/>, whichever comes first; each beat's latency is kept.
    /// </summary>
    private static async Task<BeatRun> BeatAsync(
        HeartbeatService heartbeats, string[] ids, string[] tokens, int callers, TimeSpan duration, int limit, BeatOutcome expected)
    {
        var next = -1L;
        var unexpected = 0L;
        var started = Stopwatch.GetTimestamp();
        var deadline = duration == TimeSpan.MaxValue ? long.MaxValue : started + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        var samples = await Task.WhenAll(Enumerable.Range(0, callers).Select(_ => Task.Run(async () =>
        {
            var latencies = new List<double>(1024);
            long n;
            while ((n = Interlocked.Increment(ref next)) < limit && Stopwatch.GetTimestamp() < deadline)
            {
                var i = (int)(n % ids.Length);
                var sent = Stopwatch.GetTimestamp();
                var result = await heartbeats.BeatAsync(ids[i], tokens[i]);
                latencies.Add(Stopwatch.GetElapsedTime(sent).TotalMilliseconds);
                if (result.Outcome != expected)
                {
                    Interlocked.Increment(ref unexpected);
                }
            }
            return latencies;
        })));
        var elapsed = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var all = samples.SelectMany(s => s).ToList();
        all.Sort();
        return new BeatRun(all, elapsed, unexpected);
    }

    /// <summary>Deletes the bench runtimes and their presence in Redis; the next run starts on a table without their dead rows.</summary>
    private static async Task ForgetAsync(NpgsqlDataSource dataSource, IDatabase db, string[] ids)
    {
        var known = ids.Where(id => id is not null).ToArray();
        await using (var command = dataSource.CreateCommand("DELETE FROM runtimes WHERE id = ANY($1)"))
        {
            command.Parameters.AddWithValue(known.Select(Guid.Parse).ToArray());
            await command.ExecuteNonQueryAsync();
        }
        await using (var vacuum = dataSource.CreateCommand("VACUUM runtimes"))
        {
            await vacuum.ExecuteNonQueryAsync();
        }
        foreach (var chunk in known.Chunk(10_000))
        {
            var members = chunk.Select(id => (RedisValue)id).ToArray();
            await db.HashDeleteAsync(PresenceKeys.Online, members);
            await db.HashDeleteAsync(PresenceKeys.Seen, members);
            await db.SortedSetRemoveAsync(PresenceKeys.Beats, members);
            await db.SortedSetRemoveAsync(PresenceKeys.Flushing, members);
        }
    }

    /// <summary>
    /// One measured flush: what was buffered, what it did, how long it took, the CPU it cost, and what else ran:
    /// PostgreSQL checkpoints begun (after one, the first write to each page logs the whole page), autovacuum or
    /// autoanalyze runs of runtimes that ended, and this process's full garbage collections.
    /// </summary>
    private sealed record FlushRun(
        long Buffered, FlushResult Result, double Ms, CpuTimes Cpu, long Checkpoints, long Autovacuums, int Gen2, string LoadAverage, long WalBytes);

    /// <summary>The machine's 1-minute load average when a flush began (other work on the shared cores).</summary>
    private static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "";

    /// <summary>The PostgreSQL server's postmaster pid, from its data directory (null when that cannot be read: another machine, say).</summary>
    private static async Task<int?> PostmasterAsync(NpgsqlDataSource dataSource)
    {
        try
        {
            await using var command = dataSource.CreateCommand("SHOW data_directory");
            var directory = (string)(await command.ExecuteScalarAsync())!;
            var first = (await File.ReadAllLinesAsync(Path.Combine(directory, "postmaster.pid")))[0];
            return int.Parse(first, CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is PostgresException or IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
    }

    /// <summary>
    /// Checkpoints begun so far, autovacuum or autoanalyze runs of <c>runtimes</c> so far (work that competes with a
    /// flush for the same cores), and the server's WAL position (bytes written so far; exact, unlike pg_stat_wal, whose
    /// counters backends report only when idle).
    /// </summary>
    private static async Task<BackgroundWork> BackgroundWorkAsync(NpgsqlDataSource dataSource)
    {
        await using var command = dataSource.CreateCommand("""
            SELECT (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter),
                   (SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0)::bigint FROM pg_stat_user_tables WHERE relname = 'runtimes'),
                   (pg_current_wal_lsn() - '0/0')::bigint
            """);
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        return new BackgroundWork(reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2));
    }

    private readonly record struct BackgroundWork(long Checkpoints, long Autovacuums, long WalBytes)
    {
        public static BackgroundWork operator -(BackgroundWork a, BackgroundWork b) =>
            new(a.Checkpoints - b.Checkpoints, a.Autovacuums - b.Autovacuums, a.WalBytes - b.WalBytes);
    }

    /// <summary>Latencies (ms, sorted) of one run of beats.</summary>
    private sealed record BeatRun(List<double> Latencies, double Seconds, long Unexpected)
    {
        public int Beats => Latencies.Count;

        public double PerSecond => Beats / Seconds;

        public double Percentile(double p) => Latency.Percentile(Latencies, p);
    }
}
