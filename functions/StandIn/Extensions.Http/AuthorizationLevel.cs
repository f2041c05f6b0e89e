// Stand-in for package Microsoft.Azure.Functions.Worker.Extensions.Http 3.3.0.
// Mirrors Azure/azure-functions-dotnet-worker extensions/Worker.Extensions.Http/src/AuthorizationLevel.cs.
// Declarations only: see ../README.md.
namespace Microsoft.Azure.Functions.Worker;

public enum AuthorizationLevel
{
    Anonymous = 0,
    User = 1,
    Function = 2,
    System = 3,
    Admin = 4,
}
