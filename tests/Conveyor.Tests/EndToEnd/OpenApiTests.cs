using System.Net.Http.Json;
using System.Text.Json;
using Conveyor.Tests.Infrastructure;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Tests.EndToEnd;

public sealed class OpenApiTests
{
    [Fact]
    public async Task The_openapi_document_describes_every_route_and_the_request_bodies()
    {
        await using var server = await SelfHostServer.StartAsync(TestRedis.UniqueQueue("openapi"));

        var document = await server.Client.GetFromJsonAsync<JsonElement>("/api/openapi.json");

        var paths = document.GetProperty("paths");
        var routes = server.App.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .Where(e => e.RoutePattern.RawText != "/api/openapi.json");
        foreach (var route in routes)
        {
            var path = "/" + route.RoutePattern.RawText!.Trim('/');
            Assert.True(paths.TryGetProperty(path, out var item), $"{path} is missing from the OpenAPI document");
            foreach (var method in route.Metadata.GetMetadata<Microsoft.AspNetCore.Routing.IHttpMethodMetadata>()!.HttpMethods)
            {
                Assert.True(item.TryGetProperty(method.ToLowerInvariant(), out _), $"{method} {path} is missing");
            }
        }
        var enqueue = paths.GetProperty("/api/queues/{queue}/jobs").GetProperty("post");
        Assert.True(enqueue.GetProperty("requestBody").GetProperty("content").TryGetProperty("application/json", out _));
        Assert.True(enqueue.GetProperty("responses").TryGetProperty("202", out _));
        Assert.True(enqueue.GetProperty("responses").TryGetProperty("400", out _));
    }
}
