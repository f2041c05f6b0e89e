// Stand-in for package Microsoft.Azure.Functions.Worker.Core 2.52.0.
// Mirrors Azure/azure-functions-dotnet-worker src/DotNetWorker.Core/Definition/BindingMetadata.cs.
// Declarations only: see ../README.md.
namespace Microsoft.Azure.Functions.Worker;

public abstract class BindingMetadata
{
    public abstract string Name { get; }

    public abstract string Type { get; }

    public abstract BindingDirection Direction { get; }
}
