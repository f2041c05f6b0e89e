// Stand-in for package Microsoft.Azure.Functions.Worker.Core 2.52.0.
// Mirrors Azure/azure-functions-dotnet-worker src/DotNetWorker.Core/Definition/FunctionParameter.cs.
// Declarations only: see ../README.md.
using System.Collections.Immutable;

namespace Microsoft.Azure.Functions.Worker;

public class FunctionParameter
{
    public FunctionParameter(string name, Type type)
        : this(name, type, ImmutableDictionary<string, object>.Empty)
    {
    }

    public FunctionParameter(string name, Type type, bool hasDefaultValue, object? defaultValue)
        : this(name, type, hasDefaultValue, defaultValue, ImmutableDictionary<string, object>.Empty)
    {
    }

    public FunctionParameter(string name, Type type, IReadOnlyDictionary<string, object> properties)
        : this(name, type, false, null, properties)
    {
    }

    public FunctionParameter(string name, Type type, bool hasDefaultValue, object? defaultValue, IReadOnlyDictionary<string, object> properties)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(type);
        ArgumentNullException.ThrowIfNull(properties);
        Name = name;
        Type = type;
        HasDefaultValue = hasDefaultValue;
        DefaultValue = defaultValue;
        IsReferenceOrNullableType = !type.IsValueType || Nullable.GetUnderlyingType(type) is not null;
        Properties = properties;
    }

    public string Name { get; }

    public Type Type { get; }

    public bool HasDefaultValue { get; }

    public bool IsReferenceOrNullableType { get; }

    public object? DefaultValue { get; }

    public IReadOnlyDictionary<string, object> Properties { get; }
}
