using Conveyor.Api;
using Conveyor.Storage;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;
using Npgsql;

namespace Conveyor.Functions.Http;

public sealed class GetHealthFunction(RedisConnection redis, NpgsqlDataSource postgres)
{
    [Function("GetHealth")]
    public async Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Anonymous, "get", Route = "health")] HttpRequest req, CancellationToken cancellationToken)
        => await HealthApi.GetHealthAsync(redis, postgres, cancellationToken);
}
