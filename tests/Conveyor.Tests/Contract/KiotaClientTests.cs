using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Text.Json;
using Conveyor.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace Conveyor.Tests.Contract;

/// <summary>
/// A client no one here wrote: Kiota (the dotnet tool pinned in .config/dotnet-tools.json) generates C# from the document
/// the self-host serves, <c>tests/Conveyor.ClientSmoke</c> compiles around it and calls every route with real Redis and
/// PostgreSQL behind. What the generator cannot express fails here, and is a bug of the document.
/// </summary>
public sealed class KiotaClientTests(ITestOutputHelper output)
{
    private static readonly Dictionary<string, string> KiotaQuiet = new()
    {
        ["KIOTA_OFFLINE_ENABLED"] = "true", // no update check (it would reach the internet)
        ["KIOTA_TUTORIAL_ENABLED"] = "false",
        ["KIOTA_CLI_TELEMETRY_OPTOUT"] = "true",
        ["KIOTA_CONSOLE_COLORS_ENABLED"] = "false",
    };

    [Fact]
    public async Task A_client_Kiota_generates_from_the_served_document_calls_every_route()
    {
        var queue = TestRedis.UniqueQueue("kiota");
        await using var server = await SelfHostServer.StartAsync(queue);
        using var served = new ServedRoutes(server);
        var work = Directory.CreateTempSubdirectory("conveyor-kiota-");
        try
        {
            var documentPath = Path.Combine(work.FullName, "openapi.json");
            await File.WriteAllBytesAsync(documentPath, await ContractTools.ServedDocumentAsync(server));
            var client = Path.Combine(work.FullName, "client");

            var generate = await ContractTools.RunAsync("dotnet",
                ["tool", "run", "kiota", "generate", "--language", "CSharp", "--openapi", documentPath, "--output", client,
                 "--class-name", "ConveyorClient", "--namespace-name", "Conveyor.Client", "--exclude-backward-compatible", "--log-level", "Warning"],
                ContractTools.RepositoryRoot, TimeSpan.FromMinutes(5), KiotaQuiet);
            output.WriteLine(generate.ToString());
            Assert.True(generate.ExitCode == 0, $"Kiota could not generate a client (did `dotnet tool restore` run? ./dev test does it):\n{generate}");
            var warnings = (generate.Stdout + generate.Stderr).Split('\n').Where(l => l.StartsWith("warn:", StringComparison.Ordinal) || l.StartsWith("fail:", StringComparison.Ordinal)).ToList();
            Assert.True(warnings.Count == 0, "Kiota reports what it cannot express in the document:\n" + string.Join('\n', warnings));

            var build = await ContractTools.RunAsync("dotnet",
                ["build", Path.Combine(ContractTools.RepositoryRoot, "tests", "Conveyor.ClientSmoke", "Conveyor.ClientSmoke.csproj"),
                 $"-p:GeneratedClient={client}", $"-p:BaseOutputPath={work.FullName}/bin/", $"-p:BaseIntermediateOutputPath={work.FullName}/obj/",
                 "--disable-build-servers", "-nologo", "-v", "q"],
                ContractTools.RepositoryRoot, TimeSpan.FromMinutes(10));
            output.WriteLine(build.ToString());
            Assert.True(build.ExitCode == 0, $"the smoke program does not compile against the generated client:\n{build}");

            var smoke = await ContractTools.RunAsync("dotnet",
                [Path.Combine(work.FullName, "bin", "Debug", "net10.0", "Conveyor.ClientSmoke.dll"), server.Client.BaseAddress!.ToString(), SelfHostServer.Key, queue],
                work.FullName, TimeSpan.FromMinutes(3));
            output.WriteLine(smoke.ToString());
            Assert.True(smoke.ExitCode == 0, $"the generated client's calls failed:\n{smoke}");

            // What the server saw, not what the program says it did: each operation answered with success at least once.
            // (The server records a request's metric as it finishes with it, possibly just after the client has the answer.)
            using var document = JsonDocument.Parse(await File.ReadAllBytesAsync(documentPath));
            var routes = ContractTools.Operations(document.RootElement).Select(o => o.Route).ToList();
            try
            {
                await Wait.UntilAsync(() => routes.All(served.Succeeded), "the server saw a success of every route", seconds: 10);
            }
            catch (TimeoutException)
            {
                Assert.Fail($"routes the generated client never called with success: {string.Join(", ", routes.Where(r => !served.Succeeded(r)))}\nserved: {served}");
            }
            output.WriteLine($"kiota generate {generate.Elapsed.TotalSeconds:F1} s, dotnet build {build.Elapsed.TotalSeconds:F1} s, smoke run {smoke.Elapsed.TotalSeconds:F1} s");
        }
        finally
        {
            work.Delete(recursive: true);
        }
    }

    /// <summary>"METHOD /route" → the statuses this server answered, from its own <c>http.server.request.duration</c> metric.</summary>
    private sealed class ServedRoutes : IDisposable
    {
        private readonly ConcurrentDictionary<string, ConcurrentBag<int>> _answers = new();
        private readonly MeterListener _listener = new();

        public ServedRoutes(SelfHostServer server)
        {
            var meters = server.App.Services.GetRequiredService<IMeterFactory>();
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Scope == meters && instrument.Name == "http.server.request.duration")
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<double>((_, _, tags, _) =>
            {
                string? method = null, route = null;
                var status = 0;
                foreach (var tag in tags)
                {
                    switch (tag.Key)
                    {
                        case "http.request.method": method = tag.Value as string; break;
                        case "http.route": route = tag.Value as string; break;
                        case "http.response.status_code": status = Convert.ToInt32(tag.Value, System.Globalization.CultureInfo.InvariantCulture); break;
                        default: break;
                    }
                }
                if (method is not null && route is not null)
                {
                    _answers.GetOrAdd($"{method} /{route.Trim('/')}", _ => []).Add(status);
                }
            });
            _listener.Start();
        }

        public bool Succeeded(string route) => _answers.TryGetValue(route, out var statuses) && statuses.Any(s => s is >= 200 and < 300);

        public override string ToString() => string.Join(", ", _answers.Select(a => $"{a.Key}: {string.Join('/', a.Value.Distinct().Order())}"));

        public void Dispose() => _listener.Dispose();
    }
}
