using Azure.Core;
using Conveyor.Api;
using Conveyor.Dashboard;
using Conveyor.Presence;
using Conveyor.Queue;
using Conveyor.Storage;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Conveyor.Hosting;

/// <summary>Registers Conveyor: options bound from <c>Conveyor:*</c> and validated at start-up, the engine's services, start-up checks.</summary>
public static class ServiceCollectionExtensions
{
    /// <summary>Adds everything Conveyor needs. Both hosts (Functions and the self-host) call exactly this.</summary>
    public static ConveyorBuilder AddConveyor(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        Bind<RedisOptions>(services, configuration, RedisOptions.Section);
        Bind<QueueOptions>(services, configuration, QueueOptions.Section);
        Bind<ProcessorOptions>(services, configuration, ProcessorOptions.Section);
        Bind<SchedulerOptions>(services, configuration, SchedulerOptions.Section);
        Bind<CustodianOptions>(services, configuration, CustodianOptions.Section);
        Bind<RuntimeOptions>(services, configuration, RuntimeOptions.Section);
        services.AddSingleton<IValidateOptions<CustodianOptions>>(
            sp => new CustodianOptionsValidator(sp.GetRequiredService<IOptions<ProcessorOptions>>(), configuration));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<ProcessorOptions>, ProcessorOptionsValidator>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<RuntimeOptions>, RuntimeOptionsValidator>());

        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<RedisOptions>, RedisOptionsValidator>());
        // A factory: built (and asked for tokens) only when something signs in with Microsoft Entra ID.
        services.TryAddSingleton<TokenCredential>(_ => EntraIdentity.CreateCredential(configuration));
        services.TryAddSingleton(TimeProvider.System);

        services.TryAddSingleton<RedisConnection>();
        services.TryAddSingleton<QueueAdmin>();
        services.TryAddSingleton<Producer>();
        services.TryAddSingleton<Processor>();
        services.TryAddSingleton<Scheduler>();
        services.TryAddSingleton<Custodian>();
        services.TryAddSingleton<RuntimeClaims>();
        Bind<WakeOptions>(services, configuration, WakeOptions.Section);
        services.TryAddSingleton<IWakeSender, NoWakeSender>();
        services.TryAddSingleton<WakeGate>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, StartupChecks>());
        services.AddSingleton(new MaintenanceTask("Scheduler", Schedules.Scheduler,
            async (sp, ct) => await sp.GetRequiredService<Scheduler>().RunOnceAsync(ct)));
        services.AddSingleton(new MaintenanceTask("Custodian", Schedules.Custodian,
            async (sp, ct) => await sp.GetRequiredService<Custodian>().RunOnceAsync(ct)));
        Bind<ApiOptions>(services, configuration, ApiOptions.Section);
        services.AddConveyorDashboard(configuration);
        services.AddConveyorPresence(configuration);
        services.AddSingleton(new MaintenanceTask("HeartbeatFlush", Schedules.HeartbeatFlush,
            async (sp, ct) => await sp.GetRequiredService<HeartbeatFlusher>().RunOnceAsync(ct)));
        services.AddSingleton(new MaintenanceTask("StaleSweeper", Schedules.StaleSweeper,
            async (sp, ct) => await sp.GetRequiredService<StaleSweeper>().RunOnceAsync(ct)));
        return new ConveyorBuilder(services);
    }

    internal static void Bind<T>(IServiceCollection services, IConfiguration configuration, string section)
        where T : class
    {
        services.AddOptions<T>().Bind(configuration.GetSection(section)).ValidateDataAnnotations().ValidateOnStart();
    }
}

/// <summary>
/// A consumer must be able to heartbeat several times within the custodian's timeout, and the custodian must visit
/// more often than ConsumerTimeout − HeartbeatInterval: a longer gap between its visits reads as a stall (see watch.lua),
/// which gives every consumer a fresh timeout, so with a slower schedule no consumer would ever be recovered.
/// </summary>
internal sealed class CustodianOptionsValidator(IOptions<ProcessorOptions> processor, IConfiguration configuration) : IValidateOptions<CustodianOptions>
{
    public ValidateOptionsResult Validate(string? name, CustodianOptions options)
    {
        var heartbeat = processor.Value.HeartbeatInterval;
        var failures = new List<string>();
        if (options.ConsumerTimeout < heartbeat * 3)
        {
            failures.Add(
                $"Conveyor:Custodian:ConsumerTimeout ({options.ConsumerTimeout}) must be at least 3 × Conveyor:Processor:HeartbeatInterval ({heartbeat}), or live consumers look dead");
        }
        else
        {
            Schedules.CheckGap(
                configuration, "Custodian", Schedules.Custodian, options.ConsumerTimeout - heartbeat,
                "Conveyor:Custodian:ConsumerTimeout − Conveyor:Processor:HeartbeatInterval",
                "(a longer gap between its visits reads as a Redis stall, and no consumer would ever be recovered): run the custodian more often or raise ConsumerTimeout",
                failures);
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}

/// <summary>Queues left to remote runtimes must be valid names, and not also named by this app's processor.</summary>
internal sealed class RuntimeOptionsValidator(IOptions<ProcessorOptions> processor) : IValidateOptions<RuntimeOptions>
{
    public ValidateOptionsResult Validate(string? name, RuntimeOptions options)
    {
        var failures = ProcessorOptionsValidator.QueueList(options.Queues, "Conveyor:Runtimes:Queues", allowAll: false);
        foreach (var queue in options.Queues.Intersect(processor.Value.Queues, StringComparer.Ordinal))
        {
            failures.Add(
                $"Conveyor:Runtimes:Queues lists '{queue}', which Conveyor:Processor:Queues names: a queue left to remote runtimes is not served in-app, a named one is; remove it from one of the two lists");
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}

internal sealed class ProcessorOptionsValidator : IValidateOptions<ProcessorOptions>
{
    public ValidateOptionsResult Validate(string? name, ProcessorOptions options)
    {
        var failures = QueueList(options.Queues, "Conveyor:Processor:Queues", allowAll: true);
        if (options.IdleTimeout < options.IdlePollInterval)
        {
            failures.Add(
                $"Conveyor:Processor:IdleTimeout ({options.IdleTimeout}) must be at least Conveyor:Processor:IdlePollInterval ({options.IdlePollInterval}): a session must look for work at least once before it calls itself idle");
        }
        if (options.IdleTimeout > options.SessionDuration)
        {
            failures.Add(
                $"Conveyor:Processor:IdleTimeout ({options.IdleTimeout}) must not exceed Conveyor:Processor:SessionDuration ({options.SessionDuration})");
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    /// <summary>What is wrong with a configured list of queue names: invalid names, and names listed twice.</summary>
    internal static List<string> QueueList(string[] queues, string setting, bool allowAll)
    {
        var failures = new List<string>();
        for (var i = 0; i < queues.Length; i++)
        {
            if (allowAll && queues[i] == ProcessorOptions.AllQueues)
            {
                continue;
            }
            try
            {
                JobValidation.QueueName(queues[i], $"{setting}:{i}");
            }
            catch (ConveyorValidationException ex)
            {
                failures.Add(ex.Message);
            }
        }
        if (queues.Distinct(StringComparer.Ordinal).Count() != queues.Length)
        {
            failures.Add($"{setting} lists a queue twice");
        }
        return failures;
    }
}
