// Stand-in for package Microsoft.Azure.Functions.Worker.Core 2.52.0.
// Mirrors Azure/azure-functions-dotnet-worker src/DotNetWorker.Core/Context/Features/IInvocationFeatures.cs.
// Declarations only: see ../README.md.
namespace Microsoft.Azure.Functions.Worker;

public interface IInvocationFeatures : IEnumerable<KeyValuePair<Type, object>>
{
    void Set<T>(T instance);

    T? Get<T>();
}
