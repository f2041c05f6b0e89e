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
