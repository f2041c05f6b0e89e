using System.Globalization;
using System.Reflection;
using DbUp;
using DbUp.Engine;
using DbUp.Engine.Output;
using DbUp.Postgresql;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Conveyor.Storage;

/// <summary>Where the database schema stands against the migrations this build carries.</summary>
/// <param name="Pending">Migrations of this build not yet applied, in order.</param>
/// <param name="Unknown">Applied migrations this build does not know (a newer build migrated the database).</param>
public sealed record SchemaStatus(IReadOnlyList<string> Pending, IReadOnlyList<string> Unknown)
{
    /// <summary>True when the database has exactly this build's migrations.</summary>
    public bool Matches => Pending.Count == 0 && Unknown.Count == 0;
}

/// <summary>
/// Applies the versioned migrations embedded from <c>Storage/Migrations/NNNN_name.sql</c> with DbUp, in
/// name order, one transaction each, journaled in table <c>schema_versions</c>. A session-level advisory
/// lock makes instances that start together migrate one after the other.
/// </summary>
public sealed class SchemaMigrator(NpgsqlDataSource dataSource, ILogger<SchemaMigrator> logger)
{
    private const string ResourcePrefix = "Conveyor.Storage.Migrations.";

    // "Conveyor" in ASCII: the advisory lock key every Conveyor instance agrees on.
    private const long LockKey = 0x436F6E7665796F72;

    /// <summary>Applies the pending migrations and returns their names.</summary>
    public async Task<IReadOnlyList<string>> MigrateAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using (var lockCommand = new NpgsqlCommand("SELECT pg_advisory_lock(@key)", connection))
        {
            lockCommand.Parameters.AddWithValue("key", LockKey);
            await lockCommand.ExecuteNonQueryAsync(cancellationToken);
        }
        try
        {
            // DbUp is synchronous; keep it off the caller's thread.
            var result = await Task.Run(() => Engine().PerformUpgrade(), cancellationToken);
            if (!result.Successful)
            {
                throw new InvalidOperationException(
                    $"Conveyor schema migration {result.ErrorScript?.Name} failed: {result.Error?.Message}", result.Error);
            }
            var applied = result.Scripts.Select(s => s.Name).ToList();
            if (applied.Count > 0)
            {
                logger.LogInformation("Conveyor applied schema migrations {Migrations}", string.Join(", ", applied));
            }
            return applied;
        }
        finally
        {
            await using var unlock = new NpgsqlCommand("SELECT pg_advisory_unlock(@key)", connection);
            unlock.Parameters.AddWithValue("key", LockKey);
            await unlock.ExecuteNonQueryAsync(CancellationToken.None);
        }
    }

    /// <summary>Compares the applied migrations with this build's.</summary>
    public Task<SchemaStatus> CheckAsync(CancellationToken cancellationToken = default) =>
        Task.Run(
            () =>
            {
                var engine = Engine();
                return new SchemaStatus(
                    [.. engine.GetScriptsToExecute().Select(s => s.Name)],
                    [.. engine.GetExecutedButNotDiscoveredScripts()]);
            },
            cancellationToken);

    private UpgradeEngine Engine() =>
        DeployChanges.To
            .PostgresqlDatabase(new PostgresqlConnectionManager(dataSource))
            .WithScriptsEmbeddedInAssembly(Assembly.GetExecutingAssembly(), name => name.StartsWith(ResourcePrefix, StringComparison.Ordinal))
            .JournalToPostgresqlTable("public", "schema_versions")
            .WithTransactionPerScript()
            .LogTo(new UpgradeLog(logger))
            .Build();

    /// <summary>Sends DbUp's messages to the host's logger.</summary>
    private sealed class UpgradeLog(ILogger logger) : IUpgradeLog
    {
        public void LogTrace(string format, params object[] args) => Write(LogLevel.Trace, null, format, args);

        public void LogDebug(string format, params object[] args) => Write(LogLevel.Debug, null, format, args);

        public void LogInformation(string format, params object[] args) => Write(LogLevel.Debug, null, format, args);

        public void LogWarning(string format, params object[] args) => Write(LogLevel.Warning, null, format, args);

        public void LogError(string format, params object[] args) => Write(LogLevel.Error, null, format, args);

        public void LogError(Exception ex, string format, params object[] args) => Write(LogLevel.Error, ex, format, args);

        private void Write(LogLevel level, Exception? ex, string format, object[] args)
        {
            if (logger.IsEnabled(level))
            {
                logger.Log(level, ex, "DbUp: {Message}", string.Format(CultureInfo.InvariantCulture, format, args));
            }
        }
    }
}
