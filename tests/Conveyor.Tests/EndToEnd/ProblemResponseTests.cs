using System.Net;
using System.Text.Json;
using Conveyor.Tests.Infrastructure;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Template;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Tests.EndToEnd;

/// <summary>Every error the API answers, on every route and method, is RFC 9457 problem JSON with a stable type.</summary>
public sealed class ProblemResponseTests
{
    private static readonly HttpMethod[] Methods = [HttpMethod.Get, HttpMethod.Post, HttpMethod.Put, HttpMethod.Patch, HttpMethod.Delete, HttpMethod.Options];

    /// <summary>Each mapped route as a concrete path (route values filled in), with the methods that path is served with.</summary>
    private static List<(string Path, HashSet<string> Allowed)> ConcretePaths(SelfHostServer server, string queue)
    {
        var endpoints = server.App.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>().ToList();
        Assert.True(endpoints.Count >= 15, $"found only {endpoints.Count} endpoints");
        var values = new Dictionary<string, string> { ["queue"] = queue, ["id"] = Guid.NewGuid().ToString() };
        var paths = endpoints
            .Select(e => "/" + string.Join('/', e.RoutePattern.RawText!.Trim('/').Split('/')
                .Select(segment => segment.StartsWith('{') ? values[segment.Trim('{', '}')] : segment)))
            .Distinct()
            .ToList();
        // A path can match several templates (POST …/dead/requeue also matches DELETE …/dead/{id}).
        return [.. paths.Select(path => (path, endpoints
            .Where(e => new TemplateMatcher(TemplateParser.Parse(e.RoutePattern.RawText!.TrimStart('/')), []).TryMatch(path, []))
            .SelectMany(e => e.Metadata.GetMetadata<IHttpMethodMetadata>()!.HttpMethods)
            .ToHashSet()))];
    }

    [Fact]
    public async Task Every_route_answers_every_method_with_success_or_a_problem_and_wrong_methods_with_405()
    {
        var queue = TestRedis.UniqueQueue("routes");
        await using var server = await SelfHostServer.StartAsync(queue);
        var wrongMethods = 0;

        foreach (var (path, allowed) in ConcretePaths(server, queue))
        {
            foreach (var method in Methods)
            {
                using var request = new HttpRequestMessage(method, path);
                var response = await server.Client.SendAsync(request);
                var what = $"{method} {path}";
                if (!allowed.Contains(method.Method))
                {
                    wrongMethods++;
                    await BadInputTests.AssertProblemAsync(response, HttpStatusCode.MethodNotAllowed, "method-not-allowed", what);
                    Assert.Equal(allowed.Order(), response.Content.Headers.Allow.Order());
                }
                else if (!response.IsSuccessStatusCode)
                {
                    // Served, but refused (no body, unknown id, no bearer token): still a problem with a stable type.
                    Assert.True(response.Content.Headers.ContentType?.MediaType == "application/problem+json", $"{what}: {(int)response.StatusCode} without a problem body");
                    var problem = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
                    Assert.StartsWith("urn:conveyor:problem:", problem.GetProperty("type").GetString(), StringComparison.Ordinal);
                }
            }
        }
        Assert.True(wrongMethods > 40, $"only {wrongMethods} wrong methods were tried");
    }

    [Fact]
    public async Task Every_route_without_a_key_is_an_unauthorized_problem_except_health()
    {
        var queue = TestRedis.UniqueQueue("routes");
        await using var server = await SelfHostServer.StartAsync(queue);

        foreach (var (path, allowed) in ConcretePaths(server, queue))
        {
            foreach (var method in allowed.Where(_ => path != "/api/health"))
            {
                using var request = new HttpRequestMessage(new HttpMethod(method), path);
                await BadInputTests.AssertProblemAsync(await server.Anonymous.SendAsync(request), HttpStatusCode.Unauthorized, "unauthorized", $"{method} {path}");
            }
        }
        await AssertQueueUntouchedAsync(queue);
    }

    [Theory]
    [InlineData("GET", "/api/nothing-here")]
    [InlineData("POST", "/api/queues/q/jobs/x/y/z")]
    [InlineData("GET", "/nothing-here")]
    [InlineData("DELETE", "/api")]
    public async Task An_unknown_route_is_a_not_found_problem(string method, string path)
    {
        await using var server = await SelfHostServer.StartAsync(TestRedis.UniqueQueue("routes"));

        using var request = new HttpRequestMessage(new HttpMethod(method), path);
        var problem = await BadInputTests.AssertProblemAsync(await server.Client.SendAsync(request), HttpStatusCode.NotFound, "route-not-found", path);

        Assert.Contains(path, problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unexpected_failure_is_an_internal_problem_that_does_not_leak_the_exception()
    {
        await using var server = await SelfHostServer.StartAsync(TestRedis.UniqueQueue("routes"));
        await server.Database.ExecuteAsync("DROP TABLE runtimes");

        var response = await server.Client.GetAsync("/api/runtimes");

        var problem = await BadInputTests.AssertProblemAsync(response, HttpStatusCode.InternalServerError, "internal", "GET /api/runtimes");
        var body = problem.GetRawText();
        Assert.DoesNotContain("runtimes\" does not exist", body, StringComparison.Ordinal);
        Assert.DoesNotContain("Npgsql", body, StringComparison.Ordinal);
        Assert.True(problem.TryGetProperty("traceId", out _), "a traceId ties the answer to the logged exception");
    }

    private static async Task AssertQueueUntouchedAsync(string queue)
    {
        var db = (await TestRedis.GetAsync()).GetDatabase();
        Assert.False(await db.KeyExistsAsync($"conveyor:{{{queue}}}:jobs"));
        Assert.False(await db.SetContainsAsync("conveyor:queues", queue));
    }
}
