using Conveyor.Api;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Functions.Http;

public sealed class GetOpenApiDocumentFunction
{
    [Function("GetOpenApiDocument")]
    public static async Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Anonymous, "get", Route = "openapi.json")] HttpRequest req, CancellationToken cancellationToken)
        => await OpenApiContract.GetAsync(cancellationToken);
}
