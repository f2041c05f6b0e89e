using System.Globalization;
using Conveyor.Presence;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;

namespace Conveyor.Api;

/// <summary>Worker runtimes over HTTP: registry and heartbeats. The Functions app calls the same handlers.</summary>
public static class RuntimesApi
{
    public static IEndpointRouteBuilder MapRuntimesApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/runtimes").WithTags("Runtimes")
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status401Unauthorized)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);
        api.MapPost("", RegisterAsync).WithName("RegisterRuntime").WithJsonBody<RegisterRuntimeRequest>().ProducesBodyProblems();
        api.MapGet("", ListAsync).WithName("ListRuntimes");
        api.MapGet("/{id}", GetAsync).WithName("GetRuntime").ProducesProblem(StatusCodes.Status404NotFound);
        api.MapDelete("/{id}", DeleteAsync).WithName("DeleteRuntime").ProducesProblem(StatusCodes.Status404NotFound);
        api.MapPost("/{id}/heartbeat", HeartbeatAsync).WithName("RuntimeHeartbeat").ProducesProblem(StatusCodes.Status404NotFound);
        return app;
    }

    /// <summary>201 with the id and the secret token; the token is shown this once.</summary>
    public static async Task<Results<Created<RegisteredRuntime>, ProblemHttpResult>> RegisterAsync(
        HttpRequest request, RuntimeRegistry registry, IOptions<ApiOptions> options, CancellationToken cancellationToken)
    {
        try
        {
            var (body, problem) = await RequestBody.ReadAsync(request, ApiJson.Default.RegisterRuntimeRequest, options.Value.MaxRequestBytes, cancellationToken);
            if (problem is not null)
            {
                return problem;
            }
            var runtime = await registry.RegisterAsync(body!.Name, body.Metadata?.GetRawText(), cancellationToken);
            return TypedResults.Created($"/api/runtimes/{runtime.Id}", runtime);
        }
        catch (Exception ex) when (Problems.TryMap(ex, out var problem))
        {
            return problem;
        }
    }

    /// <summary>Runtimes in id order: <c>?status=online|offline&amp;page=&lt;next&gt;&amp;pageSize=100</c>.</summary>
    public static async Task<Results<Ok<RuntimeListResponse>, ProblemHttpResult>> ListAsync(
        HttpRequest request, RuntimeRegistry registry, CancellationToken cancellationToken)
    {
        try
        {
            RuntimeStatus? status = request.Query["status"].FirstOrDefault() switch
            {
                null or "" => null,
                "online" => RuntimeStatus.Online,
                "offline" => RuntimeStatus.Offline,
                _ => throw new ConveyorValidationException("status", "must be online or offline"),
            };
            var page = request.Query["page"].FirstOrDefault();
            var pageSize = 100;
            if (request.Query["pageSize"].FirstOrDefault() is { } size
                && (!int.TryParse(size, NumberStyles.None, CultureInfo.InvariantCulture, out pageSize) || pageSize is < 1 or > RuntimeRegistry.MaxPageSize))
            {
                throw new ConveyorValidationException("pageSize", $"must be a whole number from 1 to {RuntimeRegistry.MaxPageSize}");
            }
            var result = await registry.ListAsync(status, string.IsNullOrEmpty(page) ? null : page, pageSize, cancellationToken);
            return TypedResults.Ok(new RuntimeListResponse(result.Items, result.Next));
        }
        catch (ConveyorValidationException ex) when (ex.Field == "after")
        {
            return Problems.Validation("page", "is not a page token from a previous answer's next");
        }
        catch (Exception ex) when (Problems.TryMap(ex, out var problem))
        {
            return problem;
        }
    }

    /// <summary>The runtime; 404 when no runtime has that id.</summary>
    public static async Task<Results<Ok<RuntimeInfo>, ProblemHttpResult>> GetAsync(string id, RuntimeRegistry registry, CancellationToken cancellationToken)
    {
        try
        {
            var runtime = await registry.GetAsync(id, cancellationToken);
            return runtime is null ? Problems.NotFound($"No runtime '{id}'") : TypedResults.Ok(runtime);
        }
        catch (Exception ex) when (Problems.TryMap(ex, out var problem))
        {
            return problem;
        }
    }

    /// <summary>Deletes the runtime; 404 when no runtime has that id.</summary>
    public static async Task<Results<NoContent, ProblemHttpResult>> DeleteAsync(string id, RuntimeRegistry registry, CancellationToken cancellationToken)
    {
        try
        {
            return await registry.DeleteAsync(id, cancellationToken) ? TypedResults.NoContent() : Problems.NotFound($"No runtime '{id}'");
        }
        catch (Exception ex) when (Problems.TryMap(ex, out var problem))
        {
            return problem;
        }
    }

    /// <summary>
    /// A beat, authenticated by <c>Authorization: Bearer &lt;runtime token&gt;</c>: 202 when buffered, 200 when it
    /// was written at once (the runtime came back online), 401 for a wrong token, 404 for an unknown id.
    /// </summary>
    public static async Task<Results<Accepted<HeartbeatResponse>, Ok<HeartbeatResponse>, ProblemHttpResult>> HeartbeatAsync(
        string id, HttpRequest request, HeartbeatService heartbeats, CancellationToken cancellationToken)
    {
        try
        {
            var header = request.Headers.Authorization.FirstOrDefault();
            var token = header is not null && header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header["Bearer ".Length..].Trim() : null;
            var beat = await heartbeats.BeatAsync(id, token, cancellationToken);
            var response = new HeartbeatResponse(beat.Outcome.ToString().ToLowerInvariant(), beat.FlippedOnline, beat.SeenAt, heartbeats.BeatInterval.TotalSeconds);
            return beat.Outcome switch
            {
                BeatOutcome.Buffered => TypedResults.Accepted((string?)null, response),
                BeatOutcome.Synchronous => TypedResults.Ok(response),
                BeatOutcome.NotFound => Problems.NotFound($"No runtime '{id}'"),
                _ => Problems.Unauthorized("The bearer token is not this runtime's token"),
            };
        }
        catch (Exception ex) when (Problems.TryMap(ex, out var problem))
        {
            return problem;
        }
    }
}
