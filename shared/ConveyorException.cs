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
/// A runtime may not do what it asked: <see cref="Access"/> says why (unknown, wrong token, or offline while it asked to
/// claim). Nothing changed.
/// </summary>
public sealed class RuntimeAccessException(string runtimeId, Presence.RuntimeAccess access)
    : ConveyorException(access switch
    {
        Presence.RuntimeAccess.NotFound => $"No runtime '{runtimeId}'",
        Presence.RuntimeAccess.Unauthorized => "The bearer token is not this runtime's token",
        _ => $"Runtime '{runtimeId}' is offline: it must beat (POST /api/runtimes/{runtimeId}/heartbeat) before it claims jobs",
    })
{
    /// <summary>The runtime's id as given.</summary>
    public string RuntimeId { get; } = runtimeId;

    /// <summary>NotFound, Unauthorized or Offline.</summary>
    public Presence.RuntimeAccess Access { get; } = access;
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
