using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using StackExchange.Redis;

namespace Conveyor.Api;

/// <summary>RFC 9457 problem details with a stable <c>type</c> per error.</summary>
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

    public static ProblemHttpResult Unavailable(string detail) =>
        Create(StatusCodes.Status503ServiceUnavailable, Types.Unavailable, "A backing store is unavailable", detail);

    /// <summary>Maps the exceptions the engine raises on purpose; anything else stays a 500.</summary>
    public static bool TryMap(Exception exception, out ProblemHttpResult problem)
    {
        problem = exception switch
        {
            ConveyorValidationException validation => Validation(validation.Field, validation.Reason),
            ConveyorQueueLimitException limit => QueueLimit(limit.Message),
            RedisConnectionException or RedisTimeoutException => Unavailable("Redis did not answer; retry later"),
            Npgsql.NpgsqlException { IsTransient: true } => Unavailable("PostgreSQL did not answer; retry later"),
            _ => null!,
        };
        return problem is not null;
    }

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
