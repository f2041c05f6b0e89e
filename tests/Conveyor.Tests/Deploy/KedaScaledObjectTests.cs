using System.Text.RegularExpressions;
using Conveyor.Queue;

namespace Conveyor.Tests.Deploy;

/// <summary>deploy/keda/: the ScaledObject watches the key Conveyor really writes ready jobs to.</summary>
public sealed partial class KedaScaledObjectTests
{
    [GeneratedRegex("""^\s*listName:\s*"(?<key>[^"]+)"\s*$""", RegexOptions.Multiline)]
    private static partial Regex ListName();

    [GeneratedRegex("""^\s*listLength:\s*"(?<n>\d+)"\s*$""", RegexOptions.Multiline)]
    private static partial Regex ListLength();

    [Fact]
    public void The_scaled_object_watches_the_ready_list_of_its_queue_with_the_processor_s_concurrency_as_target()
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Functions.sln")))
        {
            root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("no Functions.sln above the test output");
        }
        var yaml = File.ReadAllText(Path.Combine(root, "deploy", "keda", "scaledobject.yaml"));

        var key = Assert.Single(ListName().Matches(yaml)).Groups["key"].Value;
        Assert.Equal(new QueueKeys("default").Ready.ToString(), key);
        Assert.Equal(new ProcessorOptions().Concurrency, int.Parse(Assert.Single(ListLength().Matches(yaml)).Groups["n"].Value, System.Globalization.CultureInfo.InvariantCulture));
    }
}
