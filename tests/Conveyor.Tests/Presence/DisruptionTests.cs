using System.Diagnostics.Metrics;
using Conveyor.Api;
using Conveyor.Presence;
using Conveyor.Storage;
using Conveyor.Tests.Infrastructure;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Conveyor.Tests.Presence;

/// <summary>
/// Disruption mode on the production defaults (a 60 s write window, a 150 s stale window): time moves with
/// <see cref="PresenceClock"/> in 10 s steps, each followed by a heartbeat flush and the beats of the runtimes that are
/// alive, as the timers and the fleet would do it.
/// </summary>
[Collection(PresenceCollection.Name)]
public sealed class DisruptionTests(PresenceDatabase fixture) : IClassFixture<PresenceDatabase>
{
    private static readonly TimeSpan Step = TimeSpan.FromSeconds(10);

    private static Dictionary<string, string?> Production(params (string Key, string Value)[] more)
    {
        var settings = new Dictionary<string, string?> { ["Conveyor:Presence:WriteWindow"] = "00:01:00" };
        foreach (var (key, value) in more)
        {
            settings["Conveyor:Presence:" + key] = value;
        }
        return settings;
    }

    [Fact]
    public async Task After_the_app_was_down_longer_than_the_stale_window_no_runtime_goes_offline_before_it_could_beat_again()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, Production());
        var fleet = await host.OnlineRuntimesAsync(20);
        await host.RunForAsync(TimeSpan.FromMinutes(2), Step, fleet);
        Assert.Equal(SweepDisruption.None, (await host.Sweeper.RunOnceAsync(CancellationToken.None)).Disruption);
        using var gauge = new DisruptionGauge();

        // The app is down for five minutes: no flush runs, no beat is taken. It restarts, and its timers run before any
        // runtime got a beat in.
        await host.PassAsync(TimeSpan.FromMinutes(5));
        await host.Flusher.RunOnceAsync(CancellationToken.None);
        var restart = await host.Sweeper.RunOnceAsync(CancellationToken.None);

        Assert.Equal(SweepDisruption.IntakeInterrupted, restart.Disruption);
        Assert.Empty(restart.Offline);
        Assert.Equal((20L, 20L), (restart.Silent, restart.HeldBack));
        Assert.Equal(20L, await OnlineCountAsync(host));
        Assert.Equal((1, "intakeInterrupted"), gauge.Last);
        var health = await HealthAsync(host);
        Assert.Equal((SweepDisruption.IntakeInterrupted, 20L, 20L), (health.Disruption, health.SilentRuntimes, health.HeldBack));
        Assert.NotNull(health.BeatIntakeSince);

        // The fleet beats again, all but one runtime that died during the outage. It goes offline once the intake has
        // been unbroken for a whole stale window (150 s: the 15th step), and no other runtime goes offline meanwhile.
        var died = fleet[0];
        var marked = 0;
        for (var step = 1; step <= 16; step++)
        {
            await host.RunForAsync(Step, Step, fleet[1..]);
            var sweep = await host.Sweeper.RunOnceAsync(CancellationToken.None);
            Assert.True(sweep.Offline.All(id => id == died.Id), $"step {step}: a beating runtime went offline");
            if (sweep.Offline.Count > 0)
            {
                marked = step;
            }
            Assert.Equal(step < 15 ? SweepDisruption.IntakeInterrupted : SweepDisruption.None, sweep.Disruption);
        }
        Assert.Equal(15, marked);
        Assert.Equal("offline", await host.StatusAsync(died.Id));
        Assert.Equal(19L, await OnlineCountAsync(host));
        Assert.Equal((0, "none"), gauge.Last);
        Assert.Equal(SweepDisruption.None, (await HealthAsync(host)).Disruption);
    }

    [Fact]
    public async Task One_runtime_falling_silent_in_a_healthy_fleet_goes_offline_on_time_though_postgres_trails_by_the_write_window()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, Production());
        var fleet = await host.OnlineRuntimesAsync(20);
        await host.RunForAsync(TimeSpan.FromMinutes(3), Step, fleet);
        // The runtime whose row PostgreSQL wrote longest ago falls silent: after its last beat, PostgreSQL alone would
        // take it for silent that much too early.
        var lag = await LagsAsync(host);
        var silent = fleet.MaxBy(r => lag[r.Id])!;
        Assert.True(lag[silent.Id] > Step, $"the longest PostgreSQL lag is only {lag[silent.Id]}");
        var beating = fleet.Where(r => r != silent).ToList();

        var marked = 0;
        for (var step = 1; step <= 16; step++)
        {
            await host.RunForAsync(Step, Step, beating);
            var sweep = await host.Sweeper.RunOnceAsync(CancellationToken.None);
            Assert.Equal(SweepDisruption.None, sweep.Disruption);
            Assert.True(sweep.Offline.All(id => id == silent.Id), $"step {step}: a beating runtime went offline");
            if (sweep.Offline.Count > 0)
            {
                marked = step;
            }
        }

        // Silent for 150 s (plus the few milliseconds the steps really took) at the 15th step.
        Assert.Equal(15, marked);
        Assert.Equal("offline", await host.StatusAsync(silent.Id));
        Assert.Equal(19L, await OnlineCountAsync(host));
    }

    [Fact]
    public async Task A_real_mass_failure_goes_offline_at_the_configured_rate_longest_silent_first()
    {
        // 0.1 runtimes a second: 3 per 30 s sweep interval.
        await using var host = await PresenceHost.StartAsync(fixture.Database, Production(("MassOfflineRate", "0.1")));
        var fleet = await host.OnlineRuntimesAsync(40);
        await host.RunForAsync(TimeSpan.FromMinutes(2), Step, fleet);
        // Fifteen runtimes die, a minute later fifteen more; ten live on. Conveyor's intake works all along.
        var (first, second, alive) = (fleet[..15], fleet[15..30], fleet[30..]);
        await host.RunForAsync(TimeSpan.FromMinutes(1), Step, [.. second, .. alive]);
        await host.RunForAsync(TimeSpan.FromMinutes(3), Step, alive);

        var sweeps = new List<SweepResult>();
        do
        {
            if (sweeps.Count > 0)
            {
                await host.RunForAsync(TimeSpan.FromSeconds(30), Step, alive);
            }
            sweeps.Add(await host.Sweeper.RunOnceAsync(CancellationToken.None));
        }
        while (sweeps[^1].Disruption != SweepDisruption.None && sweeps.Count < 20);

        // While more than half of the online runtimes were silent: 3 a sweep, the first fifteen to die first. Then the
        // remaining silent ones are no longer a mass (9 of 19), and go at once.
        Assert.Equal(
            [.. Enumerable.Repeat((SweepDisruption.MassSilence, 3), 7), (SweepDisruption.None, 9)],
            sweeps.Select(s => (s.Disruption, s.Offline.Count)));
        Assert.Equal(first.Select(r => r.Id).Order(), sweeps.Take(5).SelectMany(s => s.Offline).Order());
        Assert.Equal((30L, 27L), (sweeps[0].Silent, sweeps[0].HeldBack));
        Assert.All(second, r => Assert.Contains(r.Id, sweeps.Skip(5).SelectMany(s => s.Offline)));
        Assert.Equal(10L, await OnlineCountAsync(host));
        Assert.All(alive, r => Assert.DoesNotContain(r.Id, sweeps.SelectMany(s => s.Offline)));
    }

    [Fact]
    public async Task A_whole_fleet_falling_silent_at_once_is_held_online_until_some_of_it_beats_again()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database, Production());
        var fleet = await host.OnlineRuntimesAsync(12);
        await host.RunForAsync(TimeSpan.FromMinutes(2), Step, fleet);

        // Conveyor's flushes run on, but no runtime gets through (a network partition, say).
        await host.RunForAsync(TimeSpan.FromMinutes(3), Step, []);
        var partitioned = await host.Sweeper.RunOnceAsync(CancellationToken.None);

        Assert.Equal(SweepDisruption.FleetSilent, partitioned.Disruption);
        Assert.Equal((12L, 12L), (partitioned.Silent, partitioned.HeldBack));
        Assert.Empty(partitioned.Offline);
        Assert.Equal(12L, await OnlineCountAsync(host));

        // One runtime gets through: the rest are a mass silence (11 of 12), marked at the default rate (100 a second, up
        // to a sweep interval's worth at once): all of them.
        await host.RunForAsync(Step, Step, fleet[..1]);
        var healed = await host.Sweeper.RunOnceAsync(CancellationToken.None);

        Assert.Equal(SweepDisruption.MassSilence, healed.Disruption);
        Assert.Equal(fleet[1..].Select(r => r.Id).Order(), healed.Offline.Order());
        Assert.Equal(1L, await OnlineCountAsync(host));
    }

    private static Task<long> OnlineCountAsync(PresenceHost host) =>
        host.Database.ScalarAsync<long>("SELECT count(*) FROM runtimes WHERE status = 'online'");

    /// <summary>How far each runtime's last_seen_at in PostgreSQL trails its latest beat in Redis.</summary>
    private static async Task<Dictionary<Guid, TimeSpan>> LagsAsync(PresenceHost host)
    {
        var lags = new Dictionary<Guid, TimeSpan>();
        await using var command = host.Database.DataSource.CreateCommand("SELECT id, last_seen_at FROM runtimes");
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            var id = reader.GetGuid(0);
            var seen = (long)await host.Db.HashGetAsync(PresenceKeys.Seen, id.ToString());
            lags[id] = RedisTime.ToUtc(seen) - reader.GetDateTime(1);
        }
        return lags;
    }

    private static async Task<PresenceHealth> HealthAsync(PresenceHost host)
    {
        var result = await HealthApi.GetHealthAsync(
            host.Services.GetRequiredService<RedisConnection>(), host.Services.GetRequiredService<NpgsqlDataSource>(), CancellationToken.None);
        return Assert.IsType<Ok<HealthResponse>>(result.Result).Value!.Presence!;
    }

    /// <summary>The latest value the sweeper recorded on the <c>conveyor.runtimes.disruption</c> gauge, with its tag.</summary>
    private sealed class DisruptionGauge : IDisposable
    {
        private readonly MeterListener _listener = new();
        private (int Value, string Mode)? _last;

        public DisruptionGauge()
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == ConveyorTelemetry.Name && instrument.Name == "conveyor.runtimes.disruption")
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<int>((_, value, tags, _) =>
            {
                foreach (var tag in tags)
                {
                    if (tag.Key == "conveyor.disruption")
                    {
                        _last = (value, (string)tag.Value!);
                    }
                }
            });
            _listener.Start();
        }

        public (int Value, string Mode)? Last => _last;

        public void Dispose() => _listener.Dispose();
    }
}
