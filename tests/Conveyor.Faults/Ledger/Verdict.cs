using System.Text.Json;
using System.Text.Json.Serialization;
using Conveyor.FaultWorker;

namespace Conveyor.Faults.Ledger;

/// <summary>One handler run, from its start line to its end line (none when its process died or froze for good).</summary>
internal sealed record Run(string JobId, int Attempt, int Pid, long StartMs, long? EndMs, RunEvent? Outcome);

/// <summary>Where the acknowledged jobs are at the end, read straight from Redis.</summary>
/// <param name="Records">Ids with a stored record.</param>
/// <param name="Waiting">Ids in the ready list, the scheduled set or a consumer's claims, each with where it is.</param>
/// <param name="Dead">Ids in the dead set.</param>
internal sealed record QueueState(IReadOnlySet<string> Records, IReadOnlyDictionary<string, string> Waiting, IReadOnlySet<string> Dead);

/// <summary>The invariants of one scenario, printed as one JSON line. The first ten fields are the contract of docs/reliability.md.</summary>
internal sealed record Summary(
    string Scenario,
    int Enqueued,
    int Done,
    int Dead,
    int Lost,
    int DuplicateRuns,
    int DuplicateRunsExplained,
    int Stuck,
    int BeatsAcked,
    int BeatsLost,
    int RuntimesBackOnline,
    int Runs,
    int DuplicatesFromRetriedEnqueues,
    int EnqueuesRetried,
    int UnacknowledgedJobsRun,
    int Faults,
    int SessionCrashes,
    int TimerFailures,
    int Seed,
    double Seconds)
{
    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = JsonNumberHandling.Strict,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);
}

/// <summary>Turns the ledgers and the final state of Redis and PostgreSQL into a <see cref="Summary"/> and the findings behind each count.</summary>
internal static class Verdict
{
    /// <summary>
    /// How far around a fault a run may lie and still be explained by it: completions are sent in batches, and after
    /// a stall a consumer may claim once more before its first heartbeat lands.
    /// </summary>
    public static readonly TimeSpan Slack = TimeSpan.FromSeconds(5);

    public static IReadOnlyList<Run> PairRuns(IEnumerable<string> ledgerFiles)
    {
        var runs = new List<Run>();
        foreach (var file in ledgerFiles)
        {
            var open = new Dictionary<(string, int, int), Queue<int>>();
            foreach (var line in File.ReadLines(file))
            {
                if (RunLine.Parse(line) is not { } parsed)
                {
                    continue;
                }
                var key = (parsed.JobId, parsed.Attempt, parsed.Pid);
                if (parsed.Event == RunEvent.Started)
                {
                    if (!open.TryGetValue(key, out var started))
                    {
                        open[key] = started = new Queue<int>();
                    }
                    started.Enqueue(runs.Count);
                    runs.Add(new Run(parsed.JobId, parsed.Attempt, parsed.Pid, parsed.AtMs, null, null));
                }
                else if (open.TryGetValue(key, out var started) && started.TryDequeue(out var index))
                {
                    runs[index] = runs[index] with { EndMs = parsed.AtMs, Outcome = parsed.Event };
                }
            }
        }
        return runs;
    }

    public static (Summary Summary, IReadOnlyList<string> Findings) Judge(
        string scenario,
        int seed,
        Ledger ledger,
        IReadOnlyList<Run> runs,
        QueueState queue,
        IReadOnlyDictionary<Guid, DateTimeOffset?> lastSeen,
        int sessionCrashes,
        int timerFailures,
        double seconds)
    {
        var findings = new List<string>();
        var byJob = runs.GroupBy(r => r.JobId, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.OrderBy(r => r.StartMs).ToList(), StringComparer.Ordinal);

        int done = 0, dead = 0, lost = 0, stuck = 0;
        foreach (var plan in ledger.Acknowledged.Values)
        {
            var ran = byJob.GetValueOrDefault(plan.Id) ?? [];
            if (queue.Dead.Contains(plan.Id))
            {
                dead++;
            }
            else if (queue.Waiting.TryGetValue(plan.Id, out var where))
            {
                stuck++;
                Note(findings, "stuck", $"{plan.Id} is still {where} ({ran.Count} runs)");
            }
            else if (queue.Records.Contains(plan.Id))
            {
                lost++;
                Note(findings, "lost", $"{plan.Id} has a record but is in no list, set or claim: nothing will ever run it ({ran.Count} runs)");
            }
            else if (ran.Any(r => r.Outcome == RunEvent.Ended))
            {
                done++;
            }
            else
            {
                lost++;
                Note(findings, "lost", $"{plan.Id} is gone from Redis without a successful run ({ran.Count} runs)");
            }
        }

        int duplicates = 0, explained = 0, fromRetries = 0;
        var faults = ledger.Faults.Where(f => f.ExplainsDuplicates).ToList();
        foreach (var (id, ran) in byJob)
        {
            var unexplained = 0;
            for (var i = 0; i < ran.Count - 1; i++)
            {
                // A planned failure is followed by its retry; anything else that runs again is a duplicate.
                if (ran[i].Outcome == RunEvent.Failed)
                {
                    continue;
                }
                duplicates++;
                if (faults.FirstOrDefault(f => Explains(f, ran[i]) || ExplainsStale(f, ran[i], ran[i + 1])) is not null)
                {
                    explained++;
                }
                else
                {
                    unexplained++;
                }
            }
            // An enqueue answered 503 may have stored the job anyway; its retry (same id) stores it again once the
            // first copy finished. Each such retry accounts for one more run.
            var retried = Math.Min(unexplained, ledger.Ambiguous.GetValueOrDefault(id));
            fromRetries += retried;
            explained += retried;
            if (unexplained > retried)
            {
                Note(findings, "duplicate", $"{id} ran {ran.Count} times with no fault to explain it: " +
                    string.Join("; ", ran.Select(r => $"pid {r.Pid} attempt {r.Attempt} {r.StartMs}..{r.EndMs?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "?"} {r.Outcome?.ToString() ?? "unfinished"}")));
            }
        }

        var beatsLost = 0;
        foreach (var beat in ledger.Beats)
        {
            var seen = lastSeen.GetValueOrDefault(beat.Runtime);
            if (seen is null || seen < beat.SeenAt)
            {
                beatsLost++;
                Note(findings, "beat", $"runtime {beat.Runtime}: a beat answered {beat.Status} at {beat.SeenAt:O}, but last_seen_at is {seen?.ToString("O") ?? "null"}");
            }
        }

        var unacknowledgedRun = byJob.Keys.Count(id => !ledger.Acknowledged.ContainsKey(id));
        var summary = new Summary(
            scenario, ledger.Acknowledged.Count, done, dead, lost, duplicates, explained, stuck, ledger.Beats.Count, beatsLost,
            ledger.Beats.Count(b => b.FlippedBackOnline), runs.Count, fromRetries, ledger.Ambiguous.Count, unacknowledgedRun, ledger.Faults.Count, sessionCrashes, timerFailures,
            seed, Math.Round(seconds, 1));
        return (summary, findings);
    }

    /// <summary>The run lay within the fault (give or take <see cref="Slack"/>), on a process the fault hit.</summary>
    private static bool Explains(FaultWindow fault, Run run)
    {
        var slack = (long)Slack.TotalMilliseconds;
        return (fault.Pid is null || fault.Pid == run.Pid)
            && run.StartMs <= fault.EndMs + slack
            && (run.EndMs ?? long.MaxValue) >= fault.StartMs - slack;
    }

    /// <summary>
    /// The later run came from a claim its process held from before the fault that silenced it, and lost meanwhile: the
    /// custodian gave the job (one attempt more) to another process, which ran it first. That earlier run lies anywhere;
    /// the later one started in the silenced process within the fault (give or take <see cref="Slack"/>) with a lower
    /// attempt than the earlier run's.
    /// </summary>
    private static bool ExplainsStale(FaultWindow fault, Run earlier, Run later)
    {
        var slack = (long)Slack.TotalMilliseconds;
        return (fault.Pid is null || fault.Pid == later.Pid)
            && later.Attempt < earlier.Attempt
            && later.StartMs >= fault.StartMs - slack
            && later.StartMs <= fault.EndMs + slack;
    }

    /// <summary>Keeps the first few findings of each kind: enough to see the pattern, not thousands of lines.</summary>
    private static void Note(List<string> findings, string kind, string finding)
    {
        if (findings.Count(f => f.StartsWith(kind, StringComparison.Ordinal)) < 10)
        {
            findings.Add($"{kind}: {finding}");
        }
    }
}
