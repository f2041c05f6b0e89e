using System.Collections.Concurrent;
using Conveyor.Queue;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.Queue;

public sealed class SessionTests
{
    [Fact]
    public async Task A_graceful_end_finishes_running_jobs_and_returns_unstarted_ones_to_the_front_in_order()
    {
        await using var host = await EngineHost.StartAsync(new()
        {
            ["Conveyor:Processor:Concurrency"] = "2",
            ["Conveyor:Processor:Prefetch"] = "6",
        });
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        host.Probe.Behavior = (_, _) => release.Task;
        var queue = TestRedis.UniqueQueue();
        var ids = (await host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 20).Select(i => new JobRequest("probe", $"{i}"))]))
            .Select(r => r.Id).ToList();

        var session = RunningSession.Start(host, queue);
        await Wait.UntilAsync(async () => host.Probe.Running == 2 && (await host.Admin.GetStatsAsync(queue)).Running > 2, "2 run and more wait claimed");
        var held = (await host.Admin.GetStatsAsync(queue)).Running;
        Assert.InRange(held, 3, 8); // never more than concurrency + prefetch
        var stopping = session.StopAsync();
        await Task.Delay(100); // the session is now past claiming, waiting for its two handlers
        release.SetResult();
        var result = await stopping;

        Assert.Equal(held, result.Claimed);
        Assert.Equal(2, result.Acked);
        Assert.Equal(held - 2, result.Returned);
        Assert.True(result.Deregistered);
        var started = host.Probe.Runs.Select(r => r.Id).ToList();
        var ready = (await host.Db.ListRangeAsync($"conveyor:{{{queue}}}:ready")).Select(v => v.ToString()).ToList();
        // Nothing lost, nothing twice: what ran plus what is ready is every job, in the original order.
        Assert.Equal(ids.Take(2).Order(), started.Order());
        Assert.Equal(ids.Skip(2), ready);
        var stats = await host.Admin.GetStatsAsync(queue);
        Assert.Equal(new QueueStats(queue, 18, 0, 0, 0, 0), stats);
        foreach (var id in ready)
        {
            Assert.Equal(0, (await host.Admin.GetJobAsync(queue, id))!.Attempts); // unstarted: no attempt counted
        }

        // A next session takes over exactly where this one stopped.
        host.Probe.Behavior = (_, _) => Task.CompletedTask;
        await using var next = RunningSession.Start(host, queue);
        await Wait.UntilAsync(async () => (await host.Admin.GetStatsAsync(queue)) is { Ready: 0, Running: 0 }, "the queue drains");
        await Wait.UntilAsync(() => host.Probe.Runs.Count == 20, "every job ran");
        Assert.Equal(ids.Order(), host.Probe.Runs.Select(r => r.Id).Order());
    }

    [Fact]
    public async Task A_session_of_bounded_length_ends_by_itself()
    {
        await using var host = await EngineHost.StartAsync();
        var queue = TestRedis.UniqueQueue();
        var result = await host.Processor.RunSessionAsync(queue, TimeSpan.FromMilliseconds(300), CancellationToken.None);
        Assert.True(result.Deregistered);
        Assert.Equal(0, (await host.Admin.GetStatsAsync(queue)).Consumers);
    }

    [Fact]
    public async Task Handlers_never_run_more_at_once_than_the_concurrency_bound()
    {
        await using var host = await EngineHost.StartAsync(new()
        {
            ["Conveyor:Processor:Concurrency"] = "5",
            ["Conveyor:Processor:Prefetch"] = "20",
        });
        host.Probe.Behavior = (_, ct) => Task.Delay(5, ct);
        var queue = TestRedis.UniqueQueue();
        await host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 200).Select(i => new JobRequest("probe", $"{i}"))]);

        await using var session = RunningSession.Start(host, queue);
        await Wait.UntilAsync(() => host.Probe.Runs.Count == 200, "all 200 ran");

        Assert.Equal(5, host.Probe.MaxRunning);
    }

    [Fact]
    public async Task Ten_thousand_jobs_through_four_processors_run_at_least_once_and_are_acked_exactly_once()
    {
        await using var host = await EngineHost.StartAsync(new() { ["Conveyor:Processor:Prefetch"] = "50" });
        var queue = TestRedis.UniqueQueue();
        var ids = new List<string>();
        for (var batch = 0; batch < 10; batch++)
        {
            var results = await host.Producer.EnqueueBatchAsync(queue, [.. Enumerable.Range(0, 1000).Select(i => new JobRequest("probe", $"{i}"))]);
            ids.AddRange(results.Select(r => r.Id));
        }
        var sessions = Enumerable.Range(0, 4).Select(_ => RunningSession.Start(host, queue)).ToList();
        await Wait.UntilAsync(async () => (await host.Admin.GetStatsAsync(queue)) is { Ready: 0, Running: 0 }, "the queue drains", seconds: 60);
        var results2 = new List<SessionResult>();
        foreach (var session in sessions)
        {
            results2.Add(await session.StopAsync());
            await session.DisposeAsync();
        }

        var handled = host.Probe.Runs.GroupBy(r => r.Id).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(ids.ToHashSet(), handled.Keys.ToHashSet());
        Assert.Equal(10_000, results2.Sum(r => r.Acked));
        Assert.Equal(0, results2.Sum(r => r.LostClaims));
        Assert.All(results2, r => Assert.True(r.Acked > 0, "every processor did part of the work"));
        Assert.Equal(0, await host.Db.HashLengthAsync($"conveyor:{{{queue}}}:jobs"));
    }
}
