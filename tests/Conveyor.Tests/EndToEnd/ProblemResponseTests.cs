using System.Net;
using System.Text.Json;
using Conveyor.Tests.Infrastructure;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Template;

namespace Conveyor.Tests.EndToEnd;

/// <summary>
/// Problems on the self-host, plus what only the self-host answers itself: a wrong method (405 with Allow), an unknown
/// route (404) and a missing key (401). In Azure Functions the host answers all three before the worker sees the
/// request (its own 404 for a path or method no function serves, its own 401 for a missing function key), so the
/// Functions subclass has nothing of ours to test there.
/// </summary>
public sealed class ProblemResponsesOnSelfHost(SelfHostApp app) : ProblemResponseTests(app), IClassFixture<SelfHostApp>
{
    private readonly SelfHostApp _app = app;

    [Fact]
    public async Task Every_route_answers_a_method_it_does_not_serve_with_a_405_problem_that_lists_the_allowed_ones()
    {
        var wrongMethods = 0;

        foreach (var (path, allowed) in ConcretePaths(ApiRoutes(_app.Routes()), TestRedis.UniqueQueue("routes")))
        {
            foreach (var method in Methods.Where(m => !allowed.Contains(m.Method)))
            {
                wrongMethods++;
                using var request = new HttpRequestMessage(method, path);
                var response = await _app.Client.SendAsync(request);
                await BadInputTests.AssertProblemAsync(response, HttpStatusCode.MethodNotAllowed, "method-not-allowed", $"{method} {path}");
                Assert.Equal(allowed.Order(), response.Content.Headers.Allow.Order());
            }
        }
        Assert.True(wrongMethods > 40, $"only {wrongMethods} wrong methods were tried");
    }

    [Fact]
    public async Task Every_route_without_a_key_is_an_unauthorized_problem_except_health()
    {
        var queue = TestRedis.UniqueQueue("routes");

        foreach (var (path, allowed) in ConcretePaths(ApiRoutes(_app.Routes()), queue))
        {
            foreach (var method in allowed.Where(_ => path is not ("/api/health" or "/api/openapi.json")))
            {
                using var request = new HttpRequestMessage(new HttpMethod(method), path);
                await BadInputTests.AssertProblemAsync(await _app.Server.Anonymous.SendAsync(request), HttpStatusCode.Unauthorized, "unauthorized", $"{method} {path}");
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
        using var request = new HttpRequestMessage(new HttpMethod(method), path);
        var problem = await BadInputTests.AssertProblemAsync(await _app.Client.SendAsync(request), HttpStatusCode.NotFound, "route-not-found", path);

        Assert.Contains(path, problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }
}

#if !FUNCTIONS_STANDIN
/// <summary>Problems on the real Functions worker.</summary>
public sealed class ProblemResponsesOnFunctions(FunctionsWorkerApp app) : ProblemResponseTests(app), IClassFixture<FunctionsWorkerApp>;
#endif

/// <summary>
/// Every error the API answers, on every route it serves, is RFC 9457 problem JSON with a stable type: on both hosts
/// (a subclass per host above), with each host's own route table.
/// </summary>
public abstract class ProblemResponseTests(ConveyorApp app)
{
    protected static readonly HttpMethod[] Methods = [HttpMethod.Get, HttpMethod.Post, HttpMethod.Put, HttpMethod.Patch, HttpMethod.Delete, HttpMethod.Options];

    /// <summary>
    /// Each route of <paramref name="routes"/> (<c>METHOD /api/template</c>) as a concrete path, route values filled
    /// in, with every method that path is served with: a path can match several templates (POST …/dead/requeue also
    /// matches DELETE …/dead/{id}).
    /// </summary>
    /// <summary>
    /// The API's routes: all but the dashboard's (<c>/api/dashboard/...</c>), which answer browsers with pages and
    /// redirects, not problem JSON, behind their own sign-in (tests in <c>Dashboard/</c>).
    /// </summary>
    protected static List<string> ApiRoutes(IReadOnlyList<string> routes) =>
        [.. routes.Where(r => !r.Contains(" /api/dashboard", StringComparison.Ordinal))];

    protected static List<(string Path, HashSet<string> Allowed)> ConcretePaths(IReadOnlyList<string> routes, string queue)
    {
        Assert.True(routes.Count >= 15, $"found only {routes.Count} routes");
        var templates = routes.Select(r => r.Split(' ', 2)).Select(r => (Method: r[0], Template: r[1])).ToList();
        var values = new Dictionary<string, string> { ["queue"] = queue, ["id"] = Guid.NewGuid().ToString() };
        var paths = templates
            .Select(t => "/" + string.Join('/', t.Template.Trim('/').Split('/')
                .Select(segment => segment.StartsWith('{') ? values[segment.Trim('{', '}').Split(':')[0]] : segment)))
            .Distinct()
            .ToList();
        return [.. paths.Select(path => (path, templates
            .Where(t => new TemplateMatcher(TemplateParser.Parse(t.Template.TrimStart('/')), []).TryMatch(path, new RouteValueDictionary()))
            .Select(t => t.Method)
            .ToHashSet()))];
    }

    [Fact]
    public async Task Every_route_answers_every_method_it_serves_with_success_or_a_problem()
    {
        var served = 0;

        foreach (var (path, allowed) in ConcretePaths(ApiRoutes(app.Routes()), TestRedis.UniqueQueue("routes")))
        {
            foreach (var method in allowed)
            {
                served++;
                using var request = new HttpRequestMessage(new HttpMethod(method), path);
                var response = await app.Client.SendAsync(request);
                var what = $"{method} {path}";
                if (!response.IsSuccessStatusCode)
                {
                    // Served, but refused (no body, unknown id, no bearer token): still a problem with a stable type.
                    var text = await response.Content.ReadAsStringAsync();
                    Assert.True(response.Content.Headers.ContentType?.MediaType == "application/problem+json", $"{what}: {(int)response.StatusCode} without a problem body: {text}");
                    var problem = JsonDocument.Parse(text).RootElement;
                    Assert.StartsWith("urn:conveyor:problem:", problem.GetProperty("type").GetString(), StringComparison.Ordinal);
                    Assert.Equal((int)response.StatusCode, problem.GetProperty("status").GetInt32());
                }
            }
        }
        var routes = ApiRoutes(app.Routes()).Count;
        Assert.True(served >= routes, $"tried {served} requests for {routes} routes"); // more: a path can match several templates
    }

    [Fact]
    public async Task An_unexpected_failure_is_an_internal_problem_that_does_not_leak_the_exception()
    {
        // The table comes back afterwards: the app serves the rest of the class.
        await app.Database.ExecuteAsync("ALTER TABLE runtimes RENAME TO runtimes_away");
        HttpResponseMessage response;
        try
        {
            response = await app.Client.GetAsync("/api/runtimes");
        }
        finally
        {
            await app.Database.ExecuteAsync("ALTER TABLE runtimes_away RENAME TO runtimes");
        }

        var problem = await BadInputTests.AssertProblemAsync(response, HttpStatusCode.InternalServerError, "internal", "GET /api/runtimes");
        var body = problem.GetRawText();
        Assert.DoesNotContain("does not exist", body, StringComparison.Ordinal);
        Assert.DoesNotContain("Npgsql", body, StringComparison.Ordinal);
        Assert.True(problem.TryGetProperty("traceId", out _), "a traceId ties the answer to the logged exception");
    }

    protected static async Task AssertQueueUntouchedAsync(string queue)
    {
        var db = (await TestRedis.GetAsync()).GetDatabase();
        Assert.False(await db.KeyExistsAsync($"conveyor:{{{queue}}}:jobs"));
        Assert.False(await db.SetContainsAsync("conveyor:queues", queue));
    }
}
