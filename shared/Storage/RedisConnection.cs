using Microsoft.Extensions.Logging;
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

    public RedisConnection(IOptions<RedisOptions> options)
    {
        var configuration = ConfigurationOptions.Parse(options.Value.ConnectionString);
        // Keep retrying in the background instead of failing the host when Redis starts late.
        configuration.AbortOnConnectFail = false;
        _multiplexer = new(() => ConnectionMultiplexer.ConnectAsync(configuration));
    }

    internal RedisConnection(ConnectionMultiplexer multiplexer) => _multiplexer = new(Task.FromResult(multiplexer));

    public Task<ConnectionMultiplexer> GetMultiplexerAsync() => _multiplexer.Value;

    public async Task<IDatabase> GetDatabaseAsync() => (await _multiplexer.Value).GetDatabase();

    public async ValueTask DisposeAsync()
    {
        if (_multiplexer.IsValueCreated)
        {
            await (await _multiplexer.Value).DisposeAsync();
        }
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
        catch (RedisException ex)
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
