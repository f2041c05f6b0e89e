using Conveyor.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;

namespace Conveyor.Api;

/// <summary>Reachability of the backing stores; the one anonymous route.</summary>
public static class HealthApi
{
    private static readonly TimeSpan CheckTimeout = TimeSpan.FromSeconds(5);

    public static IEndpointRouteBuilder MapHealthApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/health", GetHealthAsync).WithTags(OpenApiContract.HealthTag).WithName("GetHealth").AllowAnonymous()
            .Produces<HealthResponse>(StatusCodes.Status503ServiceUnavailable).Answers(Problems.Catalog.Internal)
            .WithSummary("Check that Redis and PostgreSQL answer")
            .WithDescription("200 when both answer within 5 seconds, 503 with the same body (`unhealthy`, and which check failed) when either does not. Needs no key.");
        return app;
    }

    /// <summary>200 when Redis and PostgreSQL answer, 503 (same body) when either does not.</summary>
    public static async Task<Results<Ok<HealthResponse>, JsonHttpResult<HealthResponse>>> GetHealthAsync(
        RedisConnection redis, Npgsql.NpgsqlDataSource postgres, CancellationToken cancellationToken)
    {
        var checks = new Dictionary<string, string>
        {
            ["redis"] = await CheckAsync(async () => await (await redis.GetDatabaseAsync()).PingAsync(), cancellationToken),
            ["postgres"] = await CheckAsync(async () =>
            {
                await using var command = postgres.CreateCommand("SELECT 1");
                await command.ExecuteScalarAsync(cancellationToken);
            }, cancellationToken),
        };
        var healthy = checks.Values.All(v => v == "ok");
        var response = new HealthResponse(healthy ? "healthy" : "unhealthy", checks);
        return healthy ? TypedResults.Ok(response) : TypedResults.Json(response, statusCode: StatusCodes.Status503ServiceUnavailable);
    }

    private static async Task<string> CheckAsync(Func<Task> check, CancellationToken cancellationToken)
    {
        try
        {
            await check().WaitAsync(CheckTimeout, cancellationToken);
            return "ok";
        }
#pragma warning disable CA1031 // Health reports any failure as text instead of failing itself.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            return $"unreachable: {ex.GetType().Name}";
        }
    }
}
