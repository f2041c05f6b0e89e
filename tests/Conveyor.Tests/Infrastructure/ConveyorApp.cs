using Conveyor.Tests.FunctionsHost;
using Conveyor.Tests.Probe;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Trace;

namespace Conveyor.Tests.Infrastructure;

/// <summary>
/// Conveyor's HTTP API as an xunit fixture, on one of its two hosts: <see cref="SelfHostApp"/> (the ASP.NET Core
/// self-host, in process) or <see cref="FunctionsWorkerApp"/> (the real Functions worker from functions/'s build
/// output, behind <see cref="FunctionsWorkerHost"/>). An end-to-end suite is an abstract class that takes a
/// <see cref="ConveyorApp"/> and talks to it through <see cref="Client"/> only; each host gets a one-line subclass:
/// <code>
/// public sealed class JobsApiOnSelfHost(SelfHostApp app) : JobsApiTests(app), IClassFixture&lt;SelfHostApp&gt;;
/// public sealed class JobsApiOnFunctions(FunctionsWorkerApp app) : JobsApiTests(app), IClassFixture&lt;FunctionsWorkerApp&gt;;
/// </code>
/// Both hosts start from <see cref="EndToEndSettings"/>: a processor serves <see cref="Queue"/>, the Scheduler runs
/// every second, job type <c>probe</c> runs <see cref="ProbeJobHandler"/> (its runs are read back with
/// <see cref="ProbeRunsAsync"/>), and the app has its own PostgreSQL database. One instance serves a whole test class,
/// whose tests run one at a time: a test that must see an untouched queue uses a fresh one (<see cref="TestRedis.UniqueQueue"/>).
/// </summary>
public abstract class ConveyorApp : IAsyncLifetime, IAsyncDisposable
{
    /// <summary>The queue the app's processor serves.</summary>
    public string Queue { get; } = TestRedis.UniqueQueue("e2e");

    /// <summary>Sends requests to the app; it carries the self-host's API key (the Functions worker never checks keys: its host does).</summary>
    public abstract HttpClient Client { get; }

    /// <summary>The app's own PostgreSQL database.</summary>
    public abstract TestDatabase Database { get; }

    /// <summary>Settings a fixture adds to or changes in <see cref="EndToEndSettings"/>; configuration form (<c>Conveyor:Presence:StaleWindow</c>).</summary>
    public IReadOnlyDictionary<string, string?> Settings { get; init; } = new Dictionary<string, string?>();

    /// <summary>Whether the app runs the heartbeat flush and the stale sweep (only for fixtures of tests in the presence collection).</summary>
    protected virtual bool PresenceTimers => false;

    /// <summary>Every run of probe job <paramref name="id"/> on <paramref name="queue"/> (default: <see cref="Queue"/>), whichever process ran it.</summary>
    public async Task<IReadOnlyList<ProbeRun>> ProbeRunsAsync(string id, string? queue = null) =>
        await ProbeJobHandler.RunsAsync((await TestRedis.GetAsync()).GetDatabase(), queue ?? Queue, id);

    public static StringContent Json(string json) => SelfHostServer.Json(json);

    /// <summary>The routes the app serves, as <c>METHOD /api/route</c>, sorted.</summary>
    public abstract IReadOnlyList<string> Routes();

    /// <summary>Starts <paramref name="app"/> for one test (a test that needs settings or servers of its own), to be disposed with <c>await using</c>.</summary>
    public static async Task<T> StartAsync<T>(T app)
        where T : ConveyorApp
    {
        ArgumentNullException.ThrowIfNull(app);
        await app.InitializeAsync();
        return app;
    }

    public abstract Task InitializeAsync();

    /// <summary>Stops the app; a second call does nothing.</summary>
    public abstract Task DisposeAsync();

    async ValueTask IAsyncDisposable.DisposeAsync()
    {
        await DisposeAsync();
        GC.SuppressFinalize(this);
    }

    /// <summary>What this app changes in <see cref="EndToEndSettings"/>.</summary>
    protected Dictionary<string, string?> Overrides()
    {
        // No custodian: no end-to-end test needs one, and a long-lived one would race the recovery tests' own.
        var overrides = new Dictionary<string, string?> { ["AzureWebJobs.Custodian.Disabled"] = "true" };
        foreach (var (key, value) in Settings)
        {
            overrides[key] = value;
        }
        return overrides;
    }
}

/// <summary>The self-host in process, on a loopback port; like functions/Program.cs, a tracer provider listens to Conveyor's ActivitySource.</summary>
public class SelfHostApp : ConveyorApp
{
    private SelfHostServer? _server;
    private bool _disposed;

    public SelfHostServer Server => _server ?? throw new InvalidOperationException("the self-host has not started");

    public override HttpClient Client => Server.Client;

    public override IReadOnlyList<string> Routes() => Server.Routes();

    public override TestDatabase Database => Server.Database;

    public override async Task InitializeAsync()
    {
        _server = await SelfHostServer.StartAsync(Queue, Overrides(), PresenceTimers, conveyor =>
        {
            conveyor.AddJobHandler<ProbeJobHandler>(ProbeJobHandler.Type);
            conveyor.Services.AddOpenTelemetry().WithTracing(tracing => tracing.AddSource(ConveyorTelemetry.Name));
        });
    }

    public override async Task DisposeAsync()
    {
        if (_server is not null && !_disposed)
        {
            _disposed = true;
            await _server.DisposeAsync();
        }
    }
}

/// <summary>
/// The real Functions worker (functions/'s build output) behind <see cref="FunctionsWorkerHost"/>, which invokes its
/// timers on their schedules unless <see cref="RunTimersOnSchedule"/> is false. <see cref="ProbeJobHandler"/> is
/// loaded into it as a startup hook; nothing else is added to the app.
/// </summary>
public class FunctionsWorkerApp : ConveyorApp
{
    private FunctionsWorkerHost? _host;
    private TestDatabase? _database;
    private HttpClient? _client;
    private bool _disposed;

    /// <summary>Whether the host invokes the timers on their schedules (default) or only when a test asks.</summary>
    public bool RunTimersOnSchedule { get; init; } = true;

    public FunctionsWorkerHost Host => _host ?? throw new InvalidOperationException("the worker has not started");

    /// <summary>The app's wake queue (<c>ConveyorWakeQueue</c>) in the test run's Azurite, which is its <c>AzureWebJobsStorage</c>.</summary>
    public string WakeQueue { get; } = TestAzurite.UniqueQueueName("wake");

    public override HttpClient Client => _client ?? throw new InvalidOperationException("the worker has not started");

    public override IReadOnlyList<string> Routes() => Host.Routes();

    public override TestDatabase Database => _database ?? throw new InvalidOperationException("the worker has not started");

    public override async Task InitializeAsync()
    {
        var redis = await TestRedis.ConnectionStringAsync();
        _database = await TestPostgres.CreateDatabaseAsync();
        var settings = EndToEndSettings.For(Queue, redis, _database.ConnectionString, PresenceTimers);
        settings["Conveyor:Processor:SessionDuration"] = "00:00:05"; // one timer session; the next tick starts the next
        settings["AzureWebJobsStorage"] = await TestAzurite.ConnectionStringAsync();
        settings["ConveyorWakeQueue"] = WakeQueue;
        foreach (var (key, value) in Overrides())
        {
            settings[key] = value;
        }
        try
        {
            _host = await FunctionsWorkerHost.StartAsync(new FunctionsWorkerOptions
            {
                // As app settings reach the worker: environment variables, with __ for the configuration separator.
                AppSettings = settings.Where(s => s.Value is not null).ToDictionary(s => s.Key.Replace(":", "__", StringComparison.Ordinal), s => s.Value!),
                RunTimersOnSchedule = RunTimersOnSchedule,
                StartupHooks = [typeof(ProbeJobHandler).Assembly.Location],
            });
        }
        catch
        {
            await _database.DisposeAsync();
            _database = null;
            throw;
        }
        _client = _host.CreateClient();
    }

    public override async Task DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        _client?.Dispose();
        if (_host is not null)
        {
            await _host.DisposeAsync(); // its logs and metadata stay readable
        }
        if (_database is not null)
        {
            await _database.DisposeAsync();
        }
    }
}
