using Conveyor.Presence;
using Conveyor.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;

namespace Conveyor.Api;

/// <summary>
/// The stale sweeper's latest verdict, shared by every instance (Redis), and Conveyor's own beat intake.
/// </summary>
/// <param name="Disruption">
/// <c>none</c>, or why the latest sweep held silent runtimes back from going offline: <c>intakeInterrupted</c>,
/// <c>fleetSilent</c> or <c>massSilence</c> (see README, "Disruption mode").
/// </param>
/// <param name="Since">When the sweeps entered that verdict; null before the first sweep.</param>
/// <param name="SilentRuntimes">Online runtimes the latest sweep found silent for longer than the stale window.</param>
/// <param name="HeldBack">Of those, how many it left online because of the disruption.</param>
/// <param name="LastSweepAt">When the latest sweep ran (Redis time); null before the first.</param>
/// <param name="BeatIntakeSince">Since when Conveyor's beat intake has been unbroken (heartbeat flushes no further apart than the gap); null before the first flush.</param>
/// <param name="LastFlushAt">When the latest heartbeat flush began (Redis time); null before the first.</param>
public sealed record PresenceHealth(
    SweepDisruption Disruption, DateTimeOffset? Since, long SilentRuntimes, long HeldBack, DateTimeOffset? LastSweepAt,
    DateTimeOffset? BeatIntakeSince, DateTimeOffset? LastFlushAt);

/// <summary>Reachability of the backing stores and the sweeper's disruption verdict; the one anonymous route.</summary>
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

    /// <summary>
    /// 200 when Redis and PostgreSQL answer, 503 (same body) when either does not. A sweeper in disruption mode does not
    /// make the service unhealthy: it is Conveyor protecting the fleet, shown under <c>presence</c>.
    /// </summary>
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
        PresenceHealth? presence = null;
        if (checks["redis"] == "ok")
        {
            await CheckAsync(async () => presence = await ReadPresenceAsync(await redis.GetDatabaseAsync()), cancellationToken);
        }
        var response = new HealthResponse(healthy ? "healthy" : "unhealthy", checks, presence);
        return healthy ? TypedResults.Ok(response) : TypedResults.Json(response, statusCode: StatusCodes.Status503ServiceUnavailable);
    }

    private static async Task<PresenceHealth> ReadPresenceAsync(StackExchange.Redis.IDatabase db)
    {
        var verdict = db.HashGetAsync(PresenceKeys.Disruption, ["mode", "since", "silent", "held", "at"]);
        var intake = db.StringGetAsync(PresenceKeys.Intake);
        var fields = await verdict;
        var stamp = ((string?)await intake)?.Split('|');
        static DateTimeOffset? At(string? ms) => long.TryParse(ms, out var v) ? new DateTimeOffset(RedisTime.ToUtc(v)) : null;
        var disruption = Enum.GetValues<SweepDisruption>().FirstOrDefault(d => StaleSweeper.ModeName(d) == (string?)fields[0]);
        return new PresenceHealth(
            disruption, At(fields[1]), (long?)fields[2] ?? 0, (long?)fields[3] ?? 0, At(fields[4]),
            At(stamp is [_, var since] ? since : null), At(stamp is [var last, _] ? last : null));
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
