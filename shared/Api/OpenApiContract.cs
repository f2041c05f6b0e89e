using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Conveyor.Hosting;
using Conveyor.Queue;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Microsoft.OpenApi;

namespace Conveyor.Api;

/// <summary>
/// The public API's OpenAPI 3.1 document, served by both hosts at <c>GET /api/openapi.json</c>. It is built once per
/// process from the routes of <see cref="ConveyorApi.MapConveyorApi"/> (their typed results and the metadata of
/// <see cref="OpenApiExtensions"/>) in an app of its own that is never started, and it depends on no configuration: the
/// Functions app and the self-host serve the same bytes.
/// </summary>
public static class OpenApiContract
{
    public const string Route = "/api/openapi.json";

    /// <summary>Where every route lives; the document's one server, relative to the host that serves it.</summary>
    public const string PathBase = "/api";

    public const string HealthTag = "Health";
    public const string QueuesTag = "Queues";
    public const string RuntimesTag = "Runtimes";

    internal const string KeyHeaderScheme = "functionKey";
    internal const string KeyQueryScheme = "functionKeyQuery";
    internal const string RuntimeTokenScheme = "runtimeToken";
    internal const string ProblemSchema = "Problem";
    private const string ProblemJson = "application/problem+json";
    private const string Json = "application/json";

    private static readonly Lazy<Task<byte[]>> Document = new(BuildAsync);

    /// <summary>
    /// Maps <c>GET /api/openapi.json</c>. Anonymous, like health: the document holds no secret (it is the same one this
    /// repository builds), and tools that import it by URL (client generators, API gateways) cannot send a key, or would
    /// record it with the URL.
    /// </summary>
    public static IEndpointRouteBuilder MapOpenApiContract(this IEndpointRouteBuilder app)
    {
        app.MapGet(Route, GetAsync).AllowAnonymous().ExcludeFromDescription();
        return app;
    }

    /// <summary>The document as both hosts answer it.</summary>
    public static async Task<IResult> GetAsync(CancellationToken cancellationToken) =>
        TypedResults.Bytes(await GetJsonAsync().WaitAsync(cancellationToken), Json);

    /// <summary>The document's UTF-8 JSON, built on first use.</summary>
    public static Task<byte[]> GetJsonAsync() => Document.Value;

    /// <summary>Builds the document anew (what every process does once).</summary>
    internal static async Task<byte[]> BuildAsync()
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ApplicationName = typeof(OpenApiContract).Assembly.GetName().Name });
        builder.WebHost.UseKestrelCore(); // WebApplication wants a server; this one is never started.
        builder.Services.AddRouting();
        // The handlers' services, so that parameter inference (a service, not a body) is what the hosts see. Nothing is
        // resolved, and nothing reads the (empty) configuration: the document is the same whatever a host is set to.
        builder.Services.AddConveyor(new ConfigurationBuilder().Build());
        // Schemas follow the reading side, which is strict (numbers are never strings, see ApiJson); writing is unaffected.
        builder.Services.ConfigureHttpJsonOptions(json => json.SerializerOptions.NumberHandling = JsonNumberHandling.Strict);
        builder.Services.AddOpenApi(options =>
        {
            options.OpenApiVersion = OpenApiSpecVersion.OpenApi3_1;
            // A payload (any JSON value) stays inline, so it can say what it holds.
            options.CreateSchemaReferenceId = type => type.Type == typeof(JsonElement) ? null : OpenApiOptions.CreateDefaultSchemaReferenceId(type);
            options.AddSchemaTransformer(DescribeSchema);
            options.AddOperationTransformer(DescribeOperationAsync);
            options.AddDocumentTransformer(DescribeDocument);
        });
        await using var app = builder.Build();
        // UseEndpoints hands the routes to the EndpointDataSource that ApiExplorer reads; an app does that when it starts,
        // and this one never starts.
        app.UseRouting();
#pragma warning disable ASP0014
        app.UseEndpoints(endpoints => endpoints.MapConveyorApi());
#pragma warning restore ASP0014
        var document = await app.Services.GetRequiredKeyedService<IOpenApiDocumentProvider>("v1").GetOpenApiDocumentAsync();
        using var stream = new MemoryStream();
        await document.SerializeAsJsonAsync(stream, OpenApiSpecVersion.OpenApi3_1);
        return stream.ToArray();
    }

    private static Task DescribeDocument(OpenApiDocument document, OpenApiDocumentTransformerContext context, CancellationToken cancellationToken)
    {
        document.Info = new OpenApiInfo
        {
            Title = "Conveyor",
            Version = "1.0.0",
            Description = Overview(),
            License = new OpenApiLicense { Name = "MIT", Identifier = "MIT" },
        };
        document.Servers = [new OpenApiServer { Url = PathBase, Description = "The host that serves this document: the Azure Functions app or the self-host." }];
        var paths = new OpenApiPaths();
        foreach (var (path, item) in document.Paths)
        {
            if (!path.StartsWith(PathBase + "/", StringComparison.Ordinal))
            {
                throw new InvalidOperationException($"{path} is not under {PathBase}: the document's server would not reach it");
            }
            paths.Add(path[PathBase.Length..], item);
        }
        document.Paths = paths;
        document.Tags = new HashSet<OpenApiTag>
        {
            new() { Name = HealthTag, Description = "Whether the backing stores (Redis, PostgreSQL) answer, and whether the stale sweeper is holding silent runtimes back (disruption mode). The one route that needs no key." },
            new() { Name = QueuesTag, Description = "Enqueue jobs, look them up, watch queue counts, and manage the dead set (jobs out of attempts)." },
            new()
            {
                Name = RuntimesTag,
                Description = "Register worker runtimes and receive their heartbeats; list them with their online status. Online runtimes claim "
                    + "jobs over HTTP (a long poll) and ack, fail or extend them with their claim tokens.",
            },
        };
        var components = document.Components ??= new OpenApiComponents();
        components.SecuritySchemes = new Dictionary<string, IOpenApiSecurityScheme>
        {
            [KeyHeaderScheme] = new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.ApiKey,
                In = ParameterLocation.Header,
                Name = "x-functions-key",
                Description = "A function key (Azure Functions) or one of `Conveyor:Api:Keys` (self-host).",
            },
            [KeyQueryScheme] = new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.ApiKey,
                In = ParameterLocation.Query,
                Name = "code",
                Description = "The same key as a query parameter, for clients that cannot set headers.",
            },
            [RuntimeTokenScheme] = new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.Http,
                Scheme = "bearer",
                Description = "The runtime's token, which `POST /runtimes` answered once. Heartbeats and the claim routes need it besides the key.",
            },
        };
        components.Schemas ??= new Dictionary<string, IOpenApiSchema>();
        components.Schemas.Remove("ProblemDetails");
        // A runtime's metadata is a JSON object (jsonb), optional in a registration; the generator only knows "any JSON".
        foreach (var schema in components.Schemas.Values.OfType<OpenApiSchema>())
        {
            if (schema.Properties?.TryGetValue("metadata", out var metadata) == true)
            {
                var optional = schema.Required?.Contains("metadata") != true;
                schema.Properties["metadata"] = new OpenApiSchema
                {
                    Type = optional ? JsonSchemaType.Object | JsonSchemaType.Null : JsonSchemaType.Object,
                    Description = optional ? "Any JSON object, up to 16 KiB; default `{}`." : "The JSON object given at registration.",
                };
            }
        }
        components.Schemas.Remove("JsonElement");
        components.Schemas[ProblemSchema] = Problem();
        return Task.CompletedTask;
    }

    private static async Task DescribeOperationAsync(OpenApiOperation operation, OpenApiOperationTransformerContext context, CancellationToken cancellationToken)
    {
        var metadata = context.Description.ActionDescriptor.EndpointMetadata;
        var operationId = operation.OperationId ?? ""; // a route without WithName: Redocly's operation-operationId says so
        var json = context.ApplicationServices.GetRequiredService<IOptions<JsonOptions>>().Value.SerializerOptions;
        var anonymous = metadata.OfType<IAllowAnonymous>().Any();

        operation.Security = anonymous ? [] : Keyed(metadata.OfType<OpenApiExtensions.RuntimeToken>().Any(), context.Document);
        foreach (var parameter in operation.Parameters ?? [])
        {
            if (parameter is OpenApiParameter { In: ParameterLocation.Path } path)
            {
                DescribePathParameter(path, operation.Tags?.FirstOrDefault()?.Name);
            }
        }
        foreach (var query in metadata.OfType<OpenApiExtensions.QueryParameter>())
        {
            (operation.Parameters ??= []).Add(new OpenApiParameter
            {
                Name = query.Name,
                In = ParameterLocation.Query,
                Description = query.Description,
                Schema = query.Schema,
            });
        }
        if (operation.RequestBody?.Content?.TryGetValue(Json, out var body) == true)
        {
            body.Example = OpenApiExamples.Request(operationId);
        }
        // The handlers' XML comments (read by the OpenAPI source generator) speak to developers; the routes' own
        // summaries and descriptions speak to callers.
        operation.Summary = metadata.OfType<IEndpointSummaryMetadata>().LastOrDefault()?.Summary ?? operation.Summary;
        operation.Description = metadata.OfType<IEndpointDescriptionMetadata>().LastOrDefault()?.Description ?? operation.Description;

        operation.Responses ??= [];
        foreach (var (status, response) in operation.Responses)
        {
            if (response is OpenApiResponse { Content: { } content } && content.TryGetValue(Json, out var media))
            {
                if (OpenApiExamples.Response(operationId, int.Parse(status, System.Globalization.CultureInfo.InvariantCulture)) is { } example)
                {
                    media.Example = JsonSerializer.SerializeToNode(example, example.GetType(), json);
                }
            }
        }
        // Every keyed route answers 401 when the key is missing or wrong.
        var problems = metadata.OfType<ProblemType>().Concat(anonymous ? [] : [Problems.Catalog.Unauthorized]).Distinct();
        foreach (var group in problems.GroupBy(p => p.Status).OrderBy(g => g.Key))
        {
            operation.Responses[group.Key.ToString(System.Globalization.CultureInfo.InvariantCulture)] = new OpenApiResponse
            {
                Description = string.Join("\n", group.Select(p => $"`{p.Type}`: {p.When}.")) +
                    (group.Key == StatusCodes.Status401Unauthorized && !anonymous
                        ? "\n\nOn Azure Functions the host answers a missing or wrong key itself, with a body of its own."
                        : ""),
                Content = new Dictionary<string, OpenApiMediaType>
                {
                    [ProblemJson] = new()
                    {
                        Schema = new OpenApiSchemaReference(ProblemSchema, context.Document),
                        Examples = group.ToDictionary(p => p.Type[(p.Type.LastIndexOf(':') + 1)..], p => (IOpenApiExample)new OpenApiExample
                        {
                            Summary = p.Title,
                            Value = JsonSerializer.SerializeToNode(OpenApiExamples.Problem(operationId, p), json),
                        }),
                    },
                },
            };
        }
    }

    private static List<OpenApiSecurityRequirement> Keyed(bool runtimeToken, OpenApiDocument? document)
    {
        // Either key location will do; a heartbeat needs the runtime's token as well.
        OpenApiSecurityRequirement Requirement(string key)
        {
            var requirement = new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(key, document)] = [] };
            if (runtimeToken)
            {
                requirement[new OpenApiSecuritySchemeReference(RuntimeTokenScheme, document)] = [];
            }
            return requirement;
        }
        return [Requirement(KeyHeaderScheme), Requirement(KeyQueryScheme)];
    }

    private static void DescribePathParameter(OpenApiParameter parameter, string? tag)
    {
        var schema = parameter.Schema as OpenApiSchema;
        switch (parameter.Name, tag)
        {
            case ("queue", _):
                parameter.Description = "Queue name.";
                if (schema is not null)
                {
                    schema.Pattern = JobValidation.NamePatternText;
                }
                break;
            case ("id", QueuesTag):
                parameter.Description = "Job id: 1–128 of `A-Z a-z 0-9 . _ ~ -`, starting and ending with a letter or digit "
                    + "(ids stored by earlier versions may hold other printable ASCII).";
                break;
            case ("id", RuntimesTag):
                parameter.Description = "Runtime id, as `POST /runtimes` answered it.";
                if (schema is not null)
                {
                    schema.Format = "uuid";
                }
                break;
            default:
                break;
        }
    }

    private static Task DescribeSchema(OpenApiSchema schema, OpenApiSchemaTransformerContext context, CancellationToken cancellationToken)
    {
        // A nullable enum member makes the generator list null among the enum's values; nullability belongs to the member.
        if (schema.Enum is { Count: > 0 } values && values.Any(v => v is null))
        {
            schema.Enum = [.. values.Where(v => v is not null)];
        }
        // The request bodies refuse unknown members (ApiJson: UnmappedMemberHandling.Disallow).
        if (context.JsonTypeInfo.Type == typeof(EnqueueJobRequest) || context.JsonTypeInfo.Type == typeof(EnqueueBatchRequest)
            || context.JsonTypeInfo.Type == typeof(RegisterRuntimeRequest) || context.JsonTypeInfo.Type == typeof(ClaimJobsRequest)
            || context.JsonTypeInfo.Type == typeof(ClaimsRequest) || context.JsonTypeInfo.Type == typeof(FailClaimsRequest)
            || context.JsonTypeInfo.Type == typeof(ClaimFailureRequest))
        {
            schema.AdditionalPropertiesAllowed = false;
        }
        return Task.CompletedTask;
    }

    private static OpenApiSchema Problem() => new()
    {
        Type = JsonSchemaType.Object,
        Description = "An RFC 9457 problem: `type` says which error it is, and never changes for that error.",
        Required = new HashSet<string> { "type", "title", "status", "detail" },
        Properties = new Dictionary<string, IOpenApiSchema>
        {
            ["type"] = new OpenApiSchema { Type = JsonSchemaType.String, Description = "The stable error type, `urn:conveyor:problem:<name>`." },
            ["title"] = new OpenApiSchema { Type = JsonSchemaType.String, Description = "A summary that is the same for every problem of this type." },
            ["status"] = new OpenApiSchema { Type = JsonSchemaType.Integer, Format = "int32", Description = "The HTTP status." },
            ["detail"] = new OpenApiSchema
            {
                Type = JsonSchemaType.String,
                Description = "What went wrong with this request.",
                // Kiota: a generated client's exception message is the detail.
                Extensions = new Dictionary<string, IOpenApiExtension> { ["x-ms-primary-error-message"] = new JsonNodeExtension(JsonValue.Create(true)) },
            },
            ["instance"] = new OpenApiSchema { Type = JsonSchemaType.String },
            ["field"] = new OpenApiSchema { Type = JsonSchemaType.String, Description = "`validation` only: the field that broke a rule, as `jobs[3].payload`." },
            ["ids"] = new OpenApiSchema
            {
                Type = JsonSchemaType.Array,
                Items = new OpenApiSchema { Type = JsonSchemaType.String },
                Description = "`unavailable` from an enqueue only: the id of every job of the request, in request order. The jobs may be stored: retry with these ids.",
            },
            ["traceId"] = new OpenApiSchema
            {
                Type = JsonSchemaType.String,
                Description = "The request's trace id, as the server logged it: on every problem of the self-host, and on `internal` problems of both hosts.",
            },
        },
    };

    /// <summary>The document's description: how to call the API, and every error type (the README's table, from <see cref="Problems.Catalog"/>).</summary>
    private static string Overview()
    {
        var text = new StringBuilder("""
            A Redis job queue and a runtime-presence service. Producers enqueue jobs; processors run them; worker runtimes
            register, send heartbeats, and may run jobs too: they claim them over HTTP and ack or fail them. The Azure Functions
            app and the self-host serve this same API and document.

            **Keys.** Every route except `GET /health` (and this document) needs a key, in the `x-functions-key` header or the
            `code` query parameter. A heartbeat and the claim routes also need the runtime's token: `Authorization: Bearer <token>`.

            **JSON bodies are strict**: UTF-8, camelCase names matched exactly, no unknown or repeated fields, no numbers as
            strings, and `null` only where a field allows it (400 `malformed-json` otherwise).

            **Errors** are RFC 9457 problem details (`application/problem+json`) with a stable `type`:

            | `type` | status | when |
            |---|---|---|

            """);
        foreach (var problem in Problems.Catalog.All)
        {
            text.Append(System.Globalization.CultureInfo.InvariantCulture, $"| `{problem.Type}` | {problem.Status} | {problem.When} |\n");
        }
        return text.ToString().TrimEnd();
    }
}
