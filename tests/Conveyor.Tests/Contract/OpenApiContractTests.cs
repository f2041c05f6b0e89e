using System.Text.Json;
using Conveyor.Api;
using Conveyor.Tests.Infrastructure;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Tests.Contract;

/// <summary>
/// The OpenAPI document both hosts serve at <c>GET /api/openapi.json</c>: the same bytes on both, every mapped route in
/// it, clean under Redocly CLI's recommended rules, and in agreement with the README's error table.
/// </summary>
public sealed class OpenApiContractTests
{
    [Fact]
    public async Task The_self_host_serves_without_a_key_the_document_the_code_builds()
    {
        await using var server = await SelfHostServer.StartAsync(TestRedis.UniqueQueue("openapi"));

        var served = await ContractTools.ServedDocumentAsync(server);

        // Built anew, in a process of its own as the other host does: the build depends on nothing but the code.
        Assert.Equal(served, await OpenApiContract.BuildAsync());
    }

    [Fact]
    public async Task Every_mapped_route_is_in_the_document_and_nothing_else_is()
    {
        await using var server = await SelfHostServer.StartAsync(TestRedis.UniqueQueue("openapi"));
        using var document = JsonDocument.Parse(await ContractTools.ServedDocumentAsync(server));

        var endpoints = server.App.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>().ToList();
        string[] Routes(IEnumerable<RouteEndpoint> routes) => [.. routes
            .SelectMany(e => e.Metadata.GetMetadata<IHttpMethodMetadata>()!.HttpMethods.Select(m => $"{m} /{e.RoutePattern.RawText!.Trim('/')}"))
            .Order(StringComparer.Ordinal)];
        static bool Excluded(RouteEndpoint e) => e.Metadata.GetMetadata<IExcludeFromDescriptionMetadata>()?.ExcludeFromDescription == true;

        Assert.Equal(Routes(endpoints.Where(e => !Excluded(e))),
            ContractTools.Operations(document.RootElement).Select(o => o.Route).Order(StringComparer.Ordinal));
        // A route leaves the public contract only on purpose: name it here (a dashboard, say), with the reason.
        // The document itself; and the dashboard (/api/dashboard/...): HTML pages and form posts for browsers, not an API.
        var excluded = Routes(endpoints.Where(Excluded));
        Assert.Equal(["GET /api/openapi.json"], excluded.Where(r => !r.Contains(" /api/dashboard", StringComparison.Ordinal)));
        Assert.Contains("GET /api/dashboard", excluded);
        Assert.DoesNotContain(Routes(endpoints.Where(e => !Excluded(e))), r => r.Contains(" /api/dashboard", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Every_request_body_and_every_answer_has_an_example()
    {
        await using var server = await SelfHostServer.StartAsync(TestRedis.UniqueQueue("openapi"));
        using var document = JsonDocument.Parse(await ContractTools.ServedDocumentAsync(server));

        var missing = new List<string>();
        foreach (var (_, route, operation) in ContractTools.Operations(document.RootElement))
        {
            if (operation.TryGetProperty("requestBody", out var body) && !body.GetProperty("content").GetProperty("application/json").TryGetProperty("example", out _))
            {
                missing.Add($"{route} request");
            }
            foreach (var response in operation.GetProperty("responses").EnumerateObject())
            {
                if (!response.Value.TryGetProperty("content", out var content))
                {
                    continue;
                }
                var hasExample = content.EnumerateObject().All(media => media.Value.TryGetProperty("example", out _)
                    || (media.Value.TryGetProperty("examples", out var examples) && examples.EnumerateObject().Any()));
                if (!hasExample)
                {
                    missing.Add($"{route} {response.Name}");
                }
            }
        }
        Assert.True(missing.Count == 0, "no example (add one to shared/Api/OpenApiExamples.cs): " + string.Join(", ", missing));
    }

    [Fact]
    public async Task Security_follows_the_routes_anonymity_and_the_runtime_token()
    {
        await using var server = await SelfHostServer.StartAsync(TestRedis.UniqueQueue("openapi"));
        using var document = JsonDocument.Parse(await ContractTools.ServedDocumentAsync(server));

        var schemes = document.RootElement.GetProperty("components").GetProperty("securitySchemes");
        Assert.Equal(("apiKey", "header", "x-functions-key"), Scheme(schemes.GetProperty("functionKey")));
        Assert.Equal(("apiKey", "query", "code"), Scheme(schemes.GetProperty("functionKeyQuery")));
        Assert.Equal("bearer", schemes.GetProperty("runtimeToken").GetProperty("scheme").GetString());
        foreach (var (id, route, operation) in ContractTools.Operations(document.RootElement))
        {
            var alternatives = operation.GetProperty("security").EnumerateArray()
                .Select(r => string.Join('+', r.EnumerateObject().Select(s => s.Name).Order(StringComparer.Ordinal))).ToList();
            string[] expected = id switch
            {
                "GetHealth" => [],
                "RuntimeHeartbeat" or "ClaimJobs" or "AckClaims" or "FailClaims" or "ExtendClaims" => ["functionKey+runtimeToken", "functionKeyQuery+runtimeToken"],
                _ => ["functionKey", "functionKeyQuery"],
            };
            Assert.True(expected.SequenceEqual(alternatives), $"{route}: security {string.Join(" | ", alternatives)}");
        }

        static (string?, string?, string?) Scheme(JsonElement scheme) =>
            (scheme.GetProperty("type").GetString(), scheme.GetProperty("in").GetString(), scheme.GetProperty("name").GetString());
    }

    [Fact]
    public async Task The_served_document_passes_Redocly_CLI_recommended_rules()
    {
        var redocly = Environment.GetEnvironmentVariable("CONVEYOR_REDOCLY") is { Length: > 0 } configured
            ? configured
            : Path.Combine(ContractTools.RedoclyDirectory, "node_modules", ".bin", "redocly");
        Assert.True(File.Exists(redocly),
            $"Redocly CLI is not installed at {redocly}: `./dev test` installs the pinned version (npm ci in .ci/redocly).");
        await using var server = await SelfHostServer.StartAsync(TestRedis.UniqueQueue("openapi"));
        // Where redocly.yaml and its ignore file expect it (git-ignored); the document is the same on every run.
        await File.WriteAllBytesAsync(Path.Combine(ContractTools.RedoclyDirectory, "openapi.json"), await ContractTools.ServedDocumentAsync(server));

        var lint = await ContractTools.RunAsync(redocly, ["lint", "--config", "redocly.yaml", "--format", "json", "openapi.json"],
            ContractTools.RedoclyDirectory, TimeSpan.FromMinutes(3));

        var json = lint.Stdout[lint.Stdout.IndexOf('{', StringComparison.Ordinal)..];
        using var report = JsonDocument.Parse(json);
        var totals = report.RootElement.GetProperty("totals");
        var problems = string.Join('\n', report.RootElement.GetProperty("problems").EnumerateArray().Select(p =>
            $"{p.GetProperty("severity").GetString()} {p.GetProperty("ruleId").GetString()}: {p.GetProperty("message").GetString()} at "
            + string.Join(", ", p.GetProperty("location").EnumerateArray().Select(l => l.GetProperty("pointer").GetString()))));
        Assert.True(totals.GetProperty("errors").GetInt32() == 0 && totals.GetProperty("warnings").GetInt32() == 0 && lint.ExitCode == 0,
            $"Redocly CLI: {totals}\n{problems}\n{lint}");
        Assert.Equal(1, totals.GetProperty("ignored").GetInt32()); // the one in .ci/redocly/.redocly.lint-ignore.yaml
    }

    [Fact]
    public void The_README_error_table_is_the_problem_catalog()
    {
        var readme = File.ReadAllLines(Path.Combine(ContractTools.RepositoryRoot, "README.md"));
        var header = Array.IndexOf(readme, "| `type` | status | when |");
        Assert.True(header > 0, "README.md has no error table headed | `type` | status | when |");
        var rows = readme.Skip(header + 2).TakeWhile(line => line.StartsWith('|')).ToList();

        Assert.Equal(Problems.Catalog.All.Select(p => $"| `{p.Type}` | {p.Status} | {p.When} |"), rows);
        Assert.Equal(typeof(Problems.Types).GetFields().Select(f => (string)f.GetValue(null)!).Order(StringComparer.Ordinal),
            Problems.Catalog.All.Select(p => p.Type).Order(StringComparer.Ordinal));
    }
}
