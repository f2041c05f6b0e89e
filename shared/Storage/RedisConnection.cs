using Azure.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Conveyor.Storage;

/// <summary>
/// The one shared multiplexer of the process. Nothing ever runs a blocking command on it:
/// idle processors wait on pub/sub, not on BLPOP.
/// </summary>
public sealed class RedisConnection : IAsyncDisposable
{
    private readonly Lazy<Task<ConnectionMultiplexer>> _multiplexer;
    private readonly CancellationTokenSource _stopping = new();
    private Task? _refreshing;

    /// <summary>
    /// Connects with <see cref="RedisOptions.ConnectionString"/>, or with a Microsoft Entra token when
    /// <see cref="RedisOptions.UseEntraId"/> is set; only then is the <see cref="TokenCredential"/> resolved from
    /// <paramref name="services"/>.
    /// </summary>
    public RedisConnection(IOptions<RedisOptions> options, IServiceProvider services)
    {
        ArgumentNullException.ThrowIfNull(options);
        var value = options.Value;
        if (value.UseEntraId)
        {
            _multiplexer = new(() => ConnectWithEntraIdAsync(value, services));
            return;
        }
        var configuration = ConfigurationOptions.Parse(value.ConnectionString);
        // Keep retrying in the background instead of failing the host when Redis starts late.
        configuration.AbortOnConnectFail = false;
        _multiplexer = new(() => ConnectionMultiplexer.ConnectAsync(configuration));
    }

    internal RedisConnection(ConnectionMultiplexer multiplexer) => _multiplexer = new(Task.FromResult(multiplexer));

    public Task<ConnectionMultiplexer> GetMultiplexerAsync() => _multiplexer.Value;

    public async Task<IDatabase> GetDatabaseAsync() => (await _multiplexer.Value).GetDatabase();

    /// <summary>Keeps the Entra token fresh; null on the connection-string path.</summary>
    internal RedisTokenRefresher? TokenRefresher { get; private set; }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        if (_multiplexer.IsValueCreated)
        {
            // A connection that never came (no Entra token) has nothing to dispose; its error was already raised.
            var connecting = _multiplexer.Value;
            await ((Task)connecting).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            if (_refreshing is not null)
            {
                await _refreshing;
            }
            if (connecting.IsCompletedSuccessfully)
            {
                await connecting.Result.DisposeAsync();
            }
        }
        TokenRefresher?.Dispose();
        _stopping.Dispose();
    }

    /// <summary>
    /// The first token comes before the connection (a failure throws <see cref="EntraTokenException"/> saying why);
    /// the refresh loop runs for the life of the connection.
    /// </summary>
    private async Task<ConnectionMultiplexer> ConnectWithEntraIdAsync(RedisOptions options, IServiceProvider services)
    {
        var refresher = new RedisTokenRefresher(
            services.GetRequiredService<TokenCredential>(),
            options.PrincipalId,
            services.GetService<TimeProvider>() ?? TimeProvider.System,
            services.GetService<ILoggerFactory>()?.CreateLogger<RedisConnection>() ?? NullLogger<RedisConnection>.Instance);
        TokenRefresher = refresher;
        await refresher.AcquireFirstAsync(_stopping.Token);
        // User and Password stay unset here: StackExchange.Redis then reads them from Defaults on every reconnect.
        var configuration = new ConfigurationOptions
        {
            Defaults = refresher.Provider,
            Ssl = options.EntraTls,
            AbortOnConnectFail = false,
        };
        configuration.EndPoints.Add(options.HostName!);
        var multiplexer = await ConnectionMultiplexer.ConnectAsync(configuration);
        refresher.Attach(multiplexer);
        _refreshing = refresher.RunAsync(_stopping.Token);
        return multiplexer;
    }

    /// <summary>
    /// Redis must never evict queue data: any policy but <c>noeviction</c> can silently drop jobs.
    /// Returns the policy, or null when the server does not allow CONFIG GET (managed services).
    /// </summary>
    public async Task<string?> CheckEvictionPolicyAsync(ILogger logger)
    {
        var multiplexer = await _multiplexer.Value;
        string? policy = null;
        try
        {
            var db = multiplexer.GetDatabase();
            var reply = await db.ExecuteAsync("CONFIG", "GET", "maxmemory-policy");
            var values = (RedisResult[])reply!;
            policy = values.Length == 2 ? (string?)values[1] : null;
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            logger.LogWarning(ex, "Conveyor could not read Redis maxmemory-policy; make sure it is noeviction, or jobs can be lost silently");
            return null;
        }
        if (!string.Equals(policy, "noeviction", StringComparison.Ordinal))
        {
            logger.LogWarning(
                "Redis maxmemory-policy is {Policy}, not noeviction: under memory pressure Redis will DELETE queued jobs. Set maxmemory-policy noeviction",
                policy);
        }
        return policy;
    }
}
