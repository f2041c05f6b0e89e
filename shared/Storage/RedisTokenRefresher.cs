using Azure.Core;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Conveyor.Storage;

/// <summary>What one <see cref="RedisTokenRefresher.RefreshIfDueAsync"/> did.</summary>
internal enum TokenRefreshOutcome
{
    /// <summary>The current token has enough time left; nothing was asked.</summary>
    NotDue,

    /// <summary>A new token is in use and was sent with AUTH to every connected server.</summary>
    Refreshed,

    /// <summary>No new token could be had; the current one stays in use and the refresh is retried soon.</summary>
    Failed,
}

/// <param name="Outcome">Whether a new token was had.</param>
/// <param name="ServersReauthenticated">Connected servers that accepted AUTH with the new token.</param>
/// <param name="ServersFailed">Connected servers whose AUTH failed; they sign in with the new token when they reconnect.</param>
internal readonly record struct TokenRefreshResult(TokenRefreshOutcome Outcome, int ServersReauthenticated = 0, int ServersFailed = 0);

/// <summary>
/// Keeps the Redis Entra token fresh: every <see cref="CheckInterval"/> it asks for a new token when the current
/// one has less than <see cref="RefreshWhenLessThan"/> left, puts it in the options provider (for reconnects) and
/// re-AUTHs every connected server (Azure Managed Redis closes connections whose token expired). A failure is
/// logged, retried every <see cref="RetryInterval"/>, and leaves the working connection alone.
/// </summary>
internal sealed class RedisTokenRefresher(TokenCredential credential, string? principalId, TimeProvider time, ILogger logger) : IDisposable
{
    public const string Scope = "https://redis.azure.com/.default";

    /// <summary>How often the expiry is checked.</summary>
    public static readonly TimeSpan CheckInterval = TimeSpan.FromMinutes(2);

    /// <summary>A token with less than this left is replaced.</summary>
    public static readonly TimeSpan RefreshWhenLessThan = TimeSpan.FromMinutes(5);

    /// <summary>How soon a failed refresh is tried again.</summary>
    public static readonly TimeSpan RetryInterval = TimeSpan.FromSeconds(15);

    private readonly SemaphoreSlim _gate = new(1, 1);
    private ConnectionMultiplexer? _multiplexer;

    /// <summary>Set as <c>ConfigurationOptions.Defaults</c>: serves the current user and token.</summary>
    public EntraRedisOptionsProvider Provider { get; } = new();

    /// <summary>Gets the token to connect with; throws <see cref="EntraTokenException"/> saying why when there is none.</summary>
    public async Task AcquireFirstAsync(CancellationToken cancellationToken)
    {
        try
        {
            Provider.Current = await FetchAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            throw new EntraTokenException(Scope,
                $"Conveyor could not get a Microsoft Entra token for Redis (scope {Scope}) from {credential.GetType().Name}: {ex.Message.TrimEnd('.')}. " +
                "In Azure, check that the function app has the user-assigned identity named by Conveyor:Identity:ClientId (or AZURE_CLIENT_ID); " +
                "locally, sign in with `az login` or use Conveyor:Redis:ConnectionString with UseEntraId=false.", ex);
        }
        logger.LogInformation("Conveyor got a Microsoft Entra token for Redis user {User}, valid until {ExpiresOn:o}", Provider.Current.User, Provider.Current.ExpiresOn);
    }

    /// <summary>The multiplexer whose connected servers get AUTH after a refresh.</summary>
    public void Attach(ConnectionMultiplexer multiplexer) => _multiplexer = multiplexer;

    /// <summary>Replaces the token if it is close to expiry and re-AUTHs connected servers. Never throws on a failed refresh.</summary>
    public async Task<TokenRefreshResult> RefreshIfDueAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            var current = Provider.Current ?? throw new InvalidOperationException("AcquireFirstAsync must succeed before refreshing");
            var left = current.ExpiresOn - time.GetUtcNow();
            if (left >= RefreshWhenLessThan)
            {
                return new(TokenRefreshOutcome.NotDue);
            }
            EntraRedisToken next;
            try
            {
                next = await FetchAsync(cancellationToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                logger.LogError(ex,
                    "Conveyor could not refresh its Microsoft Entra token for Redis (scope {Scope}): {Error}. The current token expires at {ExpiresOn:o} ({Left} from now); " +
                    "the connection keeps using it and the refresh is retried in {Retry}. After expiry Redis closes the connection and reconnects fail until a token is had",
                    Scope, ex.Message, current.ExpiresOn, left, RetryInterval);
                return new(TokenRefreshOutcome.Failed);
            }
            Provider.Current = next;
            var (reauthenticated, failed) = await ReauthenticateAsync(next);
            logger.LogInformation(
                "Conveyor refreshed its Microsoft Entra token for Redis, valid until {ExpiresOn:o}; AUTH sent to {Servers} connected server(s), {Failed} failed",
                next.ExpiresOn, reauthenticated, failed);
            return new(TokenRefreshOutcome.Refreshed, reauthenticated, failed);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Checks every <see cref="CheckInterval"/> (<see cref="RetryInterval"/> after a failure) until cancelled.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var last = TokenRefreshOutcome.NotDue;
        try
        {
            while (true)
            {
                await Task.Delay(last == TokenRefreshOutcome.Failed ? RetryInterval : CheckInterval, time, cancellationToken);
                last = (await RefreshIfDueAsync(cancellationToken)).Outcome;
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    public void Dispose() => _gate.Dispose();

    private async Task<EntraRedisToken> FetchAsync(CancellationToken cancellationToken)
    {
        var token = await credential.GetTokenAsync(new TokenRequestContext([Scope]), cancellationToken);
        var user = string.IsNullOrWhiteSpace(principalId) ? EntraRedisToken.ObjectIdOf(token.Token) : principalId;
        return new EntraRedisToken(user, token.Token, token.ExpiresOn);
    }

    private async Task<(int Reauthenticated, int Failed)> ReauthenticateAsync(EntraRedisToken token)
    {
        if (_multiplexer is null)
        {
            return (0, 0);
        }
        int reauthenticated = 0, failed = 0;
        // With RESP3 (the Azure Managed Redis default) this is every connection. A RESP2 subscriber connection cannot
        // take AUTH: the server closes it at expiry and it reconnects with the provider's current token.
        foreach (var server in _multiplexer.GetServers())
        {
            if (!server.IsConnected)
            {
                continue;
            }
            try
            {
                await server.ExecuteAsync("AUTH", token.User, token.Token);
                reauthenticated++;
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                failed++;
                logger.LogWarning(ex,
                    "Conveyor refreshed its Microsoft Entra token but AUTH on Redis server {EndPoint} failed; that connection is closed when its old token expires and reconnects with the new one",
                    server.EndPoint);
            }
        }
        return (reauthenticated, failed);
    }
}
