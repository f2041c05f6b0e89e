using Conveyor.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Conveyor.Tests.Storage;

public sealed class RedisOptionsValidationTests
{
    public static TheoryData<Dictionary<string, string?>, string> BadSettings => new()
    {
        { new() { ["Conveyor:Redis:UseEntraId"] = "true" }, "Conveyor:Redis:HostName is not set" },
        { new() { ["Conveyor:Redis:HostName"] = "name.westeurope.redis.azure.net:10000" }, "UseEntraId is not true" },
        { new() { ["Conveyor:Redis:UseEntraId"] = "true", ["Conveyor:Redis:HostName"] = "name.westeurope.redis.azure.net" }, "must be host:port" },
        {
            new() { ["Conveyor:Redis:UseEntraId"] = "true", ["Conveyor:Redis:HostName"] = "name.westeurope.redis.azure.net:10000", ["Conveyor:Redis:PrincipalId"] = "my-app" },
            "must be the identity's object id"
        },
    };

    [Theory]
    [MemberData(nameof(BadSettings))]
    public async Task Inconsistent_Entra_settings_stop_the_host_at_start_naming_the_setting(Dictionary<string, string?> settings, string expected)
    {
        using var host = BuildHost(settings);

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Defaults_are_the_local_connection_string_without_Entra()
    {
        using var host = BuildHost([]);

        var options = host.Services.GetRequiredService<IOptions<Conveyor.Storage.RedisOptions>>().Value;

        Assert.Equal("localhost:6379", options.ConnectionString);
        Assert.False(options.UseEntraId);
        Assert.Null(options.HostName);
    }

    [Fact]
    public void A_complete_Entra_configuration_is_valid()
    {
        using var host = BuildHost(new()
        {
            ["Conveyor:Redis:UseEntraId"] = "true",
            ["Conveyor:Redis:HostName"] = "name.westeurope.redis.azure.net:10000",
            ["Conveyor:Redis:PrincipalId"] = Guid.NewGuid().ToString(),
        });

        Assert.True(host.Services.GetRequiredService<IOptions<Conveyor.Storage.RedisOptions>>().Value.UseEntraId);
    }

    private static IHost BuildHost(Dictionary<string, string?> settings)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Services.AddConveyor(builder.Configuration);
        return builder.Build();
    }
}
