using System.Diagnostics;
using Conveyor.Functions.Timers;
using Conveyor.Presence;
using Conveyor.Tests.Infrastructure;
using Microsoft.Azure.Functions.Worker;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Tests.Functions;

/// <summary>
/// The HeartbeatFlush and StaleSweeper timer functions: one invocation runs their service once, and it does
/// its work. They touch the shared presence keys, so they run in the presence collection.
/// </summary>
[Collection(PresenceCollection.Name)]
public sealed class PresenceTimerFunctionTests(PresenceDatabase fixture) : IClassFixture<PresenceDatabase>
{
    [Fact]
    public async Task One_HeartbeatFlush_invocation_runs_one_flush_that_writes_the_buffered_beat()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        var runtime = await host.OnlineRuntimeAsync();
        await host.Database.ExecuteAsync("UPDATE runtimes SET last_seen_at = now() - interval '1 minute' WHERE id = $1", runtime.Id);
        var before = await host.LastSeenAtAsync(runtime.Id);
        Assert.Equal(BeatOutcome.Buffered, (await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token)).Outcome);

        var runs = await InvokeAsync<HeartbeatFlushFunction>(host, "conveyor.heartbeat_flush.run");

        Assert.Equal(1, runs);
        Assert.True(await host.LastSeenAtAsync(runtime.Id) > before);
        Assert.Null(await host.BufferedAsync(runtime.Id));
    }

    [Fact]
    public async Task One_StaleSweeper_invocation_runs_one_sweep_that_marks_the_silent_runtime_offline()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        var runtime = await host.OnlineRuntimeAsync();
        await host.Database.ExecuteAsync("UPDATE runtimes SET last_seen_at = now() - interval '1 hour' WHERE id = $1", runtime.Id);

        var runs = await InvokeAsync<StaleSweeperFunction>(host, "conveyor.stale_sweeper.run");

        Assert.Equal(1, runs);
        Assert.Equal("offline", await host.StatusAsync(runtime.Id));
    }

    /// <summary>Calls the function's Run once and counts the service runs (activities) of this invocation.</summary>
    private static async Task<int> InvokeAsync<TFunction>(PresenceHost host, string activityName)
    {
        using var recorder = new ActivityRecorder();
        var function = ActivatorUtilities.CreateInstance<TFunction>(host.Services);
        using var marker = new Activity("timer test " + Guid.NewGuid()).Start();

        await (Task)typeof(TFunction).GetMethod("Run")!.Invoke(function, [new TimerInfo(), CancellationToken.None])!;

        return recorder.Count(activityName, marker.TraceId);
    }
}
