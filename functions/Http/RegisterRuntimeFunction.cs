using Conveyor.Api;
using Conveyor.Presence;
using Microsoft.AspNetCore.Http;
using Microsoft.Azure.Functions.Worker;
using Microsoft.Extensions.Options;

namespace Conveyor.Functions.Http;

public sealed class RegisterRuntimeFunction(RuntimeRegistry registry, IOptions<ApiOptions> options)
{
    [Function("RegisterRuntime")]
    public async Task<IResult> Run(
        [HttpTrigger(AuthorizationLevel.Function, "post", Route = "runtimes")] HttpRequest req, CancellationToken cancellationToken)
        => await RuntimesApi.RegisterAsync(req, registry, options, cancellationToken);
}
