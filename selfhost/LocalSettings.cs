using System.Text.Json;

namespace Conveyor.SelfHost;

/// <summary>Reads the <c>Values</c> of a Functions <c>local.settings.json</c> as configuration (<c>A__B</c> → <c>A:B</c>).</summary>
internal static class LocalSettings
{
    public static IConfigurationBuilder AddLocalSettings(this IConfigurationBuilder configuration, string contentRoot)
    {
        var file = FindUpwards(contentRoot) ?? FindUpwards(Directory.GetCurrentDirectory());
        if (file is null)
        {
            return configuration;
        }
        using var document = JsonDocument.Parse(File.ReadAllText(file));
        if (!document.RootElement.TryGetProperty("Values", out var values))
        {
            return configuration;
        }
        var settings = values.EnumerateObject().ToDictionary(v => v.Name.Replace("__", ":", StringComparison.Ordinal), v => (string?)v.Value.ToString());
        return configuration.AddInMemoryCollection(settings);
    }

    private static string? FindUpwards(string start)
    {
        for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "local.settings.json");
            if (File.Exists(candidate))
            {
                return candidate;
            }
            if (File.Exists(Path.Combine(dir.FullName, "Functions.sln")))
            {
                return null;
            }
        }
        return null;
    }
}
