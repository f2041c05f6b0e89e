// Not a mirrored type: the one exception every stand-in member throws instead of doing anything.
namespace Microsoft.Azure.Functions.Worker;

internal static class StandIn
{
    internal static NotSupportedException NotDeployable()
        => new("stand-in: builds nothing deployable");
}
