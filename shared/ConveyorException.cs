namespace Conveyor;

/// <summary>Base type of the errors Conveyor raises on purpose.</summary>
public abstract class ConveyorException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Input was rejected before anything was written. <see cref="Field"/> names the offending field
/// (the JSON/API name, e.g. <c>payload</c>, <c>jobs[3].type</c>).
/// </summary>
public sealed class ConveyorValidationException(string field, string message)
    : ConveyorException($"{field}: {message}")
{
    /// <summary>The field that failed validation.</summary>
    public string Field { get; } = field;

    /// <summary>What is wrong with it, without the field name.</summary>
    public string Reason { get; } = message;
}

/// <summary>
/// A job was sent to a queue the registry does not list while the registry already holds
/// <see cref="MaxQueues"/> queues (<c>Conveyor:Queue:MaxQueues</c>). Nothing was written.
/// </summary>
public sealed class ConveyorQueueLimitException(string queue, int maxQueues)
    : ConveyorException($"Queue '{queue}' is new and the registry already holds {maxQueues} queues (Conveyor:Queue:MaxQueues); queues empty for Conveyor:Custodian:EmptyQueueRetention are dropped")
{
    /// <summary>The queue that could not be created.</summary>
    public string Queue { get; } = queue;

    /// <summary>The configured bound.</summary>
    public int MaxQueues { get; } = maxQueues;
}
