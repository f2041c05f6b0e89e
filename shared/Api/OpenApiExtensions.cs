using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.OpenApi;

namespace Conveyor.Api;

/// <summary>
/// Route metadata the OpenAPI contract is built from (<see cref="OpenApiContract"/>): what a route answers besides its
/// typed results, what it reads itself (bodies, query values), how it is secured. The routes declare it next to their
/// handlers, so the document cannot drift from the route table.
/// </summary>
internal static class OpenApiExtensions
{
    /// <summary>
    /// The problems the route answers. Every keyed route also answers 401 <c>unauthorized</c> without saying so:
    /// the contract derives that from the route not being anonymous.
    /// </summary>
    public static TBuilder Answers<TBuilder>(this TBuilder builder, params ProblemType[] problems)
        where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata([.. problems]);

    /// <summary>
    /// A JSON request body of <typeparamref name="T"/>, read by the handler itself (to answer with problem details), with
    /// the problems any body can earn: malformed JSON, a wrong media type, too large.
    /// </summary>
    public static RouteHandlerBuilder WithJsonBody<T>(this RouteHandlerBuilder builder) =>
        builder.WithMetadata(new JsonBody(typeof(T)))
            .Answers(Problems.Catalog.MalformedJson, Problems.Catalog.UnsupportedMediaType, Problems.Catalog.PayloadTooLarge);

    /// <summary>A query parameter the handler reads from <c>HttpRequest.Query</c> (invalid values answer 400 <c>validation</c>).</summary>
    public static RouteHandlerBuilder WithQueryParameter(this RouteHandlerBuilder builder, string name, string description, OpenApiSchema schema) =>
        builder.WithMetadata(new QueryParameter(name, description, schema));

    /// <summary>The route also needs <c>Authorization: Bearer &lt;runtime token&gt;</c>, checked by the handler (401 <c>unauthorized</c>).</summary>
    public static RouteHandlerBuilder RequiresRuntimeToken(this RouteHandlerBuilder builder) =>
        builder.WithMetadata(RuntimeToken.Instance).Answers(Problems.Catalog.Unauthorized);

    /// <summary>An integer query parameter's schema.</summary>
    public static OpenApiSchema Integer(int minimum, int maximum, int @default) => new()
    {
        Type = JsonSchemaType.Integer,
        Format = "int32",
        Minimum = minimum.ToString(System.Globalization.CultureInfo.InvariantCulture),
        Maximum = maximum.ToString(System.Globalization.CultureInfo.InvariantCulture),
        Default = JsonValue.Create(@default),
    };

    /// <summary>
    /// Marks a route whose handler reads a JSON body of <see cref="RequestType"/>. It names no content type: with one,
    /// routing would answer any other with a bare 415 before the handler could answer its problem details. Without one,
    /// routing ignores it, and ApiExplorer still describes the body (as JSON).
    /// </summary>
    internal sealed class JsonBody(Type type) : IAcceptsMetadata
    {
        public Type RequestType { get; } = type;

        public IReadOnlyList<string> ContentTypes { get; } = [];

        public bool IsOptional => false;
    }

    /// <summary>Marks a query parameter a handler reads itself.</summary>
    internal sealed record QueryParameter(string Name, string Description, OpenApiSchema Schema);

    /// <summary>Marks a route that needs a runtime's bearer token besides the key.</summary>
    internal sealed class RuntimeToken
    {
        public static readonly RuntimeToken Instance = new();

        private RuntimeToken()
        {
        }
    }
}
