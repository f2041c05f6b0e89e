using Conveyor.Presence;
using Conveyor.Storage;
using Conveyor.Tests.Infrastructure;
using StackExchange.Redis;

namespace Conveyor.Tests.Presence;

/// <summary>
/// The flush and the sweep touch the same rows when beats buffered before a PostgreSQL outage are older than the
/// stale window by the time it ends. Both lock rows in id order, so neither can deadlock the other (nor a flush on
/// another instance), however the planner reads the table.
/// </summary>
[Collection(PresenceCollection.Name)]
public sealed class LockOrderTests(PresenceDatabase fixture) : IClassFixture<PresenceDatabase>
{
    [Theory]
    [InlineData("flush")]
    [InlineData("sweep")]
    public async Task A_statement_that_meets_a_locked_row_waits_holding_no_row_of_a_higher_id(string service)
    {
        // Every runtime is silent: with the disruption rules on, the sweep would hold them all (fleet silent).
        await using var host = await PresenceHost.StartAsync(fixture.Database, new() { ["Conveyor:Presence:MassOfflineShare"] = "1" });
        // Stored in descending id order, so a plan that reads the table in physical order (a sequential or bitmap
        // scan, which is what 2,000 ids get) meets the highest id first.
        var ids = await InsertStaleOnlineAsync(host, 2000, "id DESC");
        Assert.Equal(ids[^1], await host.Database.ScalarAsync<Guid>("SELECT id FROM runtimes ORDER BY ctid LIMIT 1"));
        if (service == "flush")
        {
            await BufferBeatsAsync(host, ids, ageMs: 0);
        }
        await using var blocker = await host.Database.DataSource.OpenConnectionAsync();
        await using var transaction = await blocker.BeginTransactionAsync();
        await TouchAsync(blocker, ids[0]);

        // The service waits for the lowest id, which the blocker holds.
        Task run = service == "flush"
            ? host.Flusher.RunOnceAsync(CancellationToken.None)
            : host.Sweeper.RunOnceAsync(CancellationToken.None);
        await Wait.UntilAsync(
            async () => await host.Database.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'") == 1,
            $"the {service} waited for a row lock");
        // Had it locked in physical order, it would now hold the highest id, and this would deadlock (40P01).
        await TouchAsync(blocker, ids[^1]);
        await transaction.CommitAsync();
        await run;

        var expected = service == "flush" ? "online" : "offline";
        Assert.Equal((long)ids.Length, await host.Database.ScalarAsync<long>("SELECT count(*) FROM runtimes WHERE status = $1", expected));
        if (service == "flush")
        {
            Assert.Equal(0L, await host.Database.ScalarAsync<long>("SELECT count(*) FROM runtimes WHERE last_seen_at < now() - interval '1 minute'"));
        }
    }

    [Fact]
    public async Task Flushes_and_sweeps_of_the_same_rows_at_once_never_deadlock()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, new()
        {
            ["Conveyor:Presence:FlushBatchSize"] = "1000",
            ["Conveyor:Presence:SweepBatchSize"] = "3000",
            ["Conveyor:Presence:MassOfflineShare"] = "1",
        });
        // Stored in random order, as rows end up after years of updates.
        var ids = await InsertStaleOnlineAsync(host, 3000, "random()");
        for (var round = 0; round < 10; round++)
        {
            await host.Database.ExecuteAsync("UPDATE runtimes SET status = 'online', last_seen_at = now() - interval '1 hour'");
            await host.ResetRedisAsync();
            // Beats buffered before an outage longer than the stale window: the flush writes them, the sweep finds
            // them too old to keep anyone online, so both update every row.
            await BufferBeatsAsync(host, ids, ageMs: 3_600_000);

            // The three flush batches and the sweep send their UPDATEs at the same moment.
            var waiting = 0;
            var go = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            async Task Together()
            {
                if (Interlocked.Increment(ref waiting) == 4)
                {
                    go.SetResult();
                }
                try
                {
                    await go.Task.WaitAsync(TimeSpan.FromMinutes(1));
                }
                catch (TimeoutException)
                {
                    throw new TimeoutException($"only {Volatile.Read(ref waiting)} of the 4 UPDATEs (3 flush batches, 1 sweep) came to their start within a minute");
                }
            }
            host.Flusher.BeforeStep = step => step == FlushStep.Write ? Together() : Task.CompletedTask;
            host.Sweeper.BeforeStep = step => step == SweepStep.MarkOffline ? Together() : Task.CompletedTask;
            var flush = Task.Run(() => host.Flusher.RunOnceAsync(CancellationToken.None));
            var sweep = Task.Run(() => host.Sweeper.RunOnceAsync(CancellationToken.None));
            var (flushed, swept) = (await flush, await sweep);

            Assert.Equal(3000, flushed.Flushed + flushed.Raced);
            Assert.Equal(3000, swept.Swept);
            Assert.Equal(0L, await host.Database.ScalarAsync<long>("SELECT count(*) FROM runtimes WHERE status = 'online'"));
            Assert.Equal(0, await host.BufferedCountAsync());
        }
    }

    /// <summary>Runtimes online with a last_seen_at an hour old, stored in the order <paramref name="order"/> gives; their ids, ascending.</summary>
    [Fact]
    public async Task A_flush_writes_its_batches_in_id_order_whatever_order_the_beats_came_in()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, new() { ["Conveyor:Presence:FlushBatchSize"] = "10" });
        var ids = await InsertStaleOnlineAsync(host, 100, "random()");
        // The highest id beat first: the frozen set, in beat-time order, starts with it.
        var now = await RedisTime.NowMsAsync(host.Db);
        await host.Db.SortedSetAddAsync(PresenceKeys.Beats, [.. ids.Select((id, i) => new SortedSetEntry(id.ToString(), now - i))]);

        // One writer; after each batch is written, which rows has the flush brought up to date so far?
        var fresh = new List<HashSet<Guid>>();
        host.Flusher.Writers = 1;
        host.Flusher.BeforeStep = async step =>
        {
            if (step == FlushStep.Settle)
            {
                fresh.Add([.. await FreshAsync(host)]);
            }
        };
        await host.Flusher.RunOnceAsync(CancellationToken.None);

        Assert.Equal(10, fresh.Count);
        for (var batch = 0; batch < fresh.Count; batch++)
        {
            Assert.Equal(ids.Take(10 * (batch + 1)).ToHashSet(), fresh[batch]);
        }
    }

    private static async Task<List<Guid>> FreshAsync(PresenceHost host)
    {
        var ids = new List<Guid>();
        await using var command = host.Database.DataSource.CreateCommand("SELECT id FROM runtimes WHERE last_seen_at > now() - interval '1 minute'");
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            ids.Add(reader.GetGuid(0));
        }
        return ids;
    }

    private static async Task<Guid[]> InsertStaleOnlineAsync(PresenceHost host, int count, string order)
    {
        await host.Database.ExecuteAsync($"""
            INSERT INTO runtimes (id, name, status, last_seen_at, token_hash)
            SELECT id, 'agent', 'online', now() - interval '1 hour', repeat('a', 64)
            FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, {count})) ids
            ORDER BY {order};
            ANALYZE runtimes;
            """);
        var ids = new List<Guid>();
        await using var command = host.Database.DataSource.CreateCommand("SELECT id FROM runtimes ORDER BY id");
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            ids.Add(reader.GetGuid(0));
        }
        return [.. ids];
    }

    /// <summary>A buffered beat for every id, <paramref name="ageMs"/> before Redis's now.</summary>
    private static async Task BufferBeatsAsync(PresenceHost host, Guid[] ids, long ageMs)
    {
        var at = await RedisTime.NowMsAsync(host.Db) - ageMs;
        await host.Db.SortedSetAddAsync(PresenceKeys.Beats, [.. ids.Select(id => new SortedSetEntry(id.ToString(), at))]);
    }

    private static async Task TouchAsync(Npgsql.NpgsqlConnection connection, Guid id)
    {
        await using var command = new Npgsql.NpgsqlCommand("UPDATE runtimes SET last_seen_at = last_seen_at WHERE id = $1", connection);
        command.Parameters.AddWithValue(id);
        Assert.Equal(1, await command.ExecuteNonQueryAsync());
    }
}
