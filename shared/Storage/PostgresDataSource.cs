using Azure.Core;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Conveyor.Storage;

/// <summary>
/// Builds the process's one <see cref="NpgsqlDataSource"/> (its connection pool). Everything that talks
/// to PostgreSQL gets its connections from that data source, so how Conveyor authenticates is decided here only.
/// </summary>
public static class PostgresDataSource
{
    /// <summary>
    /// A data source for <paramref name="options"/>; <paramref name="loggerFactory"/> receives Npgsql's logs.
    /// With <see cref="PostgresOptions.UseEntraId"/>, passwords are Entra tokens from <paramref name="credential"/>
    /// (asked for only then, so the local path never touches Azure.Identity).
    /// </summary>
    public static NpgsqlDataSource Create(PostgresOptions options, ILoggerFactory? loggerFactory = null, Func<TokenCredential>? credential = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var builder = new NpgsqlDataSourceBuilder(options.ConnectionString);
        if (loggerFactory is not null)
        {
            builder.UseLoggerFactory(loggerFactory);
        }
        if (options.UseEntraId)
        {
            var tokens = credential?.Invoke() ?? throw new InvalidOperationException("Conveyor:Postgres:UseEntraId is true but no TokenCredential is registered");
            PostgresEntraAuth.Configure(builder, tokens, loggerFactory?.CreateLogger(typeof(PostgresDataSource)));
        }
        return builder.Build();
    }
}
