using System.Text.Json;
using Conveyor.Tests.Contract;

namespace Conveyor.Tests.Deploy;

/// <summary>
/// Cold start: what `dotnet publish` makes of the Functions app (azd deploy, func publish, the zip of docs/deploy.md) is
/// ReadyToRun for the 64-bit Linux workers of Flex Consumption, and so is the scale bench's, whose instances play woken
/// Functions instances; a plain build (tests, `dotnet run`) stays portable.
/// </summary>
public sealed class ReadyToRunTests
{
    [Theory]
    [InlineData("functions/Conveyor.Functions.csproj")]
    [InlineData("bench/Conveyor.Bench/Conveyor.Bench.csproj")]
    public async Task Publishing_compiles_ReadyToRun_for_linux_x64_and_a_build_stays_portable(string project)
    {
        var published = await PropertiesAsync(project, publishing: true);
        Assert.Equal("true", published["PublishReadyToRun"]);
        Assert.Equal("linux-x64", published["RuntimeIdentifier"]);

        var built = await PropertiesAsync(project, publishing: false);
        Assert.Equal("", built["RuntimeIdentifier"]);
    }

    /// <summary>The project's evaluated properties, as `dotnet publish` (which sets _IsPublishing) or `dotnet build` sees them.</summary>
    private static async Task<Dictionary<string, string>> PropertiesAsync(string project, bool publishing)
    {
        var run = await ContractTools.RunAsync("dotnet",
            ["msbuild", project, "-getProperty:PublishReadyToRun", "-getProperty:RuntimeIdentifier", $"-p:_IsPublishing={(publishing ? "true" : "false")}"],
            ContractTools.RepositoryRoot, TimeSpan.FromMinutes(2));
        Assert.True(run.ExitCode == 0, $"{run.Command} failed:\n{run.Stdout}\n{run.Stderr}");
        using var output = JsonDocument.Parse(run.Stdout);
        return output.RootElement.GetProperty("Properties").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "");
    }
}
