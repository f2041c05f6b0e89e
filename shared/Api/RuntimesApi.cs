using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization.Metadata;
using Conveyor.Presence;
using Conveyor.Queue;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;
using Microsoft.OpenApi;

namespace Conveyor.Api;

/// <summary>Worker runtimes over HTTP: registry, heartbeats, and claiming jobs. The Functions app calls the same handlers.</summary>
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
        api.MapPost("/{id}/claims", ClaimAsync).WithName("ClaimJobs").WithJsonBody<ClaimJobsRequest>().RequiresRuntimeToken()
            .Answers(Problems.Catalog.NotFound, Problems.Catalog.RuntimeOffline)
            .WithSummary("Claim jobs for a runtime (a long poll)")
            .WithDescription("""
                Needs the key and the runtime's token as `Authorization: Bearer <token>`, and an online runtime (409
                `runtime-offline` until it beats). Claims up to `max` (1–1000, default 1) ready jobs of `queue`, at most 8 MiB of
                payloads (one job always). With none ready it waits up to `waitSeconds` (default 0; at most
                `Conveyor:Runtimes:MaxClaimWait`, 60 s by default and never above 200 s, inside the 230 s at which Azure Functions
                cuts a request) and answers as soon as a job becomes ready, or with no jobs at the deadline. A claim does not count
                as a beat. Ack, fail or extend each job with its `claim`; a claim not settled or extended within `claimTimeoutSeconds`
                goes back to the queue, as do all of a runtime's claims once it goes offline or is deleted.
                """);
        api.MapPost("/{id}/claims/ack", AckAsync).WithName("AckClaims").WithJsonBody<ClaimsRequest>().RequiresRuntimeToken()
            .Answers(Problems.Catalog.NotFound)
            .WithSummary("Ack claimed jobs: they are done")
            .WithDescription("""
                1–1000 claims, each once. Per claim, in request order: `acked` (the job left the queue), or `lost` when the runtime
                no longer holds the claim (it expired, the runtime was taken offline, or it was settled already): nothing changed
                for it, and the rest of the batch is still settled.
                """);
        api.MapPost("/{id}/claims/fail", FailAsync).WithName("FailClaims").WithJsonBody<FailClaimsRequest>().RequiresRuntimeToken()
            .Answers(Problems.Catalog.NotFound)
            .WithSummary("Fail claimed jobs")
            .WithDescription("""
                1–1000 failures, each claim once. `error` becomes the job's `lastError` (4,096 characters at most). With `retry`
                true (the default) the job runs again after a backoff while it has attempts left (`retried`), else it goes to the
                dead set (`dead`); with `retry` false it is `dead` at once. `lost`: the runtime no longer holds the claim, and
                nothing changed for it.
                """);
        api.MapPost("/{id}/claims/extend", ExtendAsync).WithName("ExtendClaims").WithJsonBody<ClaimsRequest>().RequiresRuntimeToken()
            .Answers(Problems.Catalog.NotFound)
            .WithSummary("Extend the claims of jobs still running")
            .WithDescription("""
                1–1000 claims, each once. Each claim the runtime still holds expires `Conveyor:Runtimes:ClaimTimeout` from now
                (`extended`, with `claimExpiresAt`); `lost` when it no longer holds it, and nothing changed for it.
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
