using Conveyor.Client;
using Conveyor.Tests.Infrastructure;
using StackExchange.Redis;

namespace Conveyor.Tests.Runtimes;

/// <summary>
/// The self-host with its presence timers and custodian running every second, on a Redis of its own: runtime claims are
/// released by whichever custodian finds their runtime missing from its own PostgreSQL database, so they must not sit
/// where other tests' servers (each with its own database) run custodians too.
/// </summary>
internal sealed class RuntimeServer : IAsyncDisposable
{
    /// <summary>Beats every 0.2 s are expected; silent for 5 s means offline (checked every second).</summary>
    public static readonly Dictionary<string, string?> ShortPresence = new()
    {
        ["Conveyor:Presence:BeatInterval"] = "00:00:00.2",
        ["Conveyor:Presence:FlushInterval"] = "00:00:01",
        ["Conveyor:Presence:SweepInterval"] = "00:00:01",
        ["Conveyor:Presence:StaleWindow"] = "00:00:05",
    };

    private readonly DedicatedRedis _redis;
    private readonly ConnectionMultiplexer _multiplexer;

    private RuntimeServer(DedicatedRedis redis, ConnectionMultiplexer multiplexer, SelfHostServer server)
    {
        _redis = redis;
        _multiplexer = multiplexer;
        Server = server;
        Client = new ConveyorClient(server.Client, new ConveyorClientOptions { RetryDelay = TimeSpan.FromMilliseconds(20) });
    }

    public SelfHostServer Server { get; }

    /// <summary>The real client over the server's HttpClient (which sends the API key).</summary>
    public ConveyorClient Client { get; }

    public HttpClient Http => Server.Client;

    /// <summary>The server's own Redis, to look at.</summary>
    public IDatabase Db => _multiplexer.GetDatabase();

    public string RedisEndpoint => _redis.Endpoint;

    /// <summary>A server on a new Redis; <paramref name="redisOptions"/> are appended to its connection string (<c>,asyncTimeout=300</c>).</summary>
    public static async Task<RuntimeServer> StartAsync(Dictionary<string, string?>? settings = null, string redisOptions = "")
    {
        var redis = await TestRedis.StartDedicatedAsync();
        try
        {
            var values = new Dictionary<string, string?>(ShortPresence) { ["Conveyor:Redis:ConnectionString"] = redis.Endpoint + redisOptions };
            foreach (var (key, value) in settings ?? [])
            {
                values[key] = value;
            }
            // The processor serves a queue of its own: runtime tests use other queues.
            var server = await SelfHostServer.StartAsync(TestRedis.UniqueQueue("processor"), values, presenceTimers: true);
            return new RuntimeServer(redis, await ConnectionMultiplexer.ConnectAsync(redis.Endpoint + ",allowAdmin=true"), server);
        }
        catch
        {
            redis.Dispose();
            throw;
        }
    }

    /// <summary>A registered runtime that has beaten once, so it is online.</summary>
    public async Task<RuntimeCredentials> OnlineRuntimeAsync(string name = "agent")
    {
        var runtime = await Client.RegisterRuntimeAsync(name);
        var beat = await Client.BeatAsync(runtime);
        Assert.True(beat.FlippedOnline);
        return runtime;
    }

    /// <summary>Subscribers of the queue's wake-up channel on the server: a waiting claim holds one.</summary>
    public async Task<long> WaitingClaimsAsync(string queue) =>
        (long)((RedisResult[])(await Db.ExecuteAsync("PUBSUB", "NUMSUB", $"conveyor:{{{queue}}}:signal"))!)[1];

    /// <summary>Redis answers no client for <paramref name="milliseconds"/>, then runs what it received meanwhile.</summary>
    public Task PauseRedisAsync(int milliseconds) =>
        _multiplexer.GetServer(_redis.Endpoint).ExecuteAsync("CLIENT", "PAUSE", milliseconds.ToString(System.Globalization.CultureInfo.InvariantCulture), "ALL");

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await Server.DisposeAsync();
        await _multiplexer.DisposeAsync();
        _redis.Dispose();
    }
}
