namespace Conveyor.Queue;

/// <summary>
/// Redis did not confirm an enqueue (a timeout or a lost connection): the jobs may or may not be stored, since a
/// script whose reply was lost may still have run. <see cref="Ids"/> holds every job's id in request order, the
/// generated ones included: enqueue again with these ids and nothing is added twice.
/// </summary>
public sealed class EnqueueUnconfirmedException(string queue, IReadOnlyList<string> ids, Exception inner)
    : ConveyorException($"Redis did not confirm the enqueue of {ids.Count} job(s) to '{queue}'; they may be stored. Retry with the same ids.", inner)
{
    /// <summary>The queue the jobs were sent to.</summary>
    public string Queue { get; } = queue;

    /// <summary>The id of every job of the request, in request order.</summary>
    public IReadOnlyList<string> Ids { get; } = ids;
}
