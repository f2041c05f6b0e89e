using Conveyor.Presence;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.Presence;

/// <summary>
/// Synchronous beats (offline→online flips) that arrive together go to PostgreSQL in one statement, and each caller
/// is answered only after that statement committed.
/// </summary>
[Collection(PresenceCollection.Name)]
public sealed class FlipGroupTests(PresenceDatabase fixture) : IClassFixture<PresenceDatabase>
{
    /// <summary>A group waits up to 1 s for others to join, and goes at once when it holds <paramref name="size"/>.</summary>
    private static Dictionary<string, string?> Groups(int size) => new()
    {
        ["Conveyor:Presence:FlipGroupWindow"] = "00:00:01",
        ["Conveyor:Presence:FlipGroupSize"] = size.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    [Fact]
    public async Task Flips_that_arrive_together_are_written_in_one_statement_and_answered_only_after_it_committed()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, Groups(50));
        var runtimes = new List<RegisteredRuntime>();
        for (var i = 0; i < 50; i++)
        {
            runtimes.Add(await host.Registry.RegisterAsync($"agent-{i}"));
        }
        // Another transaction holds one of their rows, so the group's statement waits, uncommitted, for as long as the
        // test needs to look.
        await using var blocker = await host.Database.DataSource.OpenConnectionAsync();
        await using var hold = await blocker.BeginTransactionAsync();
        await using (var lockRow = new Npgsql.NpgsqlCommand("SELECT 1 FROM runtimes WHERE id = $1 FOR UPDATE", blocker, hold))
        {
            lockRow.Parameters.AddWithValue(runtimes[17].Id);
            await lockRow.ExecuteScalarAsync();
        }
        // Warm: a beat of an unknown id takes the same path (JIT, pool, script cache), so the 50 arrive within the window.
        Assert.Equal(BeatResult.NotFound, await host.Heartbeats.BeatAsync(Guid.NewGuid().ToString(), runtimes[0].Token));
        var commands = host.Commands.Count;

        var start = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var beats = runtimes.Select(r => Task.Run(async () =>
        {
            await start.Task;
            return await host.Heartbeats.BeatAsync(r.Id.ToString(), r.Token);
        })).ToArray();
        start.SetResult();
        await Wait.UntilAsync(
            async () => await host.Database.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'") == 1,
            "the group's statement waits for the held row");

        Assert.DoesNotContain(beats, b => b.IsCompleted);
        Assert.Equal(0, await host.Db.HashLengthAsync(PresenceKeys.Online));
        Assert.Equal(0L, await OnlineCountAsync(host));

        await hold.CommitAsync();
        var results = await Task.WhenAll(beats).WaitAsync(TimeSpan.FromMinutes(1));

        Assert.All(results, r => Assert.Equal((BeatOutcome.Synchronous, true), (r.Outcome, r.FlippedOnline)));
        Assert.Single(results.Select(r => r.SeenAt).Distinct());
        Assert.Equal(commands + 1, host.Commands.Count);
        Assert.Equal(50L, await OnlineCountAsync(host));
        Assert.Equal(50, await host.Db.HashLengthAsync(PresenceKeys.Online));
    }

    [Fact]
    public async Task Each_beat_of_a_group_gets_its_own_answer()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, Groups(4));
        var right = await host.Registry.RegisterAsync("right");
        var wrong = await host.Registry.RegisterAsync("wrong");
        Assert.Equal(BeatResult.NotFound, await host.Heartbeats.BeatAsync(Guid.NewGuid().ToString(), right.Token));
        var commands = host.Commands.Count;

        var results = await Task.WhenAll(
            Task.Run(() => host.Heartbeats.BeatAsync(right.Id.ToString(), right.Token)),
            Task.Run(() => host.Heartbeats.BeatAsync(wrong.Id.ToString(), right.Token)),
            Task.Run(() => host.Heartbeats.BeatAsync(Guid.NewGuid().ToString(), right.Token)),
            Task.Run(() => host.Heartbeats.BeatAsync(right.Id.ToString(), right.Token)));

        Assert.Equal(commands + 1, host.Commands.Count);
        // The runtime that beat twice flipped once.
        Assert.Equal(
            [(BeatOutcome.Synchronous, false), (BeatOutcome.Synchronous, true)],
            new[] { results[0], results[3] }.Select(r => (r.Outcome, r.FlippedOnline)).Order());
        Assert.Equal(BeatResult.Unauthorized, results[1]);
        Assert.Equal(BeatResult.NotFound, results[2]);
        Assert.Equal("online", await host.StatusAsync(right.Id));
        Assert.True(await host.KnownOnlineAsync(right.Id));
        Assert.Equal("offline", await host.StatusAsync(wrong.Id));
        Assert.False(await host.KnownOnlineAsync(wrong.Id));
        Assert.Null(await host.LastSeenAtAsync(wrong.Id));
    }

    [Fact]
    public async Task A_group_whose_statement_fails_fails_every_caller_and_flips_no_one()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, Groups(3));
        var runtimes = new[] { await host.Registry.RegisterAsync("a"), await host.Registry.RegisterAsync("b"), await host.Registry.RegisterAsync("c") };
        // Another transaction holds one of the rows, and this host's statements give up after half a second.
        await using var down = await PresenceHost.StartAsync(
            fixture.Database, Groups(3), connectionString: fixture.Database.ConnectionString + ";Options=-c statement_timeout=500", clearPresence: false);
        await using var blocker = await host.Database.DataSource.OpenConnectionAsync();
        await using var hold = await blocker.BeginTransactionAsync();
        await using (var lockRow = new Npgsql.NpgsqlCommand("SELECT 1 FROM runtimes WHERE id = $1 FOR UPDATE", blocker, hold))
        {
            lockRow.Parameters.AddWithValue(runtimes[1].Id);
            await lockRow.ExecuteScalarAsync();
        }

        var beats = runtimes.Select(r => Task.Run(() => down.Heartbeats.BeatAsync(r.Id.ToString(), r.Token))).ToArray();

        foreach (var beat in beats)
        {
            await Assert.ThrowsAnyAsync<Npgsql.NpgsqlException>(() => beat);
        }
        await hold.RollbackAsync();
        Assert.Equal(0L, await OnlineCountAsync(host));
        Assert.Equal(0, await host.Db.HashLengthAsync(PresenceKeys.Online));
    }

    private static Task<long> OnlineCountAsync(PresenceHost host) =>
        host.Database.ScalarAsync<long>("SELECT count(*) FROM runtimes WHERE status = 'online'");
}
