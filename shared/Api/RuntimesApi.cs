using System.Globalization;
using System.Text.Json.Nodes;
using Conveyor.Presence;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;
using Microsoft.OpenApi;

namespace Conveyor.Api;

/// <summary>Worker runtimes over HTTP: registry and heartbeats. The Functions app calls the same handlers.</summary>
public static class RuntimesApi
{
    /// <summary>Runtimes per page of <c>GET /api/runtimes</c> when the request names no <c>pageSize</c>.</summary>
    private const int DefaultPageSize = 100;

    public static IEndpointRouteBuilder MapRuntimesApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/runtimes").WithTags(OpenApiContract.RuntimesTag)
            .Answers(Problems.Catalog.Validation, Problems.Catalog.Unavailable, Problems.Catalog.Internal);
        api.MapPost("", RegisterAsync).WithName("RegisterRuntime").WithJsonBody<RegisterRuntimeRequest>()
            .WithSummary("Register a runtime")
            .WithDescription("201 with the runtime's id and its secret token, and its `Location`. The token is shown only here: its heartbeats present it.");
        api.MapGet("", ListAsync).WithName("ListRuntimes")
            .WithQueryParameter("status", "Only the runtimes with this status.", new() { Type = JsonSchemaType.String, Enum = [JsonValue.Create("online"), JsonValue.Create("offline")] })
            .WithQueryParameter("pageSize", "Runtimes per page.", OpenApiExtensions.Integer(1, RuntimeRegistry.MaxPageSize, DefaultPageSize))
            .WithQueryParameter("page", "The `next` of the previous page; none for the first page.", new() { Type = JsonSchemaType.String, Format = "uuid" })
            .WithSummary("List runtimes in id order, a page at a time");
        api.MapGet("/{id}", GetAsync).WithName("GetRuntime").Answers(Problems.Catalog.NotFound)
            .WithSummary("Get a runtime");
        api.MapDelete("/{id}", DeleteAsync).WithName("DeleteRuntime").Answers(Problems.Catalog.NotFound)
            .WithSummary("Delete a runtime");
        api.MapPost("/{id}/heartbeat", HeartbeatAsync).WithName("RuntimeHeartbeat").RequiresRuntimeToken().Answers(Problems.Catalog.NotFound)
            .WithSummary("Beat for a runtime")
            .WithDescription("""
                Needs the key and the runtime's token as `Authorization: Bearer <token>`. 202 when the beat was buffered in Redis,
                200 when it was written at once (it brought the runtime back online). `beatIntervalSeconds` says when to beat next.
                401 when the `Authorization` header is missing, is not one `Bearer <token>`, or holds a wrong token (`detail` says which).
                """);
        return app;
    }

    /// <summary>201 with the id and the secret token; the token is shown this once.</summary>
    public static Task<Results<Created<RegisteredRuntime>, ProblemHttpResult>> RegisterAsync(
        HttpRequest request, RuntimeRegistry registry, IOptions<ApiOptions> options, CancellationToken cancellationToken) =>
        Problems.GuardAsync<Created<RegisteredRuntime>>(async () =>
        {
            var (body, problem) = await RequestBody.ReadAsync(request, ApiJson.Default.RegisterRuntimeRequest, options.Value.MaxRequestBytes, cancellationToken);
            if (problem is not null)
            {
                return problem;
            }
            var runtime = await registry.RegisterAsync(body!.Name, body.Metadata?.GetRawText(), cancellationToken);
            return TypedResults.Created($"/api/runtimes/{runtime.Id}", runtime);
        });

    /// <summary>Runtimes in id order: <c>?status=online|offline&amp;page=&lt;next&gt;&amp;pageSize=100</c>.</summary>
    public static Task<Results<Ok<RuntimeListResponse>, ProblemHttpResult>> ListAsync(
        HttpRequest request, RuntimeRegistry registry, CancellationToken cancellationToken) =>
        Problems.GuardAsync<Ok<RuntimeListResponse>>(async () =>
        {
            RuntimeStatus? status = request.Query["status"].FirstOrDefault() switch
            {
                null or "" => null,
                "online" => RuntimeStatus.Online,
                "offline" => RuntimeStatus.Offline,
                _ => throw new ConveyorValidationException("status", "must be online or offline"),
            };
            var page = request.Query["page"].FirstOrDefault();
            var pageSize = DefaultPageSize;
            if (request.Query["pageSize"].FirstOrDefault() is { } size
                && (!int.TryParse(size, NumberStyles.None, CultureInfo.InvariantCulture, out pageSize) || pageSize is < 1 or > RuntimeRegistry.MaxPageSize))
            {
                throw new ConveyorValidationException("pageSize", $"must be a whole number from 1 to {RuntimeRegistry.MaxPageSize}");
            }
            if (string.IsNullOrEmpty(page))
            {
                page = null;
            }
            else if (!Guid.TryParse(page, out _))
            {
                throw new ConveyorValidationException("page", "is not a page token from a previous answer's next");
            }
            var result = await registry.ListAsync(status, page, pageSize, cancellationToken);
            return TypedResults.Ok(new RuntimeListResponse(result.Items, result.Next));
        });

    /// <summary>The runtime; 404 when no runtime has that id.</summary>
    public static Task<Results<Ok<RuntimeInfo>, ProblemHttpResult>> GetAsync(string id, RuntimeRegistry registry, CancellationToken cancellationToken) =>
        Problems.GuardAsync<Ok<RuntimeInfo>>(async () =>
        {
            var runtime = await registry.GetAsync(id, cancellationToken);
            return runtime is null ? Problems.NotFound($"No runtime '{id}'") : TypedResults.Ok(runtime);
        });

    /// <summary>Deletes the runtime; 404 when no runtime has that id.</summary>
    public static Task<Results<NoContent, ProblemHttpResult>> DeleteAsync(string id, RuntimeRegistry registry, CancellationToken cancellationToken) =>
        Problems.GuardAsync<NoContent>(async () =>
            await registry.DeleteAsync(id, cancellationToken) ? TypedResults.NoContent() : Problems.NotFound($"No runtime '{id}'"));

    /// <summary>
    /// A beat, authenticated by <c>Authorization: Bearer &lt;runtime token&gt;</c>: 202 when buffered, 200 when it
    /// was written at once (the runtime came back online), 401 for a missing, malformed or wrong token, 404 for an
    /// unknown id.
    /// </summary>
    public static Task<Results<Accepted<HeartbeatResponse>, Ok<HeartbeatResponse>, ProblemHttpResult>> HeartbeatAsync(
        string id, HttpRequest request, HeartbeatService heartbeats, CancellationToken cancellationToken) =>
        Problems.GuardAsync<Accepted<HeartbeatResponse>, Ok<HeartbeatResponse>>(async () =>
        {
            var authorization = request.Headers.Authorization;
            if (authorization.Count == 0)
            {
                return Problems.Unauthorized("The request has no Authorization header: send Authorization: Bearer <runtime token>");
            }
            if (BearerToken(authorization) is not { } token)
            {
                return Problems.Unauthorized("The Authorization header must be a single 'Bearer <runtime token>'");
            }
            var beat = await heartbeats.BeatAsync(id, token, cancellationToken);
            var response = new HeartbeatResponse(beat.Outcome.ToString().ToLowerInvariant(), beat.FlippedOnline, beat.SeenAt, heartbeats.BeatInterval.TotalSeconds);
            return beat.Outcome switch
            {
                BeatOutcome.Buffered => TypedResults.Accepted((string?)null, response),
                BeatOutcome.Synchronous => TypedResults.Ok(response),
                BeatOutcome.NotFound => Problems.NotFound($"No runtime '{id}'"),
                _ => Problems.Unauthorized("The bearer token is not this runtime's token"),
            };
        });

    /// <summary>The token of a single <c>Bearer &lt;token&gt;</c> credential (scheme case-insensitive, RFC 9110 §11.1), or null.</summary>
    private static string? BearerToken(Microsoft.Extensions.Primitives.StringValues authorization)
    {
        const string Scheme = "Bearer ";
        if (authorization.Count != 1 || authorization[0] is not { } value || !value.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }
        var token = value[Scheme.Length..].Trim();
        return token.Length == 0 || token.Contains(' ', StringComparison.Ordinal) ? null : token;
    }
}
