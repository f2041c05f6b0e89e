// Stand-in for package Microsoft.Azure.Functions.Worker.Core 2.52.0.
// Mirrors Azure/azure-functions-dotnet-worker src/DotNetWorker.Core/Context/BindingContext.cs.
// Declarations only: see ../README.md.
namespace Microsoft.Azure.Functions.Worker;

public abstract class BindingContext
{
    public abstract IReadOnlyDictionary<string, object?> BindingData { get; }
}
