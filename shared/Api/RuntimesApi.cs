using System.Globalization;
using System.Text.Json.Serialization.Metadata;
using Conveyor.Presence;
using Conveyor.Queue;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;

namespace Conveyor.Api;

/// <summary>Worker runtimes over HTTP: registry, heartbeats, and claiming jobs. The Functions app calls the same handlers.</summary>
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
        api.MapPost("/{id}/claims", ClaimAsync).WithName("ClaimJobs").WithJsonBody<ClaimJobsRequest>().ProducesBodyProblems()
            .ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict);
        api.MapPost("/{id}/claims/ack", AckAsync).WithName("AckClaims").WithJsonBody<ClaimsRequest>().ProducesBodyProblems()
            .ProducesProblem(StatusCodes.Status404NotFound);
        api.MapPost("/{id}/claims/fail", FailAsync).WithName("FailClaims").WithJsonBody<FailClaimsRequest>().ProducesBodyProblems()
            .ProducesProblem(StatusCodes.Status404NotFound);
        api.MapPost("/{id}/claims/extend", ExtendAsync).WithName("ExtendClaims").WithJsonBody<ClaimsRequest>().ProducesBodyProblems()
            .ProducesProblem(StatusCodes.Status404NotFound);
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
            var pageSize = 100;
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
            if (ReadBearer(request, out var token) is { } unauthorized)
            {
                return unauthorized;
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

    /// <summary>
    /// Claims up to <c>max</c> ready jobs of a queue for an online runtime (bearer token), waiting up to <c>waitSeconds</c>
    /// for one (a long poll, woken by the queue's pub/sub signal); 200 with the jobs, an empty list when none came. 409
    /// <c>runtime-offline</c> when the runtime must beat first, 401 for a missing or wrong token, 404 for an unknown id.
    /// </summary>
    public static Task<Results<Ok<ClaimJobsResponse>, ProblemHttpResult>> ClaimAsync(
        string id, HttpRequest request, RuntimeClaims claims, IOptions<ApiOptions> options, CancellationToken cancellationToken) =>
        Problems.GuardAsync<Ok<ClaimJobsResponse>>(async () =>
        {
            if (ReadBearer(request, out var token) is { } unauthorized)
            {
                return unauthorized;
            }
            var (body, problem) = await RequestBody.ReadAsync(request, ApiJson.Default.ClaimJobsRequest, options.Value.MaxRequestBytes, cancellationToken);
            if (problem is not null)
            {
                return problem;
            }
            var seconds = body!.WaitSeconds ?? 0;
            if (!double.IsFinite(seconds) || seconds is < 0 or > 86_400)
            {
                throw new ConveyorValidationException("waitSeconds", "must be a number of seconds from 0 to Conveyor:Runtimes:MaxClaimWait");
            }
            // The Functions host hands its invocation token in; the client going away is the request's own.
            using var gone = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, request.HttpContext.RequestAborted);
            var jobs = await claims.ClaimAsync(id, token, body.Queue, body.Max ?? 1, TimeSpan.FromSeconds(seconds), gone.Token);
            return TypedResults.Ok(new ClaimJobsResponse(jobs, claims.ClaimTimeout.TotalSeconds));
        });

    /// <summary>Acks claims (the jobs leave Redis); per claim <c>acked</c> or <c>lost</c> (not held any more: nothing changed).</summary>
    public static Task<Results<Ok<ClaimResultsResponse>, ProblemHttpResult>> AckAsync(
        string id, HttpRequest request, RuntimeClaims claims, IOptions<ApiOptions> options, CancellationToken cancellationToken) =>
        SettleAsync(request, options, ApiJson.Default.ClaimsRequest,
            (token, body) => claims.AckAsync(id, token, body.Claims, cancellationToken), cancellationToken);

    /// <summary>Fails claims: per claim <c>retried</c> (after a backoff), <c>dead</c> (out of attempts, or retry false) or <c>lost</c>.</summary>
    public static Task<Results<Ok<ClaimResultsResponse>, ProblemHttpResult>> FailAsync(
        string id, HttpRequest request, RuntimeClaims claims, IOptions<ApiOptions> options, CancellationToken cancellationToken) =>
        SettleAsync(request, options, ApiJson.Default.FailClaimsRequest,
            (token, body) => claims.FailAsync(
                id, token, [.. body.Failures.Select(f => f is null ? null : new ClaimFailure(f.Claim, f.Error, f.Retry ?? true))], cancellationToken),
            cancellationToken);

    /// <summary>Extends claims by <c>Conveyor:Runtimes:ClaimTimeout</c> from now; per claim <c>extended</c> (with <c>claimExpiresAt</c>) or <c>lost</c>.</summary>
    public static Task<Results<Ok<ClaimResultsResponse>, ProblemHttpResult>> ExtendAsync(
        string id, HttpRequest request, RuntimeClaims claims, IOptions<ApiOptions> options, CancellationToken cancellationToken) =>
        SettleAsync(request, options, ApiJson.Default.ClaimsRequest,
            (token, body) => claims.ExtendAsync(id, token, body.Claims, cancellationToken), cancellationToken);

    private static Task<Results<Ok<ClaimResultsResponse>, ProblemHttpResult>> SettleAsync<TBody>(
        HttpRequest request, IOptions<ApiOptions> options, JsonTypeInfo<TBody> type,
        Func<string, TBody, Task<IReadOnlyList<ClaimResult>>> settle, CancellationToken cancellationToken)
        where TBody : class =>
        Problems.GuardAsync<Ok<ClaimResultsResponse>>(async () =>
        {
            if (ReadBearer(request, out var token) is { } unauthorized)
            {
                return unauthorized;
            }
            var (body, problem) = await RequestBody.ReadAsync(request, type, options.Value.MaxRequestBytes, cancellationToken);
            if (problem is not null)
            {
                return problem;
            }
            return TypedResults.Ok(new ClaimResultsResponse(await settle(token, body!)));
        });

    /// <summary>A 401 problem unless the request carries one <c>Authorization: Bearer &lt;runtime token&gt;</c>, whose token it gives.</summary>
    private static ProblemHttpResult? ReadBearer(HttpRequest request, out string token)
    {
        token = "";
        var authorization = request.Headers.Authorization;
        if (authorization.Count == 0)
        {
            return Problems.Unauthorized("The request has no Authorization header: send Authorization: Bearer <runtime token>");
        }
        if (BearerToken(authorization) is not { } bearer)
        {
            return Problems.Unauthorized("The Authorization header must be a single 'Bearer <runtime token>'");
        }
        token = bearer;
        return null;
    }

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
