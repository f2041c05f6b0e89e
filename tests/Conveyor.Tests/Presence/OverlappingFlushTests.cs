using Conveyor.Presence;
using Conveyor.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Tests.Presence;

/// <summary>
/// Two flushes at once (every self-host instance runs the timer, and a slow flush can outlive its tick), stepped
/// through interleavings of their steps while runtimes keep beating: no acknowledged beat is lost.
/// </summary>
[Collection(PresenceCollection.Name)]
public sealed class OverlappingFlushTests(PresenceDatabase fixture) : IClassFixture<PresenceDatabase>
{
    private const int X = 0, Y = 1;

    /// <summary>Runtimes per test: one falls silent at every turn, and no execution has more than 24 turns.</summary>
    private const int Runtimes = 25;

    /// <summary>
    /// The defect's schedules. Y writes the frozen beats and stalls before forgetting them; X writes them too,
    /// empties the set and freezes the beats that arrived since: in its second pass, when X first found Y's set
    /// frozen, or on its next tick, when X had frozen it. Then Y forgets what it wrote.
    /// </summary>
    public static TheoryData<string, int[], int[], string> NewerFreezes => new()
    {
        {
            "X's second pass", [1, 1], [Y, Y, Y, X, X, X, X, X, Y],
            "Y:Freeze Y:Read Y:Write X:Freeze X:Read X:Write X:Settle X:Freeze Y:Settle X:Read X:Write X:Settle"
        },
        {
            "X's next tick", [2, 1], [X, Y, Y, Y, X, X, X, X, Y],
            "X:Freeze Y:Freeze Y:Read Y:Write X:Read X:Write X:Settle X:Freeze Y:Settle"
        },
    };

    [Theory]
    [MemberData(nameof(NewerFreezes))]
    public async Task A_flush_that_outlives_its_frozen_set_does_not_forget_the_beats_of_a_newer_freeze(string freeze, int[] runs, int[] schedule, string trace)
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        var runtimes = await host.OnlineRuntimesAsync(Runtimes);

        var turns = await ExecuteAsync(host, runtimes, runs, schedule);

        Assert.True(Trace(turns).StartsWith(trace, StringComparison.Ordinal), $"{freeze}: the schedule ran as {Trace(turns)}");
    }

    [Fact]
    public async Task Two_flushers_interleaved_at_every_step_never_lose_an_acknowledged_beat()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        var runtimes = await host.OnlineRuntimesAsync(Runtimes);

        // Every interleaving of one run of X and one of Y, step by step: each execution starts afresh, follows a
        // prefix of choices, then lets X go first wherever both could; every choice point it passed where X went
        // first is explored again with Y going first.
        var pending = new Stack<int[]>([[]]);
        var traces = new HashSet<string>(StringComparer.Ordinal);
        while (pending.TryPop(out var prefix))
        {
            var turns = await ExecuteAsync(host, runtimes, runs: [1, 1], prefix);
            Assert.True(traces.Add(Trace(turns)), $"explored twice: {Trace(turns)}");
            for (var i = prefix.Length; i < turns.Count; i++)
            {
                if (turns[i].Both && turns[i].Who == X)
                {
                    pending.Push([.. turns.Take(i).Select(t => t.Who), Y]);
                }
            }
        }

        // A run has 4 steps, 8 when it first drains a set frozen by the other: at least C(8, 4) = 70 interleavings.
        Assert.True(traces.Count >= 70, $"only {traces.Count} interleavings were explored");
    }

    /// <summary>One turn: who stepped, which step, and whether the other flusher could have stepped instead.</summary>
    private sealed record Turn(int Who, FlushStep Step, bool Both);

    private static string Trace(IEnumerable<Turn> turns) => string.Join(" ", turns.Select(t => $"{"XY"[t.Who]}:{t.Step}"));

    /// <summary>
    /// From empty buffers: flushers X and Y make <paramref name="runs"/> runs each, stepping in the order
    /// <paramref name="prefix"/> gives, then X first wherever both can. Before turn i, runtime i beats for the second
    /// and last time and runtime i + 1 for the first, so every freeze has a runtime with a beat on either side of it
    /// that is not superseded by a later one: forgetting that beat unwritten shows. Afterwards a third flusher writes
    /// what is left, and every runtime's last_seen_at must be at least its last acknowledged beat.
    /// </summary>
    private static async Task<List<Turn>> ExecuteAsync(PresenceHost host, List<RegisteredRuntime> runtimes, int[] runs, int[] prefix)
    {
        await host.Db.KeyDeleteAsync([PresenceKeys.Beats, PresenceKeys.Flushing, PresenceKeys.Generation]);
        await host.Database.ExecuteAsync("UPDATE runtimes SET last_seen_at = now() - interval '1 hour'");
        SteppedFlusher[] flushers = [.. runs.Select(n => new SteppedFlusher(ActivatorUtilities.CreateInstance<HeartbeatFlusher>(host.Services), n))];
        var acked = new Dictionary<Guid, DateTime>();
        var turns = new List<Turn>();
        while (flushers.Any(f => !f.Done))
        {
            foreach (var runtime in runtimes.Skip(turns.Count).Take(2))
            {
                var beat = await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token);
                Assert.Equal(BeatOutcome.Buffered, beat.Outcome);
                acked[runtime.Id] = beat.SeenAt!.Value.UtcDateTime;
            }
            int[] ready = [.. Enumerable.Range(0, flushers.Length).Where(i => !flushers[i].Done)];
            var who = turns.Count < prefix.Length ? prefix[turns.Count] : ready[0];
            Assert.True(ready.Contains(who), $"replay diverged after {Trace(turns)}");
            turns.Add(new Turn(who, flushers[who].Next ?? FlushStep.Freeze, ready.Length > 1));
            await flushers[who].StepAsync();
        }

        await host.Flusher.RunOnceAsync(CancellationToken.None);

        var trace = Trace(turns);
        Assert.True(await host.BufferedCountAsync() == 0, $"beats still buffered after {trace}");
        foreach (var runtime in runtimes.Where(r => acked.ContainsKey(r.Id)))
        {
            var lastSeen = await host.LastSeenAtAsync(runtime.Id);
            Assert.True(lastSeen >= acked[runtime.Id], $"beat at {acked[runtime.Id]:O} acknowledged, last_seen_at {lastSeen:O} after {trace}");
        }
        return turns;
    }
}
