using System.Collections.Concurrent;
using Conveyor.Hosting;
using Conveyor.Presence;
using Conveyor.Storage;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using StackExchange.Redis;

namespace Conveyor.Tests.Infrastructure;

/// <summary>
/// The presence test classes share the two presence keys of the test Redis, so they run one at a time
/// (queue tests never touch those keys); each class has its own PostgreSQL database.
/// </summary>
[CollectionDefinition(Name)]
public sealed class PresenceCollection
{
    public const string Name = "Presence";
}

/// <summary>A test class's own migrated database (xunit class fixture).</summary>
public sealed class PresenceDatabase : IAsyncLifetime
{
    private TestDatabase? _database;

    public TestDatabase Database => _database ?? throw new InvalidOperationException("not initialised");

    public async Task InitializeAsync() => _database = await TestPostgres.CreateDatabaseAsync();

    public async Task DisposeAsync()
    {
        if (_database is not null)
        {
            await _database.DisposeAsync();
        }
    }
}

/// <summary>
/// Conveyor wired with <c>AddConveyor</c> against the test Redis and one test database, through a data
/// source whose commands <see cref="Commands"/> counts. Starting one empties the presence keys and the
/// runtimes table (each test class has its own database, and its tests run one at a time).
/// </summary>
public sealed class PresenceHost : IAsyncDisposable
{
    private readonly ConnectionMultiplexer? _ownMultiplexer;

    private PresenceHost(ServiceProvider services, IDatabase db, TestDatabase database, CommandCounter commands, ConnectionMultiplexer? ownMultiplexer)
    {
        Services = services;
        Db = db;
        Database = database;
        Commands = commands;
        _ownMultiplexer = ownMultiplexer;
    }

    public ServiceProvider Services { get; }
    public IDatabase Db { get; }
    public TestDatabase Database { get; }
    public CommandCounter Commands { get; }
    public RuntimeRegistry Registry => Services.GetRequiredService<RuntimeRegistry>();
    public HeartbeatService Heartbeats => Services.GetRequiredService<HeartbeatService>();
    public HeartbeatFlusher Flusher => Services.GetRequiredService<HeartbeatFlusher>();
    public StaleSweeper Sweeper => Services.GetRequiredService<StaleSweeper>();

    /// <summary>
    /// A host on <paramref name="database"/>. <paramref name="connectionString"/> overrides where its data source
    /// points (an unreachable server, say); <paramref name="ownConnection"/> gives it its own Redis connection,
    /// like a separate process; <paramref name="clearPresence"/> first empties the presence keys and the table, and
    /// stamps the beat intake as unbroken for a day (a service long up, whose sweeper is not in disruption mode);
    /// <paramref name="cluster"/> uses the single-node Redis Cluster. Unless <paramref name="settings"/> say otherwise,
    /// the write window is 0: every beat reaches the flush, which most presence tests are about.
    /// </summary>
    public static async Task<PresenceHost> StartAsync(
        TestDatabase database,
        Dictionary<string, string?>? settings = null,
        string? connectionString = null,
        bool ownConnection = false,
        bool clearPresence = true,
        bool cluster = false)
    {
        var shared = cluster ? await TestRedis.GetClusterAsync() : await TestRedis.GetAsync();
        var multiplexer = ownConnection ? await ConnectionMultiplexer.ConnectAsync(shared.Configuration) : shared;
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["Conveyor:Presence:WriteWindow"] = "00:00:00" })
            .AddInMemoryCollection(settings ?? [])
            .Build();
        var commands = new CommandCounter();
        var builder = new NpgsqlDataSourceBuilder(connectionString ?? database.ConnectionString);
        builder.UseLoggerFactory(LoggerFactory.Create(logging => logging.SetMinimumLevel(LogLevel.Debug).AddProvider(commands)));
        var services = new ServiceCollection();
        services.AddLogging(logging => logging.SetMinimumLevel(LogLevel.Warning));
        services.AddSingleton(new RedisConnection(multiplexer));
        services.AddSingleton(builder.Build());
        services.AddConveyor(configuration);
        var provider = services.BuildServiceProvider(new ServiceProviderOptions { ValidateOnBuild = true, ValidateScopes = true });
        var host = new PresenceHost(provider, multiplexer.GetDatabase(), database, commands, ownConnection ? multiplexer : null);
        if (clearPresence)
        {
            await host.ResetRedisAsync();
            await database.ExecuteAsync("TRUNCATE runtimes");
        }
        return host;
    }

    /// <summary>
    /// Empties every presence key, then stamps the beat intake as unbroken for a day: a service long up, whose sweeper
    /// is not in disruption mode (without the stamp, it would hold every silent runtime back for a stale window).
    /// </summary>
    public async Task ResetRedisAsync()
    {
        await Db.KeyDeleteAsync(PresenceKeys.All);
        await StampIntakeUnbrokenAsync(Db);
    }

    /// <summary>Stamps Conveyor's beat intake as unbroken for a day, as a heartbeat flush of a service long up leaves it.</summary>
    public static async Task StampIntakeUnbrokenAsync(IDatabase db)
    {
        var now = await RedisTime.NowMsAsync(db);
        await db.StringSetAsync(PresenceKeys.Intake, $"{now}|{now - (long)TimeSpan.FromDays(1).TotalMilliseconds}");
    }

    /// <summary>A registered runtime that has beaten once (so it is online and known online).</summary>
    public async Task<RegisteredRuntime> OnlineRuntimeAsync(string name = "agent")
    {
        var runtime = await Registry.RegisterAsync(name);
        var first = await Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token);
        Assert.Equal(BeatOutcome.Synchronous, first.Outcome);
        return runtime;
    }

    /// <summary><paramref name="count"/> runtimes, online and known online.</summary>
    public async Task<List<RegisteredRuntime>> OnlineRuntimesAsync(int count)
    {
        var runtimes = new List<RegisteredRuntime>();
        for (var i = 0; i < count; i++)
        {
            runtimes.Add(await OnlineRuntimeAsync($"agent-{i}"));
        }
        return runtimes;
    }

    public Task<DateTime?> LastSeenAtAsync(Guid id) =>
        Database.ScalarAsync<object>("SELECT last_seen_at FROM runtimes WHERE id = $1", id)
            .ContinueWith(t => t.Result is DBNull ? (DateTime?)null : (DateTime)t.Result, TaskScheduler.Default);

    public Task<string> StatusAsync(Guid id) => Database.ScalarAsync<string>("SELECT status FROM runtimes WHERE id = $1", id);

    /// <summary>The runtime's latest buffered beat: in the live set, or frozen by a flush that has not written it yet.</summary>
    public async Task<double?> BufferedAsync(Guid id) => (await PresenceKeys.BufferedBeatsAsync(Db, [id.ToString()]))[0];

    /// <summary>Runtimes with a buffered beat, live or frozen.</summary>
    public async Task<int> BufferedCountAsync()
    {
        var live = await Db.SortedSetRangeByRankAsync(PresenceKeys.Beats);
        var frozen = await Db.SortedSetRangeByRankAsync(PresenceKeys.Flushing);
        return live.Concat(frozen).Distinct().Count();
    }

    /// <summary>The runtime ids a flush froze and has not yet written.</summary>
    public async Task<string[]> FrozenAsync() =>
        [.. (await Db.SortedSetRangeByRankAsync(PresenceKeys.Flushing)).Select(v => v.ToString()).Order(StringComparer.Ordinal)];

    public async Task<bool> KnownOnlineAsync(Guid id) => await Db.HashExistsAsync(PresenceKeys.Online, id.ToString());

    /// <summary>
    /// Every row, the online set and each runtime's latest buffered beat (live or frozen), as text: equal
    /// snapshots mean nothing changed that anyone can observe. A flush that froze beats and failed leaves them
    /// buffered, so it changes nothing here.
    /// </summary>
    public async Task<string> SnapshotAsync()
    {
        var rows = new List<string>();
        await using (var command = Database.DataSource.CreateCommand("SELECT id, status, last_seen_at FROM runtimes ORDER BY id"))
        await using (var reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                rows.Add($"{reader.GetGuid(0)} {reader.GetString(1)} {(reader.IsDBNull(2) ? "-" : reader.GetDateTime(2).ToString("O"))}");
            }
        }
        var online = (await Db.HashGetAllAsync(PresenceKeys.Online)).Select(e => $"{e.Name}={e.Value}").Order(StringComparer.Ordinal);
        var beats = (await Db.SortedSetRangeByRankWithScoresAsync(PresenceKeys.Beats))
            .Concat(await Db.SortedSetRangeByRankWithScoresAsync(PresenceKeys.Flushing))
            .GroupBy(e => e.Element.ToString())
            .Select(g => $"{g.Key}@{g.Max(e => e.Score)}")
            .Order(StringComparer.Ordinal);
        return string.Join("\n", [.. rows, "online:", .. online, "beats:", .. beats]);
    }

    public async ValueTask DisposeAsync()
    {
        var dataSource = Services.GetRequiredService<NpgsqlDataSource>();
        await Services.DisposeAsync();
        await dataSource.DisposeAsync();
        if (_ownMultiplexer is not null)
        {
            await _ownMultiplexer.DisposeAsync();
        }
    }
}

/// <summary>
/// Counts, from Npgsql's own log of one data source, the commands it executes and the connections it opens:
/// either one means a round trip to PostgreSQL.
/// </summary>
public sealed class CommandCounter : ILoggerProvider
{
    private int _commands;
    private int _opens;

    public ConcurrentQueue<string> Log { get; } = new();

    /// <summary>Commands and batches sent (transaction control, such as the flush's COMMIT, is not counted).</summary>
    public int Count => Volatile.Read(ref _commands);

    /// <summary>Connections opened (or attempted).</summary>
    public int Opens => Volatile.Read(ref _opens);

    public ILogger CreateLogger(string categoryName) => new CommandLogger(this, categoryName);

    public void Dispose()
    {
    }

    private sealed class CommandLogger(CommandCounter counter, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => category is "Npgsql.Command" or "Npgsql.Connection";

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            counter.Log.Enqueue($"{category} {eventId.Name}: {formatter(state, exception)}");
            // One per round trip that runs SQL: a command, or a batch of them (the flush sends SET LOCAL + UPDATE as one).
            if (eventId.Name is "ExecutingCommand" or "ExecutingBatch")
            {
                Interlocked.Increment(ref counter._commands);
            }
            else if (category == "Npgsql.Connection" && eventId.Name?.StartsWith("Opening", StringComparison.Ordinal) == true)
            {
                Interlocked.Increment(ref counter._opens);
            }
        }
    }
}
