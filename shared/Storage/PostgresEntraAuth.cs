using Azure.Core;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Conveyor.Storage;

/// <summary>
/// Signs in to Azure Database for PostgreSQL flexible server with a Microsoft Entra token as the password
/// (<c>Conveyor:Postgres:UseEntraId</c>). The connection string names the Entra role in <c>Username</c> and
/// carries no <c>Password</c>.
/// </summary>
public static class PostgresEntraAuth
{
    /// <summary>The token scope of Azure Database for PostgreSQL.</summary>
    public const string Scope = "https://ossrdbms-aad.database.windows.net/.default";

    /// <summary>
    /// How often a token is asked for after a success. Azure.Identity hands back its cached token until about
    /// 5 minutes before expiry, so asking every 4 minutes is cheap and the password in hand is always valid
    /// when a new physical connection opens (the token is only checked at open; open connections stay).
    /// </summary>
    public static readonly TimeSpan RefreshInterval = TimeSpan.FromMinutes(4);

    /// <summary>How soon a failed token request is tried again.</summary>
    public static readonly TimeSpan FailureRefreshInterval = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Makes <paramref name="builder"/> use a token for <see cref="Scope"/> from <paramref name="credential"/> as the
    /// password, refreshed every <paramref name="refreshInterval"/> (default <see cref="RefreshInterval"/>;
    /// <see cref="FailureRefreshInterval"/> after a failure, which is logged to <paramref name="logger"/>). Call before
    /// <c>Build()</c>.
    /// </summary>
    /// <exception cref="ArgumentException">
    /// The connection string carries a <c>Password</c> (the token is the password), or names no <c>Username</c>
    /// (the PostgreSQL role of the Entra identity).
    /// </exception>
    public static NpgsqlDataSourceBuilder Configure(NpgsqlDataSourceBuilder builder, TokenCredential credential, ILogger? logger = null, TimeSpan? refreshInterval = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(credential);
        var connection = builder.ConnectionStringBuilder;
        if (!string.IsNullOrEmpty(connection.Password))
        {
            throw new ArgumentException(
                "Conveyor:Postgres:ConnectionString carries a Password, but Conveyor:Postgres:UseEntraId is true: remove the Password (the Microsoft Entra token is the password), or set UseEntraId=false",
                nameof(builder));
        }
        if (string.IsNullOrWhiteSpace(connection.Username))
        {
            throw new ArgumentException(
                "Conveyor:Postgres:ConnectionString names no Username, but Conveyor:Postgres:UseEntraId is true: set Username to the PostgreSQL role of the Entra identity (for a managed identity, its name)",
                nameof(builder));
        }
        var context = new TokenRequestContext([Scope]);
        builder.UsePeriodicPasswordProvider(
            async (_, cancellationToken) =>
            {
                try
                {
                    return (await credential.GetTokenAsync(context, cancellationToken)).Token;
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    logger?.LogError(ex,
                        "Conveyor could not get a Microsoft Entra token for PostgreSQL (scope {Scope}) from {Credential}: {Error}. Retrying in {Retry}; new connections fail until then",
                        Scope, credential.GetType().Name, ex.Message, FailureRefreshInterval);
                    throw;
                }
            },
            refreshInterval ?? RefreshInterval,
            FailureRefreshInterval);
        return builder;
    }
}
