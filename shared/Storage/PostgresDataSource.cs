using Microsoft.Extensions.Logging;
using Npgsql;

namespace Conveyor.Storage;

/// <summary>
/// Builds the process's one <see cref="NpgsqlDataSource"/> (its connection pool). Everything that talks
/// to PostgreSQL gets its connections from that data source, so how Conveyor authenticates is decided here only.
/// </summary>
public static class PostgresDataSource
{
    /// <summary>A data source for <paramref name="options"/>; <paramref name="loggerFactory"/> receives Npgsql's logs.</summary>
    public static NpgsqlDataSource Create(PostgresOptions options, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var builder = new NpgsqlDataSourceBuilder(options.ConnectionString);
        if (loggerFactory is not null)
        {
            builder.UseLoggerFactory(loggerFactory);
        }
        return builder.Build();
    }
}
