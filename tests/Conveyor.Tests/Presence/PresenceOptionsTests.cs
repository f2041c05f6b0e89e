using Conveyor.Hosting;
using Conveyor.Presence;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Conveyor.Tests.Presence;

public sealed class PresenceOptionsTests
{
    [Fact]
    public void The_defaults_keep_the_invariant()
    {
        var options = Resolve([]);

        Assert.Equal(PresenceMode.Batched, options.Mode);
        Assert.Equal(TimeSpan.FromSeconds(15), options.BeatInterval);
        Assert.Equal(TimeSpan.FromSeconds(10), options.FlushInterval);
        Assert.Equal(TimeSpan.FromSeconds(30), options.SweepInterval);
        Assert.Equal(TimeSpan.FromSeconds(150), options.StaleWindow);
        Assert.Equal(5000, options.FlushBatchSize);
        Assert.Equal(5000, options.SweepBatchSize);
        Assert.Null(options.WriteWindow);
        Assert.Equal(TimeSpan.FromSeconds(60), options.EffectiveWriteWindow); // 60 + 15 + 10 + 30 = 115 < 150
        Assert.Equal(TimeSpan.FromMilliseconds(2), options.FlipGroupWindow);
        Assert.Equal(500, options.FlipGroupSize);
        Assert.Equal((0.5, 10, 100.0), (options.MassOfflineShare, options.MassOfflineMinimum, options.MassOfflineRate));
        Assert.Equal(TimeSpan.FromSeconds(120), options.IntakeGap); // 150 - 2 x 15
    }

    [Fact]
    public void A_write_window_that_breaks_the_invariant_is_rejected_naming_it()
    {
        Assert.Equal(TimeSpan.FromSeconds(94), Resolve(new() { ["Conveyor:Presence:WriteWindow"] = "00:01:34" }).EffectiveWriteWindow);

        var error = Assert.Throws<OptionsValidationException>(() => Resolve(new() { ["Conveyor:Presence:WriteWindow"] = "00:01:35" }));

        Assert.Contains("Conveyor:Presence:WriteWindow (00:01:35) + BeatInterval", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_stale_window_without_room_for_the_default_write_window_writes_every_beat()
    {
        var options = Resolve(new() { ["Conveyor:Presence:StaleWindow"] = "00:01:30" }); // 60 + 55 >= 90

        Assert.Equal(TimeSpan.Zero, options.EffectiveWriteWindow);
        Assert.Equal(TimeSpan.FromSeconds(30), Resolve(new()
        {
            ["Conveyor:Presence:StaleWindow"] = "00:01:30",
            ["Conveyor:Presence:WriteWindow"] = "00:00:30",
        }).EffectiveWriteWindow);
    }

    [Fact]
    public void A_stale_window_that_takes_two_late_flushes_for_an_interrupted_beat_intake_is_rejected()
    {
        // Flushes every 5 s; runtimes beat every 25 s. StaleWindow - 2 x 25 s must be more than 2 x 5 s.
        var settings = new Dictionary<string, string?>
        {
            ["ConveyorHeartbeatFlushSchedule"] = "*/5 * * * * *",
            ["ConveyorStaleSweeperSchedule"] = "*/5 * * * * *",
            ["Conveyor:Presence:BeatInterval"] = "00:00:25",
            ["Conveyor:Presence:FlushInterval"] = "00:00:05",
            ["Conveyor:Presence:SweepInterval"] = "00:00:05",
            ["Conveyor:Presence:StaleWindow"] = "00:01:00",
        };

        var error = Assert.Throws<OptionsValidationException>(() => Resolve(settings));
        Assert.Contains("2 x FlushInterval (00:00:05)", error.Message, StringComparison.Ordinal);

        settings["Conveyor:Presence:StaleWindow"] = "00:01:01";
        Assert.Equal(TimeSpan.FromSeconds(11), Resolve(settings).IntakeGap);
    }

    [Fact]
    public void A_stale_sweeper_running_without_the_heartbeat_flush_is_rejected()
    {
        var error = Assert.Throws<OptionsValidationException>(() => Resolve(new() { ["AzureWebJobs.HeartbeatFlush.Disabled"] = "true" }));
        Assert.Contains("AzureWebJobs.HeartbeatFlush.Disabled", error.Message, StringComparison.Ordinal);

        Assert.Equal(PresenceMode.Batched, Resolve(new()
        {
            ["AzureWebJobs.HeartbeatFlush.Disabled"] = "true",
            ["AzureWebJobs.StaleSweeper.Disabled"] = "true",
        }).Mode);
    }

    [Theory]
    [InlineData("00:00:55")] // 15 + 10 + 30 = 55: equal is not enough
    [InlineData("00:00:30")]
    public void A_stale_window_that_breaks_the_invariant_is_rejected_naming_the_settings(string window)
    {
        var error = Assert.Throws<OptionsValidationException>(() => Resolve(new() { ["Conveyor:Presence:StaleWindow"] = window }));

        Assert.Contains("Conveyor:Presence:StaleWindow", error.Message, StringComparison.Ordinal);
        Assert.Contains("BeatInterval", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_longer_interval_that_breaks_the_invariant_is_rejected()
    {
        Assert.Throws<OptionsValidationException>(() => Resolve(new() { ["Conveyor:Presence:SweepInterval"] = "00:02:10" }));
        Assert.Equal(TimeSpan.FromSeconds(56), Resolve(new() { ["Conveyor:Presence:StaleWindow"] = "00:00:56" }).StaleWindow);
    }

    [Theory]
    [InlineData("ConveyorHeartbeatFlushSchedule", "*/30 * * * * *", "FlushInterval")]
    [InlineData("ConveyorStaleSweeperSchedule", "0 */5 * * * *", "SweepInterval")]
    [InlineData("ConveyorStaleSweeperSchedule", "0,10,20 * * * * *", "SweepInterval")] // a 40 s gap each minute
    public void A_timer_schedule_slower_than_its_interval_is_rejected_naming_both(string setting, string schedule, string option)
    {
        var error = Assert.Throws<OptionsValidationException>(() => Resolve(new() { [setting] = schedule }));

        Assert.Contains(setting, error.Message, StringComparison.Ordinal);
        Assert.Contains("Conveyor:Presence:" + option, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_slower_schedule_is_accepted_when_its_interval_says_so_and_the_window_still_holds()
    {
        var options = Resolve(new()
        {
            ["ConveyorHeartbeatFlushSchedule"] = "*/30 * * * * *",
            ["Conveyor:Presence:FlushInterval"] = "00:00:30",
        });

        Assert.Equal(TimeSpan.FromSeconds(30), options.FlushInterval);
        Assert.Throws<OptionsValidationException>(() => Resolve(new()
        {
            ["ConveyorStaleSweeperSchedule"] = "0 */3 * * * *",
            ["Conveyor:Presence:SweepInterval"] = "00:03:00", // 15 s + 10 s + 3 min > 150 s
        }));
    }

    [Fact]
    public void A_disabled_timer_is_not_held_to_its_interval()
    {
        var settings = new Dictionary<string, string?> { ["ConveyorStaleSweeperSchedule"] = "0 0 0 1 1 *" };
        Assert.Throws<OptionsValidationException>(() => Resolve(settings));

        settings["AzureWebJobs.StaleSweeper.Disabled"] = "true";

        Assert.Equal(TimeSpan.FromSeconds(30), Resolve(settings).SweepInterval);
    }

    [Theory]
    [InlineData("Conveyor:Presence:FlushBatchSize", "0")]
    [InlineData("Conveyor:Presence:SweepBatchSize", "50001")]
    [InlineData("Conveyor:Presence:BeatInterval", "00:00:00")]
    [InlineData("Conveyor:Presence:WriteWindow", "01:00:01")]
    [InlineData("Conveyor:Presence:FlipGroupWindow", "00:00:01.001")]
    [InlineData("Conveyor:Presence:FlipGroupSize", "0")]
    [InlineData("Conveyor:Presence:MassOfflineShare", "0")]
    [InlineData("Conveyor:Presence:MassOfflineMinimum", "0")]
    [InlineData("Conveyor:Presence:MassOfflineRate", "-1")]
    public void Out_of_bounds_values_are_rejected(string key, string value)
    {
        var error = Assert.Throws<OptionsValidationException>(() => Resolve(new() { [key] = value }));
        Assert.Contains(key.Split(':')[^1], error.Message, StringComparison.Ordinal);
    }

    private static PresenceOptions Resolve(Dictionary<string, string?> settings)
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddConveyor(new ConfigurationBuilder().AddInMemoryCollection(settings).Build());
        using var provider = services.BuildServiceProvider();
        return provider.GetRequiredService<IOptions<PresenceOptions>>().Value;
    }
}
