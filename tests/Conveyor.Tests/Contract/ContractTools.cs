using System.Diagnostics;
using System.Text.Json;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.Contract;

/// <summary>What one run of an external tool did.</summary>
public sealed record ToolRun(string Command, int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed)
{
    public override string ToString() => $"{Command}: exit {ExitCode} after {Elapsed.TotalSeconds:F1} s\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";
}

/// <summary>The served OpenAPI document and the tools that read it (Redocly CLI, Kiota, dotnet), run as a user would.</summary>
public static class ContractTools
{
    public static readonly string RepositoryRoot = FindRepositoryRoot();

    /// <summary>Where Redocly CLI's lint configuration lives; <c>./dev test</c> installs the pinned CLI here (npm ci).</summary>
    public static readonly string RedoclyDirectory = Path.Combine(RepositoryRoot, ".ci", "redocly");

    /// <summary>The document as the self-host serves it to a caller without a key.</summary>
    public static Task<byte[]> ServedDocumentAsync(SelfHostServer server) => ServedDocumentAsync(server.Anonymous);

    /// <summary>The document as a host serves it to <paramref name="client"/>.</summary>
    public static async Task<byte[]> ServedDocumentAsync(HttpClient client)
    {
        using var response = await client.GetAsync(Conveyor.Api.OpenApiContract.Route);
        var body = await response.Content.ReadAsByteArrayAsync();
        Assert.True(response.IsSuccessStatusCode, $"GET {Conveyor.Api.OpenApiContract.Route}: {(int)response.StatusCode} {System.Text.Encoding.UTF8.GetString(body)}");
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        return body;
    }

    /// <summary>Each operation of the document: (operationId, "METHOD /api/path", operation).</summary>
    public static IEnumerable<(string Id, string Route, JsonElement Operation)> Operations(JsonElement document)
    {
        var pathBase = document.GetProperty("servers")[0].GetProperty("url").GetString();
        foreach (var path in document.GetProperty("paths").EnumerateObject())
        {
            foreach (var operation in path.Value.EnumerateObject())
            {
                yield return (operation.Value.GetProperty("operationId").GetString()!, $"{operation.Name.ToUpperInvariant()} {pathBase}{path.Name}", operation.Value);
            }
        }
    }

    /// <summary>
    /// Runs a tool to its end (killing it and its children at <paramref name="timeout"/>). Without the MSBuild variables
    /// <c>dotnet test</c> sets for itself, so a nested <c>dotnet build</c> behaves as it would in a shell.
    /// </summary>
    public static async Task<ToolRun> RunAsync(string file, IEnumerable<string> arguments, string workingDirectory, TimeSpan timeout,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory,
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        foreach (var name in start.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            start.Environment.Remove(name);
        }
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[name] = value;
        }
        var command = $"{file} {string.Join(' ', start.ArgumentList)}";
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {command}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            Assert.Fail($"{command} did not end within {timeout}:\n{await stdout}\n{await stderr}");
        }
        return new ToolRun(command, process.ExitCode, await stdout, await stderr, clock.Elapsed);
    }

    private static string FindRepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "Functions.sln")))
            {
                return directory.FullName;
            }
        }
        throw new InvalidOperationException($"no Functions.sln above {AppContext.BaseDirectory}");
    }
}
