// Stand-in for package Microsoft.Azure.Functions.Worker.Core 2.52.0.
// Mirrors Azure/azure-functions-dotnet-worker src/DotNetWorker.Core/Definition/FunctionDefinition.cs.
// Declarations only: see ../README.md.
using System.Collections.Immutable;

namespace Microsoft.Azure.Functions.Worker;

public abstract class FunctionDefinition
{
    public abstract ImmutableArray<FunctionParameter> Parameters { get; }

    public abstract string PathToAssembly { get; }

    public abstract string EntryPoint { get; }

    public abstract string Id { get; }

    public abstract string Name { get; }

    public abstract IImmutableDictionary<string, BindingMetadata> InputBindings { get; }

    public abstract IImmutableDictionary<string, BindingMetadata> OutputBindings { get; }
}
