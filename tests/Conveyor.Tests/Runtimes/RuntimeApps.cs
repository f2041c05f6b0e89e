using System.Collections.Concurrent;
using System.Net;
using Conveyor.Client;
using Conveyor.Tests.Infrastructure;
using StackExchange.Redis;

namespace Conveyor.Tests.Runtimes;

/// <summary>
/// An app for remote-runtime tests, on either host (<see cref="RuntimeSelfHostApp"/>, <see cref="RuntimeFunctionsApp"/>):
/// on a Redis of its own, with the presence timers and the custodian running every second on short presence settings.
/// Its own Redis, because a custodian gives back the claims of every runtime it cannot find in its own PostgreSQL
/// database: no other test's app may see these claims. Tests talk to it over HTTP only (the real client), and look at
/// its Redis.
/// </summary>
public interface IRuntimeApp
{
    /// <summary>The host's HTTP client (it sends the API key).</summary>
    HttpClient Http { get; }

    /// <summary>The app's Redis and the real client over <see cref="Http"/>.</summary>
    RuntimeBackplane Backplane { get; }

    /// <summary>The real client over <see cref="Http"/>.</summary>
    ConveyorClient Client => Backplane.Client;

    /// <summary>The app's own Redis, to look at.</summary>
    IDatabase Db => Backplane.Db;

    /// <summary>A registered runtime that has beaten once, so it is online.</summary>
    async Task<RuntimeCredentials> OnlineRuntimeAsync(string name = "agent")
    {
        var runtime = await Client.RegisterRuntimeAsync(name);
        Assert.True((await Client.BeatAsync(runtime)).FlippedOnline);
        return runtime;
    }

    /// <summary>Subscribers of the queue's wake-up channel: a waiting claim holds one.</summary>
    async Task<long> WaitingClaimsAsync(string queue) =>
        (long)((RedisResult[])(await Db.ExecuteAsync("PUBSUB", "NUMSUB", $"conveyor:{{{queue}}}:signal"))!)[1];

    /// <summary>Redis answers no client for <paramref name="milliseconds"/>, then runs what it received meanwhile.</summary>
    Task PauseRedisAsync(int milliseconds) => Backplane.PauseAsync(milliseconds);
}

/// <summary>
/// What a runtime app adds to its host: a Redis of its own (started before the host, whose settings then point at it)
/// and the real client once the host is up.
/// </summary>
public sealed class RuntimeBackplane(IReadOnlyDictionary<string, string?> settings, string redisOptions) : IAsyncDisposable
{
    private DedicatedRedis? _redis;
    private ConnectionMultiplexer? _multiplexer;
    private ConveyorClient? _client;

    /// <summary>The host's settings: <see cref="RuntimeSettings.Common"/>, then the app's, then its Redis once started.</summary>
    public Dictionary<string, string?> Settings { get; } = RuntimeSettings.With(settings);

    public IDatabase Db => (_multiplexer ?? throw new InvalidOperationException("the app's Redis has not started")).GetDatabase();

    public ConveyorClient Client => _client ?? throw new InvalidOperationException("the app has not started");

    /// <summary>
    /// Starts the Redis (<c>redisOptions</c> are appended to the host's connection string: <c>,asyncTimeout=300</c>), then
    /// the host (<paramref name="startHost"/>), then the client over the host's <paramref name="http"/>.
    /// </summary>
    public async Task StartAsync(Func<Task> startHost, Func<HttpClient> http)
    {
        _redis = await TestRedis.StartDedicatedAsync();
        _multiplexer = await ConnectionMultiplexer.ConnectAsync(_redis.Endpoint + ",allowAdmin=true");
        Settings["Conveyor:Redis:ConnectionString"] = _redis.Endpoint + redisOptions;
        await startHost();
        _client = new ConveyorClient(http(), new ConveyorClientOptions { RetryDelay = TimeSpan.FromMilliseconds(20) });
    }

    public Task PauseAsync(int milliseconds) =>
        _multiplexer!.GetServer(_redis!.Endpoint).ExecuteAsync("CLIENT", "PAUSE", milliseconds.ToString(System.Globalization.CultureInfo.InvariantCulture), "ALL");

    public async ValueTask DisposeAsync()
    {
        _client?.Dispose();
        if (_multiplexer is not null)
        {
            await _multiplexer.DisposeAsync();
        }
        _redis?.Dispose();
    }
}

/// <summary>The settings of runtime apps, in configuration form.</summary>
public static class RuntimeSettings
{
    /// <summary>
    /// Every runtime app: beats every 0.2 s expected, silent for 5 s means offline (swept every second), and the custodian
    /// on (end-to-end apps run without one unless asked).
    /// </summary>
    public static readonly IReadOnlyDictionary<string, string?> Common = new Dictionary<string, string?>
    {
        ["Conveyor:Presence:BeatInterval"] = "00:00:00.2",
        ["Conveyor:Presence:FlushInterval"] = "00:00:01",
        ["Conveyor:Presence:SweepInterval"] = "00:00:01",
        ["Conveyor:Presence:StaleWindow"] = "00:00:05",
        ["AzureWebJobs.Custodian.Disabled"] = "false",
    };

    /// <summary>The fallback poll of a waiting claim a minute away: within a test, only the queue's pub/sub signal wakes it.</summary>
    public static readonly IReadOnlyDictionary<string, string?> PubSubOnly = new Dictionary<string, string?>
    {
        ["Conveyor:Runtimes:IdlePollInterval"] = "00:01:00",
    };

    /// <summary>The processor serves every queue (the default; end-to-end apps otherwise serve their own queue only).</summary>
    public static readonly IReadOnlyDictionary<string, string?> EveryQueue = new Dictionary<string, string?>
    {
        ["Conveyor:Processor:Queues:0"] = "*",
    };

    /// <summary>Claims expire 2 s after they were made or extended.</summary>
    public static readonly IReadOnlyDictionary<string, string?> ShortClaims = new Dictionary<string, string?>
    {
        ["Conveyor:Runtimes:ClaimTimeout"] = "00:00:02",
    };

    /// <summary>Nothing listens at its PostgreSQL: every presence call fails as unavailable (and the presence timers are off).</summary>
    public static readonly IReadOnlyDictionary<string, string?> PostgresDown = new Dictionary<string, string?>
    {
        ["Conveyor:Postgres:ConnectionString"] = "Host=127.0.0.1;Port=1;Database=none;Username=none;Timeout=2",
        ["AzureWebJobs.HeartbeatFlush.Disabled"] = "true",
        ["AzureWebJobs.StaleSweeper.Disabled"] = "true",
    };

    /// <summary>Redis calls time out after 300 ms (StackExchange.Redis checks timeouts once a second).</summary>
    public const string ShortRedisTimeouts = ",asyncTimeout=300,syncTimeout=300";

    public static Dictionary<string, string?> With(IReadOnlyDictionary<string, string?> settings)
    {
        var all = new Dictionary<string, string?>(Common);
        foreach (var (key, value) in settings)
        {
            all[key] = value;
        }
        return all;
    }
}

/// <summary>The self-host as a runtime app.</summary>
public abstract class RuntimeSelfHostApp : SelfHostApp, IRuntimeApp
{
    protected RuntimeSelfHostApp(IReadOnlyDictionary<string, string?> settings, string redisOptions = "")
    {
        Backplane = new RuntimeBackplane(settings, redisOptions);
        Settings = Backplane.Settings;
    }

    public RuntimeBackplane Backplane { get; }

    public HttpClient Http => Client;

    protected override bool PresenceTimers => true;

    public override Task InitializeAsync() => Backplane.StartAsync(base.InitializeAsync, () => Client);

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        await Backplane.DisposeAsync();
    }
}

/// <summary>The real Functions worker as a runtime app (timers on their schedules).</summary>
public abstract class RuntimeFunctionsApp : FunctionsWorkerApp, IRuntimeApp
{
    protected RuntimeFunctionsApp(IReadOnlyDictionary<string, string?> settings, string redisOptions = "")
    {
        Backplane = new RuntimeBackplane(settings, redisOptions);
        Settings = Backplane.Settings;
    }

    public RuntimeBackplane Backplane { get; }

    public HttpClient Http => Client;

    protected override bool PresenceTimers => true;

    public override Task InitializeAsync() => Backplane.StartAsync(base.InitializeAsync, () => Client);

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        await Backplane.DisposeAsync();
    }
}

public sealed class ClaimsSelfHostApp() : RuntimeSelfHostApp(RuntimeSettings.PubSubOnly);

public sealed class ClaimsFunctionsApp() : RuntimeFunctionsApp(RuntimeSettings.PubSubOnly);

public sealed class ShortClaimsSelfHostApp() : RuntimeSelfHostApp(RuntimeSettings.ShortClaims);

public sealed class ShortClaimsFunctionsApp() : RuntimeFunctionsApp(RuntimeSettings.ShortClaims);

public sealed class RedisTimeoutsSelfHostApp() : RuntimeSelfHostApp(new Dictionary<string, string?>(), RuntimeSettings.ShortRedisTimeouts);

public sealed class RedisTimeoutsFunctionsApp() : RuntimeFunctionsApp(new Dictionary<string, string?>(), RuntimeSettings.ShortRedisTimeouts);

public sealed class PostgresDownSelfHostApp() : RuntimeSelfHostApp(RuntimeSettings.PostgresDown);

public sealed class PostgresDownFunctionsApp() : RuntimeFunctionsApp(RuntimeSettings.PostgresDown);

/// <summary>
/// Sends every request through the app's own client (either host), recording each with the status it got, and how many
/// were in flight at once per path.
/// </summary>
internal sealed class RecordingHandler(HttpClient app) : HttpMessageHandler
{
    private readonly ConcurrentDictionary<string, (int Now, int Most)> _inFlight = new(StringComparer.Ordinal);

    public ConcurrentQueue<(HttpMethod Method, string Path, string Body, HttpStatusCode Status)> Sent { get; } = new();

    public int Count(HttpMethod method, string path) => Sent.Count(s => s.Method == method && s.Path == path);

    /// <summary>The most requests to <paramref name="path"/> that were in flight at once.</summary>
    public int MostInFlight(string path) => _inFlight.TryGetValue(path, out var count) ? count.Most : 0;

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var body = request.Content is null ? "" : await request.Content.ReadAsStringAsync(cancellationToken);
        // A request goes out once: the app's client gets a copy.
        using var copy = new HttpRequestMessage(request.Method, request.RequestUri);
        if (request.Content is not null)
        {
            copy.Content = new StringContent(body, request.Content.Headers.ContentType);
        }
        foreach (var (name, values) in request.Headers)
        {
            copy.Headers.TryAddWithoutValidation(name, values);
        }
        var path = request.RequestUri!.AbsolutePath;
        _inFlight.AddOrUpdate(path, (1, 1), (_, count) => (count.Now + 1, Math.Max(count.Most, count.Now + 1)));
        try
        {
            var response = await app.SendAsync(copy, cancellationToken);
            Sent.Enqueue((request.Method, path, body, response.StatusCode));
            return response;
        }
        finally
        {
            _inFlight.AddOrUpdate(path, (0, 0), (_, count) => (count.Now - 1, count.Most));
        }
    }
}
