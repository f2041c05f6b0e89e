// Stand-in for package Microsoft.Azure.Functions.Worker.Core 2.52.0.
// Mirrors Azure/azure-functions-dotnet-worker src/DotNetWorker.Core/Pipeline/FunctionExecutionDelegate.cs.
// Declarations only: see ../README.md.
namespace Microsoft.Azure.Functions.Worker.Middleware;

public delegate Task FunctionExecutionDelegate(FunctionContext context);
