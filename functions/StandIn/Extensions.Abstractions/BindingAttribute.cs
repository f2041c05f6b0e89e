// Stand-in for package Microsoft.Azure.Functions.Worker.Extensions.Abstractions 1.3.0.
// Mirrors Azure/azure-functions-dotnet-worker extensions/Worker.Extensions.Abstractions/src/BindingAttribute.cs.
// Declarations only: see ../README.md.
namespace Microsoft.Azure.Functions.Worker.Extensions.Abstractions;

[AttributeUsage(AttributeTargets.Method)]
public abstract class BindingAttribute : Attribute
{
    public BindingAttribute()
    {
    }
}
