using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Conveyor.Tests.Infra;

/// <summary>
/// Evaluates the small part of the ARM template expression language the tests need to ask "what would this
/// template do with these parameters" without Azure: literals, <c>parameters()</c>, <c>variables()</c>, property
/// and index access, <c>if/not/and/or/equals/empty</c> integer <c>add/sub/mul/div/min/max</c>, <c>string</c> and <c>format</c>. Anything else
/// (reference(), uniqueString(), ...) throws <see cref="NotSupportedException"/> naming it, so a test never
/// silently evaluates something it cannot. <c>if</c> evaluates only the branch it takes, as ARM does.
/// </summary>
public sealed class TemplateScope
{
    private readonly JsonElement _template;
    private readonly Func<string, (bool Given, JsonNode? Value)> _given;

    /// <summary>The root template's scope, with <paramref name="parameters"/> given (the rest take their defaults).</summary>
    public TemplateScope(JsonElement template, IReadOnlyDictionary<string, JsonNode?>? parameters = null)
        : this(template, name => parameters is not null && parameters.TryGetValue(name, out var value) ? (true, value) : (false, null))
    {
    }

    private TemplateScope(JsonElement template, Func<string, (bool Given, JsonNode? Value)> given)
    {
        _template = template;
        _given = given;
    }

    /// <summary>A parameter's value: the one given, else its default, evaluated.</summary>
    public JsonNode? Parameter(string name)
    {
        var (given, value) = _given(name);
        if (given)
        {
            return value;
        }
        var declaration = _template.GetProperty("parameters").GetProperty(name);
        return declaration.TryGetProperty("defaultValue", out var defaultValue)
            ? Evaluate(defaultValue)
            : throw new InvalidOperationException($"parameter {name} has no value and no default");
    }

    public JsonNode? Variable(string name) => Evaluate(_template.GetProperty("variables").GetProperty(name));

    /// <summary>
    /// The scope inside the module (nested deployment) named <paramref name="deploymentName"/>: its parameters are
    /// the values this scope passes it, evaluated here when asked for.
    /// </summary>
    public TemplateScope Module(string deploymentName)
    {
        var properties = Deployment(deploymentName).GetProperty("properties");
        var passed = properties.GetProperty("parameters");
        return new TemplateScope(properties.GetProperty("template"), name =>
            passed.TryGetProperty(name, out var parameter) ? (true, Evaluate(parameter.GetProperty("value"))) : (false, null));
    }

    /// <summary>This scope with some parameters replaced, e.g. values a module would get from other modules' outputs.</summary>
    public TemplateScope With(Dictionary<string, JsonNode?> overrides) =>
        new(_template, name => overrides.TryGetValue(name, out var value) ? (true, value) : _given(name));

    /// <summary>The nested deployment (module) named <paramref name="deploymentName"/> in this scope's template.</summary>
    public JsonElement Deployment(string deploymentName) =>
        ResourcesOf(_template).Single(r =>
            r.GetProperty("type").GetString() == "Microsoft.Resources/deployments"
            && r.TryGetProperty("name", out var n) && n.GetString() == deploymentName);

    /// <summary>The resource of <paramref name="type"/> in this scope's template (not in nested ones).</summary>
    public JsonElement Resource(string type) =>
        ResourcesOf(_template).Single(r => r.GetProperty("type").GetString() == type && !r.TryGetProperty("existing", out _));

    /// <summary>A template's resources: an array, or (languageVersion 2.0, symbolic names) an object's values.</summary>
    public static IEnumerable<JsonElement> ResourcesOf(JsonElement template)
    {
        var resources = template.GetProperty("resources");
        return resources.ValueKind == JsonValueKind.Array ? resources.EnumerateArray() : resources.EnumerateObject().Select(p => p.Value);
    }

    /// <summary>Evaluates a template value: expressions ("[...]") in strings, recursively through objects and arrays.</summary>
    public JsonNode? Evaluate(JsonNode? value) => value switch
    {
        JsonValue v when v.TryGetValue<string>(out var text) && text.StartsWith('[') && !text.StartsWith("[[", StringComparison.Ordinal) && text.EndsWith(']') =>
            new ArmExpressionParser(text[1..^1]).Parse().Evaluate(this),
        JsonObject o => new JsonObject(o.Select(p => KeyValuePair.Create(p.Key, Evaluate(p.Value)))),
        JsonArray a => new JsonArray([.. a.Select(Evaluate)]),
        _ => value?.DeepClone(),
    };

    public JsonNode? Evaluate(JsonElement element) => Evaluate(JsonNode.Parse(element.GetRawText()));
}

internal abstract record ArmNode
{
    public abstract JsonNode? Evaluate(TemplateScope scope);
}

internal sealed record ArmLiteral(JsonNode? Value) : ArmNode
{
    public override JsonNode? Evaluate(TemplateScope scope) => Value?.DeepClone();
}

internal sealed record ArmMember(ArmNode Target, string Name) : ArmNode
{
    public override JsonNode? Evaluate(TemplateScope scope) =>
        Target.Evaluate(scope) is JsonObject o && o.TryGetPropertyValue(Name, out var v)
            ? v?.DeepClone()
            : throw new InvalidOperationException($"no property {Name}");
}

internal sealed record ArmIndex(ArmNode Target, ArmNode Index) : ArmNode
{
    public override JsonNode? Evaluate(TemplateScope scope)
    {
        var target = Target.Evaluate(scope);
        var index = Index.Evaluate(scope);
        return (target, index) switch
        {
            (JsonObject o, JsonValue key) when o.TryGetPropertyValue(key.GetValue<string>(), out var v) => v?.DeepClone(),
            (JsonArray a, JsonValue i) => a[i.GetValue<int>()]?.DeepClone(),
            _ => throw new InvalidOperationException($"cannot index {target?.ToJsonString()} with {index?.ToJsonString()}"),
        };
    }
}

internal sealed record ArmCall(string Name, IReadOnlyList<ArmNode> Arguments) : ArmNode
{
    public override JsonNode? Evaluate(TemplateScope scope)
    {
        if (Name == "if")
        {
            return Bool(Arguments[0], scope) ? Arguments[1].Evaluate(scope) : Arguments[2].Evaluate(scope);
        }
        var args = Arguments.Select(a => a.Evaluate(scope)).ToList();
        return Name switch
        {
            "parameters" => scope.Parameter(args[0]!.GetValue<string>()),
            "variables" => scope.Variable(args[0]!.GetValue<string>()),
            "true" => JsonValue.Create(true),
            "false" => JsonValue.Create(false),
            "null" => null,
            "not" => JsonValue.Create(!args[0]!.GetValue<bool>()),
            "and" => JsonValue.Create(args.All(a => a!.GetValue<bool>())),
            "or" => JsonValue.Create(args.Any(a => a!.GetValue<bool>())),
            "equals" => JsonValue.Create(JsonNode.DeepEquals(args[0], args[1])),
            "empty" => JsonValue.Create(args[0] switch
            {
                null => true,
                JsonValue v when v.TryGetValue<string>(out var s) => s.Length == 0,
                JsonArray a => a.Count == 0,
                JsonObject o => o.Count == 0,
                _ => false,
            }),
            "add" => JsonValue.Create(Long(args[0]) + Long(args[1])),
            "sub" => JsonValue.Create(Long(args[0]) - Long(args[1])),
            "mul" => JsonValue.Create(Long(args[0]) * Long(args[1])),
            "div" => JsonValue.Create(Long(args[0]) / Long(args[1])),
            "min" => JsonValue.Create(args.Min(Long)),
            "max" => JsonValue.Create(args.Max(Long)),
            "string" => JsonValue.Create(Text(args[0])),
            "format" => JsonValue.Create(string.Format(CultureInfo.InvariantCulture, args[0]!.GetValue<string>(), [.. args.Skip(1).Select(Text)])),
            _ => throw new NotSupportedException($"ARM function {Name}() is not evaluated by the tests"),
        };
    }

    private static bool Bool(ArmNode node, TemplateScope scope) => node.Evaluate(scope)!.GetValue<bool>();

    private static long Long(JsonNode? node) => node switch
    {
        JsonValue v when v.TryGetValue<long>(out var l) => l,
        JsonValue v when v.TryGetValue<int>(out var i) => i,
        _ => throw new InvalidOperationException($"not an integer: {node?.ToJsonString()}"),
    };

    private static string Text(JsonNode? node) => node is JsonValue v && v.TryGetValue<string>(out var s) ? s : node?.ToJsonString() ?? "";
}

/// <summary>Recursive-descent parser for one ARM expression (the text between the outer brackets).</summary>
internal sealed class ArmExpressionParser(string text)
{
    private int _position;

    public ArmNode Parse()
    {
        var node = Expression();
        SkipSpaces();
        return _position == text.Length ? node : throw Error("trailing text");
    }

    private ArmNode Expression()
    {
        SkipSpaces();
        ArmNode node;
        var c = text[_position];
        if (c == '\'')
        {
            node = new ArmLiteral(JsonValue.Create(StringLiteral()));
        }
        else if (char.IsDigit(c) || c == '-')
        {
            var start = _position++;
            while (_position < text.Length && char.IsDigit(text[_position]))
            {
                _position++;
            }
            node = new ArmLiteral(JsonValue.Create(long.Parse(text[start.._position], CultureInfo.InvariantCulture)));
        }
        else
        {
            var name = Identifier();
            Expect('(');
            var args = new List<ArmNode>();
            SkipSpaces();
            if (text[_position] != ')')
            {
                args.Add(Expression());
                SkipSpaces();
                while (text[_position] == ',')
                {
                    _position++;
                    args.Add(Expression());
                    SkipSpaces();
                }
            }
            Expect(')');
            node = new ArmCall(name, args);
        }
        while (_position < text.Length && text[_position] is '.' or '[')
        {
            if (text[_position++] == '.')
            {
                node = new ArmMember(node, Identifier());
            }
            else
            {
                node = new ArmIndex(node, Expression());
                Expect(']');
            }
        }
        return node;
    }

    private string StringLiteral()
    {
        var value = new StringBuilder();
        _position++;
        while (true)
        {
            var c = text[_position++];
            if (c != '\'')
            {
                value.Append(c);
            }
            else if (_position < text.Length && text[_position] == '\'')
            {
                value.Append('\'');
                _position++;
            }
            else
            {
                return value.ToString();
            }
        }
    }

    private string Identifier()
    {
        var start = _position;
        while (_position < text.Length && (char.IsLetterOrDigit(text[_position]) || text[_position] is '_' or '$'))
        {
            _position++;
        }
        return _position > start ? text[start.._position] : throw Error("identifier expected");
    }

    private void Expect(char c)
    {
        SkipSpaces();
        if (_position >= text.Length || text[_position] != c)
        {
            throw Error($"'{c}' expected");
        }
        _position++;
    }

    private void SkipSpaces()
    {
        while (_position < text.Length && text[_position] == ' ')
        {
            _position++;
        }
    }

    private FormatException Error(string what) => new($"{what} at {_position} in [{text}]");
}
