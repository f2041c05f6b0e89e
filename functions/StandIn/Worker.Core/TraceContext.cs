// Stand-in for package Microsoft.Azure.Functions.Worker.Core 2.52.0.
// Mirrors Azure/azure-functions-dotnet-worker src/DotNetWorker.Core/Context/TraceContext.cs.
// Declarations only: see ../README.md.
using System.Collections.Immutable;

namespace Microsoft.Azure.Functions.Worker;

public abstract class TraceContext
{
    public abstract string TraceParent { get; }

    public abstract string TraceState { get; }

    public virtual IReadOnlyDictionary<string, string> Attributes => ImmutableDictionary<string, string>.Empty;

    public virtual IReadOnlyDictionary<string, string> Baggage => ImmutableDictionary<string, string>.Empty;
}
