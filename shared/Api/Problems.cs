using System.Diagnostics;
using Conveyor.Queue;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Conveyor.Api;

/// <summary>
/// RFC 9457 problem details with a stable <c>type</c> per error, and the one place exceptions become problems:
/// every handler runs inside <see cref="GuardAsync{T}"/>, so both hosts map errors the same way.
/// </summary>
public static class Problems
{
    /// <summary>The stable problem types.</summary>
    public static class Types
    {
        public const string Validation = "urn:conveyor:problem:validation";
        public const string MalformedJson = "urn:conveyor:problem:malformed-json";
        public const string UnsupportedMediaType = "urn:conveyor:problem:unsupported-media-type";
        public const string PayloadTooLarge = "urn:conveyor:problem:payload-too-large";
        public const string NotFound = "urn:conveyor:problem:not-found";
        public const string Unauthorized = "urn:conveyor:problem:unauthorized";
        public const string Unavailable = "urn:conveyor:problem:unavailable";
        public const string QueueLimit = "urn:conveyor:problem:queue-limit";
        public const string RuntimeOffline = "urn:conveyor:problem:runtime-offline";
        public const string RouteNotFound = "urn:conveyor:problem:route-not-found";
        public const string MethodNotAllowed = "urn:conveyor:problem:method-not-allowed";
        public const string Internal = "urn:conveyor:problem:internal";
    }

    /// <summary>
    /// Every problem the API answers, with its status, title and when it is answered: the one source of the README's
    /// error table (a test compares them) and of the error responses in the OpenAPI document.
    /// </summary>
    public static class Catalog
    {
        public static readonly ProblemType Validation = new(Types.Validation, StatusCodes.Status400BadRequest, "The request is invalid",
            "a field breaks a rule; `detail` and the `field` extension name it");

        public static readonly ProblemType MalformedJson = new(Types.MalformedJson, StatusCodes.Status400BadRequest, "The body is not valid JSON for this request",
            "the body is not valid JSON for the route (including unknown or missing required members)");

        public static readonly ProblemType UnsupportedMediaType = new(Types.UnsupportedMediaType, StatusCodes.Status415UnsupportedMediaType,
            "The body must be application/json", "`Content-Type` is not JSON");

        public static readonly ProblemType PayloadTooLarge = new(Types.PayloadTooLarge, StatusCodes.Status413PayloadTooLarge, "The body is too large",
            "the body exceeds `Conveyor:Api:MaxRequestBytes` (1 MiB by default), whether or not `Content-Length` is sent");

        public static readonly ProblemType NotFound = new(Types.NotFound, StatusCodes.Status404NotFound, "Not found",
            "no such job, dead job or runtime");

        public static readonly ProblemType Unauthorized = new(Types.Unauthorized, StatusCodes.Status401Unauthorized, "Unauthorized",
            "no or wrong key (self-host), or a missing, malformed or wrong runtime token");

        public static readonly ProblemType QueueLimit = new(Types.QueueLimit, StatusCodes.Status409Conflict, "Too many queues",
            "the job is for a new queue and the registry already lists `Conveyor:Queue:MaxQueues` queues");

        public static readonly ProblemType RuntimeOffline = new(Types.RuntimeOffline, StatusCodes.Status409Conflict, "The runtime is offline",
            "a runtime asked to claim while offline (it never beat, or the sweeper marked it offline): beat, then claim");

        public static readonly ProblemType Unavailable = new(Types.Unavailable, StatusCodes.Status503ServiceUnavailable, "A backing store is unavailable",
            "Redis connection or timeout error, or a transient PostgreSQL error: retry (an enqueue's problem carries `ids`: retry with them)");

        public static readonly ProblemType RouteNotFound = new(Types.RouteNotFound, StatusCodes.Status404NotFound, "No such route",
            "no route matches the path (self-host)");

        public static readonly ProblemType MethodNotAllowed = new(Types.MethodNotAllowed, StatusCodes.Status405MethodNotAllowed, "Method not allowed",
            "the route does not take this method; `Allow` lists the ones it takes (self-host)");

        public static readonly ProblemType Internal = new(Types.Internal, StatusCodes.Status500InternalServerError, "Internal error",
            "an unexpected failure; logged on the server with the answer's `traceId` (both hosts)");

        /// <summary>All of them, in the README's order.</summary>
        public static IReadOnlyList<ProblemType> All { get; } =
            [Validation, MalformedJson, UnsupportedMediaType, PayloadTooLarge, NotFound, Unauthorized, QueueLimit, RuntimeOffline, Unavailable, RouteNotFound, MethodNotAllowed, Internal];
    }

    public static ProblemHttpResult Validation(string field, string detail) =>
        Create(Catalog.Validation, $"{field}: {detail}", new() { ["field"] = field });

    public static ProblemHttpResult MalformedJson(string detail) => Create(Catalog.MalformedJson, detail);

    public static ProblemHttpResult UnsupportedMediaType(string? contentType) =>
        Create(Catalog.UnsupportedMediaType, $"Content-Type was '{contentType ?? "(none)"}'");

    public static ProblemHttpResult PayloadTooLarge(long limit) => Create(Catalog.PayloadTooLarge, $"The limit is {limit} bytes");

    public static ProblemHttpResult NotFound(string detail) => Create(Catalog.NotFound, detail);

    public static ProblemHttpResult Unauthorized(string detail) => Create(Catalog.Unauthorized, detail);

    public static ProblemHttpResult QueueLimit(string detail) => Create(Catalog.QueueLimit, detail);

    public static ProblemHttpResult RuntimeOffline(string detail) => Create(Catalog.RuntimeOffline, detail);

    public static ProblemHttpResult Unavailable(string detail) => Create(Catalog.Unavailable, detail);

    /// <summary>
    /// Redis did not confirm an enqueue: the jobs may be stored. <c>ids</c> lists the id of every job of the request, in
    /// request order (the ones the request gave, and the ones the server assigned); retrying with them is idempotent.
    /// </summary>
    public static ProblemHttpResult EnqueueUnconfirmed(EnqueueUnconfirmedException exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        return Create(Catalog.Unavailable,
            "Redis did not confirm the enqueue (timeout or lost connection), so the jobs may or may not be stored. " +
            "Retry with the ids in 'ids' (in request order): a retry with the same id never adds a second job.",
            new() { ["ids"] = exception.Ids });
    }

    /// <summary>Runs a handler; an exception the engine raises on purpose becomes its problem, anything else propagates (a 500).</summary>
    public static Task<Results<T, ProblemHttpResult>> GuardAsync<T>(Func<Task<Results<T, ProblemHttpResult>>> handler)
        where T : IResult
        => RunAsync(handler, problem => problem);

    /// <inheritdoc cref="GuardAsync{T}"/>
    public static Task<Results<T1, T2, ProblemHttpResult>> GuardAsync<T1, T2>(Func<Task<Results<T1, T2, ProblemHttpResult>>> handler)
        where T1 : IResult
        where T2 : IResult
        => RunAsync(handler, problem => problem);

    private static async Task<TResult> RunAsync<TResult>(Func<Task<TResult>> handler, Func<ProblemHttpResult, TResult> answer)
    {
        ArgumentNullException.ThrowIfNull(handler);
        try
        {
            return await handler();
        }
        catch (Exception ex) when (TryMap(ex, out var problem))
        {
            return answer(problem);
        }
    }

    /// <summary>Maps the exceptions the engine raises on purpose; anything else stays a 500.</summary>
    public static bool TryMap(Exception exception, out ProblemHttpResult problem)
    {
        problem = exception switch
        {
            ConveyorValidationException validation => Validation(validation.Field, validation.Reason),
            ConveyorQueueLimitException limit => QueueLimit(limit.Message),
            RuntimeAccessException { Access: Presence.RuntimeAccess.NotFound } access => NotFound(access.Message),
            RuntimeAccessException { Access: Presence.RuntimeAccess.Unauthorized } access => Unauthorized(access.Message),
            RuntimeAccessException access => RuntimeOffline(access.Message),
            EnqueueUnconfirmedException unconfirmed => EnqueueUnconfirmed(unconfirmed),
            RedisConnectionException or RedisTimeoutException => Unavailable("Redis did not answer; retry later"),
            Npgsql.NpgsqlException { IsTransient: true } => Unavailable("PostgreSQL did not answer; retry later"),
            _ => null!,
        };
        return problem is not null;
    }

    /// <summary>
    /// Problem details for the answers no handler writes (the host's): unknown route (404), wrong method (405) and an
    /// unexpected failure (500, logged by the host; the answer carries only the <c>traceId</c>). Pair it with
    /// <c>UseExceptionHandler()</c> and <c>UseStatusCodePages()</c>.
    /// </summary>
    public static IServiceCollection AddConveyorProblemDetails(this IServiceCollection services) =>
        services.AddProblemDetails(options => options.CustomizeProblemDetails = context =>
        {
            var problem = context.ProblemDetails;
            if (problem.Type?.StartsWith("urn:conveyor:", StringComparison.Ordinal) == true)
            {
                return;
            }
            var request = context.HttpContext.Request;
            var target = $"{request.Method} {request.Path}";
            (problem.Type, problem.Title, problem.Detail) = problem.Status switch
            {
                StatusCodes.Status404NotFound => (Types.RouteNotFound, Catalog.RouteNotFound.Title, $"No route matches {target}"),
                StatusCodes.Status405MethodNotAllowed => (Types.MethodNotAllowed, Catalog.MethodNotAllowed.Title,
                    $"{request.Path} does not accept {request.Method}; it accepts {context.HttpContext.Response.Headers.Allow}"),
                StatusCodes.Status500InternalServerError => (Types.Internal, Catalog.Internal.Title, InternalDetail(request)),
                _ => (problem.Type, problem.Title, problem.Detail),
            };
        });

    /// <summary>
    /// The Functions host's counterpart of the self-host's exception handler: logs an exception no handler expected and
    /// answers the same 500 <c>internal</c> problem, with the <c>traceId</c> the log carries, instead of an empty 500.
    /// </summary>
    public static async Task WriteUnexpectedAsync(HttpContext context, Exception exception)
    {
        ArgumentNullException.ThrowIfNull(context);
        var logger = context.RequestServices.GetService<ILoggerFactory>()?.CreateLogger(typeof(Problems).FullName!);
        logger?.LogError(exception, "{Method} {Path} failed unexpectedly", context.Request.Method, context.Request.Path);
        var traceId = Activity.Current?.Id ?? context.TraceIdentifier;
        await Create(Catalog.Internal, InternalDetail(context.Request), new() { ["traceId"] = traceId }).ExecuteAsync(context);
    }

    private static string InternalDetail(HttpRequest request) =>
        $"{request.Method} {request.Path} failed unexpectedly; the error is logged with this traceId";

    private static ProblemHttpResult Create(ProblemType type, string detail, Dictionary<string, object?>? extensions = null) =>
        TypedResults.Problem(new ProblemDetails
        {
            Status = type.Status,
            Type = type.Type,
            Title = type.Title,
            Detail = detail,
            Extensions = extensions ?? [],
        });
}

/// <summary>One kind of problem the API answers.</summary>
/// <param name="Type">The stable <c>type</c> URN.</param>
/// <param name="Status">The HTTP status it is answered with.</param>
/// <param name="Title">The <c>title</c> every problem of this type carries.</param>
/// <param name="When">When it is answered (Markdown), as the README's error table and the OpenAPI document say it.</param>
public sealed record ProblemType(string Type, int Status, string Title, string When);
