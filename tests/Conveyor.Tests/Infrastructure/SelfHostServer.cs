using System.Net.Http.Headers;
using Conveyor.Hosting;
using Conveyor.SelfHost;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Conveyor.Tests.Infrastructure;

/// <summary>The self-host on a free loopback port, against the test Redis (and PostgreSQL), with a <see cref="Probe"/> handler.</summary>
public sealed class SelfHostServer : IAsyncDisposable
{
    public const string Key = "test-key-123";


    private readonly TestDatabase _database;

    private SelfHostServer(WebApplication app, Probe probe, Uri address, TestDatabase database)
    {
        App = app;
        Probe = probe;
        _database = database;
        Client = new HttpClient { BaseAddress = address };
        Client.DefaultRequestHeaders.Add("x-functions-key", Key);
        Anonymous = new HttpClient { BaseAddress = address };
    }

    public WebApplication App { get; }

    /// <summary>This server's own PostgreSQL database.</summary>
    public TestDatabase Database => _database;
    public Probe Probe { get; }

    /// <summary>Sends the API key.</summary>
    public HttpClient Client { get; }

    /// <summary>Sends no key.</summary>
    public HttpClient Anonymous { get; }

    /// <summary>
    /// Starts a server on its own database. The heartbeat flush and stale sweep are off unless
    /// <paramref name="presenceTimers"/>: the presence keys in Redis are shared by the whole test run, so
    /// only tests in the presence collection may run them. <paramref name="handlers"/> registers the job handlers;
    /// by default job type <c>probe</c> runs the in-process <see cref="Probe"/>.
    /// </summary>
    public static async Task<SelfHostServer> StartAsync(
        string queue, Dictionary<string, string?>? settings = null, bool presenceTimers = false, Action<ConveyorBuilder>? handlers = null)
    {
        var redis = await TestRedis.ConnectionStringAsync();
        var database = await TestPostgres.CreateDatabaseAsync();
        var values = EndToEndSettings.For(queue, redis, database.ConnectionString, presenceTimers);
        foreach (var (key, value) in settings ?? [])
        {
            values[key] = value;
        }
        var probe = new Probe();
        var app = Conveyor.SelfHost.SelfHost.Build(
            ["--urls", "http://127.0.0.1:0", "--environment", "Development"],
            handlers ?? (conveyor => conveyor.AddJobHandler<ProbeHandler>("probe")),
            builder =>
            {
                builder.Configuration.AddInMemoryCollection(values);
                builder.Services.AddSingleton(probe);
                builder.Logging.SetMinimumLevel(LogLevel.Warning);
            });
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.First();
        return new SelfHostServer(app, probe, new Uri(address), database);
    }

    /// <summary>The API's route table as <c>METHOD /api/route</c>, sorted.</summary>
    public IReadOnlyList<string> Routes() =>
        [.. App.Services.GetRequiredService<EndpointDataSource>().Endpoints
            .OfType<RouteEndpoint>()
            .SelectMany(e => e.Metadata.GetMetadata<IHttpMethodMetadata>()!.HttpMethods.Select(m => $"{m} /{e.RoutePattern.RawText!.Trim('/')}"))
            .Order()];

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        Anonymous.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
        await _database.DisposeAsync();
    }

    public static StringContent Json(string json) => new(json, new MediaTypeHeaderValue("application/json"));
}

/// <summary>The settings every end-to-end host starts with (the self-host and the Functions worker), in configuration form.</summary>
public static class EndToEndSettings
{
    /// <summary>
    /// Short intervals, every timer each second, a processor on <paramref name="queue"/>; the heartbeat flush and the
    /// stale sweep only with <paramref name="presenceTimers"/> (they touch the presence keys the whole run shares).
    /// </summary>
    public static Dictionary<string, string?> For(string queue, string redis, string postgres, bool presenceTimers) => new()
    {
        ["Conveyor:Redis:ConnectionString"] = redis,
        ["Conveyor:Postgres:ConnectionString"] = postgres,
        ["Conveyor:Api:Keys:0"] = SelfHostServer.Key,
        ["Conveyor:Processor:Queues:0"] = queue,
        ["Conveyor:Processor:IdlePollInterval"] = "00:00:00.05",
        ["Conveyor:Processor:HeartbeatInterval"] = "00:00:00.5",
        ["Conveyor:Processor:ShutdownGrace"] = "00:00:02",
        ["Conveyor:Processor:IdleTimeout"] = "00:00:01", // bounded sessions (the Functions timer's) end after 1 s idle
        ["Conveyor:Queue:RetryBaseDelay"] = "00:00:00.001",
        ["Conveyor:Queue:MaxBackoff"] = "00:00:01",
        [Schedules.Scheduler] = "* * * * * *",
        [Schedules.Custodian] = "* * * * * *",
        [Schedules.HeartbeatFlush] = "* * * * * *",
        [Schedules.StaleSweeper] = "* * * * * *",
        [Schedules.Processor] = "* * * * * *",
        ["AzureWebJobs.HeartbeatFlush.Disabled"] = presenceTimers ? "false" : "true",
        ["AzureWebJobs.StaleSweeper.Disabled"] = presenceTimers ? "false" : "true",
    };
}
