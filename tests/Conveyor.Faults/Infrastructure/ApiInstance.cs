using Conveyor.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Conveyor.Faults.Infrastructure;

/// <summary>
/// One instance of the self-host, in this test process on a free loopback port: the HTTP API the scenario
/// enqueues and beats through, and every timer (scheduler, custodian, heartbeat flush, stale sweeper) firing every
/// second. A scenario runs two of them, as a deployment with two instances does; neither has a job handler (its
/// own processor serves an empty queue), so the worker processes run every job. The scenario passes the schedules.
/// </summary>
internal sealed class ApiInstance : IAsyncDisposable
{
    public const string Key = "fault-suite-key";

    private readonly WebApplication _app;
    private readonly FileLoggerProvider _log;

    private ApiInstance(WebApplication app, FileLoggerProvider log, Uri address)
    {
        _app = app;
        _log = log;
        Client = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(30) };
        Client.DefaultRequestHeaders.Add("x-functions-key", Key);
    }

    public HttpClient Client { get; }

    public static async Task<ApiInstance> StartAsync(
        string name, string redis, string postgres, IReadOnlyDictionary<string, string> settings, string logPath)
    {
        var values = new Dictionary<string, string?>
        {
            ["Conveyor:Redis:ConnectionString"] = redis,
            ["Conveyor:Postgres:ConnectionString"] = postgres,
            ["Conveyor:Api:Keys:0"] = Key,
            ["Conveyor:Processor:Queues:0"] = "unused",
        };
        foreach (var (key, value) in settings)
        {
            values[key.Replace("__", ":", StringComparison.Ordinal)] = value;
        }
        var log = new FileLoggerProvider(logPath, name);
        var app = SelfHost.SelfHost.Build(
            ["--urls", "http://127.0.0.1:0"],
            configure: null,
            builder =>
            {
                builder.Configuration.AddInMemoryCollection(values);
                builder.Logging.ClearProviders();
                builder.Logging.AddProvider(log);
                builder.Logging.SetMinimumLevel(LogLevel.Information);
                builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
                builder.Logging.AddFilter("System", LogLevel.Warning);
            });
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.First();
        return new ApiInstance(app, log, new Uri(address));
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        using var stopping = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        try
        {
            await _app.StopAsync(stopping.Token);
        }
        catch (OperationCanceledException)
        {
        }
        await _app.DisposeAsync();
        _log.Dispose();
    }
}
