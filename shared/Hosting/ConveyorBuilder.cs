using Conveyor.Queue;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Conveyor.Hosting;

/// <summary>Returned by <c>AddConveyor</c>; registers job handlers.</summary>
public sealed class ConveyorBuilder(IServiceCollection services)
{
    /// <summary>The service collection Conveyor was added to.</summary>
    public IServiceCollection Services { get; } = services;

    /// <summary>Runs jobs of <paramref name="type"/> with <typeparamref name="THandler"/>, resolved per job in its own scope.</summary>
    public ConveyorBuilder AddJobHandler<THandler>(string type)
        where THandler : class, IJobHandler
    {
        JobValidation.QueueName(type, nameof(type));
        Services.AddKeyedScoped<IJobHandler, THandler>(type);
        return this;
    }

    /// <summary>
    /// Posts wake-ups with the sender <paramref name="create"/> makes when a queue's backlog outgrows its live consumers
    /// (see <see cref="WakeOptions"/>). Without it, none are posted.
    /// </summary>
    public ConveyorBuilder UseWakeSender(Func<IServiceProvider, IWakeSender> create)
    {
        Services.Replace(ServiceDescriptor.Singleton(create));
        return this;
    }
}
