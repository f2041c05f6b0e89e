using System.Security.Cryptography;
using System.Text;
using Conveyor.Api;
using Microsoft.AspNetCore.Authorization;
using Microsoft.Extensions.Options;

namespace Conveyor.SelfHost;

/// <summary>
/// The self-host's stand-in for Functions keys: every request needs one of <c>Conveyor:Api:Keys</c> in the
/// <c>x-functions-key</c> header or the <c>code</c> query parameter, unless it reaches a route marked
/// <c>AllowAnonymous</c> (health, the OpenAPI document): the same metadata the OpenAPI contract's security comes from.
/// Routing has run by now (WebApplication puts it first), so the endpoint is known.
/// </summary>
internal sealed class ApiKeyMiddleware(IOptions<ApiOptions> options) : IMiddleware
{
    private readonly byte[][] _keys = [.. options.Value.Keys.Where(k => !string.IsNullOrEmpty(k)).Select(k => SHA256.HashData(Encoding.UTF8.GetBytes(k)))];

    public async Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        if (context.GetEndpoint()?.Metadata.GetMetadata<IAllowAnonymous>() is not null || Authorized(context.Request))
        {
            await next(context);
            return;
        }
        await Problems.Unauthorized("Send a function key in the x-functions-key header or the code query parameter").ExecuteAsync(context);
    }

    private bool Authorized(HttpRequest request)
    {
        var presented = request.Headers["x-functions-key"].FirstOrDefault() ?? request.Query["code"].FirstOrDefault();
        if (string.IsNullOrEmpty(presented))
        {
            return false;
        }
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(presented));
        return _keys.Any(key => CryptographicOperations.FixedTimeEquals(key, hash));
    }
}
