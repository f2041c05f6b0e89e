using Conveyor.Presence;
using Conveyor.Storage;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Conveyor.Hosting;

/// <summary>Registers runtime presence: PostgreSQL, schema migrations, the registry, heartbeats, flusher and sweeper.</summary>
internal static class PresenceServiceCollectionExtensions
{
    public static IServiceCollection AddConveyorPresence(this IServiceCollection services, IConfiguration configuration)
    {
        ServiceCollectionExtensions.Bind<PostgresOptions>(services, configuration, PostgresOptions.Section);
        ServiceCollectionExtensions.Bind<PresenceOptions>(services, configuration, PresenceOptions.Section);
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<PresenceOptions>>(new PresenceOptionsValidator(configuration)));

        // A host (or a test) that registered its own data source keeps it.
        services.TryAddSingleton(sp => PostgresDataSource.Create(
            sp.GetRequiredService<IOptions<PostgresOptions>>().Value, sp.GetService<ILoggerFactory>(), sp.GetRequiredService<Azure.Core.TokenCredential>));
        services.TryAddSingleton<SchemaMigrator>();
        services.TryAddSingleton<RuntimeRegistry>();
        services.TryAddSingleton<FlipWriter>();
        services.TryAddSingleton(sp => new HeartbeatService(
            sp.GetRequiredService<RedisConnection>(), sp.GetRequiredService<IOptions<PresenceOptions>>(), sp.GetRequiredService<FlipWriter>(), sp.GetRequiredService<NpgsqlDataSource>()));
        services.TryAddSingleton<HeartbeatFlusher>();
        services.TryAddSingleton<StaleSweeper>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, SchemaCheck>());
        return services;
    }
}

/// <summary>
/// At start-up: applies pending migrations (when <see cref="PostgresOptions.MigrateOnStart"/>), then checks that
/// the database has exactly this build's schema, and logs an error naming the difference otherwise.
/// </summary>
internal sealed class SchemaCheck(SchemaMigrator migrator, IOptions<PostgresOptions> options, ILogger<SchemaCheck> logger) : IHostedService
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(Limit);
            if (options.Value.MigrateOnStart)
            {
                await migrator.MigrateAsync(timeout.Token).WaitAsync(timeout.Token);
            }
            var status = await migrator.CheckAsync(timeout.Token).WaitAsync(timeout.Token);
            if (status.Pending.Count > 0)
            {
                logger.LogError(
                    "Conveyor's PostgreSQL schema is behind this build: migrations {Pending} are not applied. Presence will fail until they are (set Conveyor:Postgres:MigrateOnStart=true or run SchemaMigrator.MigrateAsync)",
                    string.Join(", ", status.Pending));
            }
            if (status.Unknown.Count > 0)
            {
                logger.LogWarning(
                    "Conveyor's PostgreSQL schema is ahead of this build: migrations {Unknown} were applied by a newer build",
                    string.Join(", ", status.Unknown));
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            logger.LogError("Conveyor could not check the PostgreSQL schema within {Limit}", Limit);
        }
        catch (Exception ex) when (ex is Npgsql.NpgsqlException or InvalidOperationException or TimeoutException)
        {
            logger.LogError(ex, "Conveyor could not migrate or check the PostgreSQL schema; presence will fail until it can");
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
