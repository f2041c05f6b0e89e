// Stand-in for package Microsoft.Azure.Functions.Worker.Core 2.52.0.
// Mirrors the public enum Microsoft.Azure.Functions.Worker.BindingDirection of Azure/azure-functions-dotnet-worker src/DotNetWorker.Core
// (checked against the 2.52.0 package assembly). Declarations only: see ../README.md.
namespace Microsoft.Azure.Functions.Worker;

public enum BindingDirection
{
    In = 0,
    Out = 1,
}
