// Stand-in for package Microsoft.Azure.Functions.Worker.Extensions.Storage.Queues 5.5.5.
// Mirrors Azure/azure-functions-dotnet-worker extensions/Worker.Extensions.Storage.Queues/src/QueueTriggerAttribute.cs.
// The real type also carries [InputConverter] and [ConverterFallbackBehavior], which only the worker runtime reads;
// they are left out. Declarations only: see ../README.md.
using Microsoft.Azure.Functions.Worker.Extensions.Abstractions;

namespace Microsoft.Azure.Functions.Worker;

public sealed class QueueTriggerAttribute : TriggerBindingAttribute
{
    public QueueTriggerAttribute(string queueName)
    {
        QueueName = queueName;
    }

    public string QueueName { get; }

    public string? Connection { get; set; }
}
