// Stand-in for package Microsoft.Azure.Functions.Worker.Extensions.Abstractions 1.3.0.
// Mirrors Azure/azure-functions-dotnet-worker extensions/Worker.Extensions.Abstractions/src/FunctionAttribute.cs.
// Declarations only: see ../README.md.
namespace Microsoft.Azure.Functions.Worker;

[AttributeUsage(AttributeTargets.Method)]
public class FunctionAttribute : Attribute
{
    public FunctionAttribute(string name)
    {
        Name = name;
    }

    public string Name { get; }
}
