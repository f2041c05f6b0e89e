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

    public static ProblemHttpResult Validation(string field, string detail) =>
        Create(StatusCodes.Status400BadRequest, Types.Validation, "The request is invalid", $"{field}: {detail}", new() { ["field"] = field });

    public static ProblemHttpResult MalformedJson(string detail) =>
        Create(StatusCodes.Status400BadRequest, Types.MalformedJson, "The body is not valid JSON for this request", detail);

    public static ProblemHttpResult UnsupportedMediaType(string? contentType) =>
        Create(StatusCodes.Status415UnsupportedMediaType, Types.UnsupportedMediaType, "The body must be application/json",
            $"Content-Type was '{contentType ?? "(none)"}'");

    public static ProblemHttpResult PayloadTooLarge(long limit) =>
        Create(StatusCodes.Status413PayloadTooLarge, Types.PayloadTooLarge, "The body is too large", $"The limit is {limit} bytes");

    public static ProblemHttpResult NotFound(string detail) =>
        Create(StatusCodes.Status404NotFound, Types.NotFound, "Not found", detail);

    public static ProblemHttpResult Unauthorized(string detail) =>
        Create(StatusCodes.Status401Unauthorized, Types.Unauthorized, "Unauthorized", detail);

    public static ProblemHttpResult QueueLimit(string detail) =>
        Create(StatusCodes.Status409Conflict, Types.QueueLimit, "Too many queues", detail);

    public static ProblemHttpResult RuntimeOffline(string detail) =>
        Create(StatusCodes.Status409Conflict, Types.RuntimeOffline, "The runtime is offline", detail);

    public static ProblemHttpResult Unavailable(string detail) =>
        Create(StatusCodes.Status503ServiceUnavailable, Types.Unavailable, "A backing store is unavailable", detail);

    /// <summary>
    /// Redis did not confirm an enqueue: the jobs may be stored. <c>ids</c> lists the id of every job of the request, in
    /// request order (the ones the request gave, and the ones the server assigned); retrying with them is idempotent.
    /// </summary>
    public static ProblemHttpResult EnqueueUnconfirmed(EnqueueUnconfirmedException exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        return Create(StatusCodes.Status503ServiceUnavailable, Types.Unavailable, "A backing store is unavailable",
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
                StatusCodes.Status404NotFound => (Types.RouteNotFound, "No such route", $"No route matches {target}"),
                StatusCodes.Status405MethodNotAllowed => (Types.MethodNotAllowed, "Method not allowed",
                    $"{request.Path} does not accept {request.Method}; it accepts {context.HttpContext.Response.Headers.Allow}"),
                StatusCodes.Status500InternalServerError => (Types.Internal, InternalTitle, InternalDetail(request)),
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
        await Create(StatusCodes.Status500InternalServerError, Types.Internal, InternalTitle, InternalDetail(context.Request),
            new() { ["traceId"] = traceId }).ExecuteAsync(context);
    }

    private const string InternalTitle = "Internal error";

    private static string InternalDetail(HttpRequest request) =>
        $"{request.Method} {request.Path} failed unexpectedly; the error is logged with this traceId";

    private static ProblemHttpResult Create(int status, string type, string title, string detail, Dictionary<string, object?>? extensions = null) =>
        TypedResults.Problem(new ProblemDetails
        {
            Status = status,
            Type = type,
            Title = title,
            Detail = detail,
            Extensions = extensions ?? [],
        });
}
