using System.Text;
using Azure.Core;
using Conveyor.Functions.Queues;
using Conveyor.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;

namespace Conveyor.Tests.Functions;

/// <summary>The Functions app's wake-up sender against Azurite's queue service.</summary>
public sealed class StorageWakeSenderTests
{
    [Fact]
    public async Task Posts_one_message_per_wake_up_naming_the_queue_in_the_encoding_host_json_expects_creating_the_queue_if_missing()
    {
        var wakeQueue = TestAzurite.UniqueQueueName("wake");
        var sender = new StorageWakeSender(await ConfigurationAsync(wakeQueue), new FakeTokenCredential());

        await sender.SendAsync("orders", 3, CancellationToken.None);

        var raw = await TestAzurite.RawClientAsync(wakeQueue);
        var messages = (await raw.ReceiveMessagesAsync(maxMessages: 32)).Value;
        Assert.Equal(3, messages.Length);
        var encoding = HostJsonQueueEncoding();
        Assert.All(messages, m => Assert.Equal("orders", Decode(m.Body.ToString(), encoding)));
    }

    [Fact]
    public void Without_a_connection_string_the_client_signs_in_with_the_app_s_identity_on_the_account_s_queue_endpoint()
    {
        var byName = StorageWakeSender.CreateClient(Configuration(new()
        {
            ["AzureWebJobsStorage:accountName"] = "stconveyor",
            ["ConveyorWakeQueue"] = "conveyor-wake",
        }), new FakeTokenCredential());
        Assert.Equal(new Uri("https://stconveyor.queue.core.windows.net/conveyor-wake"), byName.Uri);

        var byUri = StorageWakeSender.CreateClient(Configuration(new()
        {
            ["AzureWebJobsStorage:queueServiceUri"] = "https://stconveyor.queue.core.windows.net/",
        }), new FakeTokenCredential());
        Assert.Equal(new Uri("https://stconveyor.queue.core.windows.net/" + StorageWakeSender.DefaultQueue), byUri.Uri);

        var error = Assert.Throws<InvalidOperationException>(() => StorageWakeSender.CreateClient(Configuration(new()), new FakeTokenCredential()));
        Assert.Contains("AzureWebJobsStorage__accountName", error.Message, StringComparison.Ordinal);
    }

    /// <summary>How the host's Storage Queues extension decodes a message body: host.json <c>extensions.queues.messageEncoding</c> (default base64).</summary>
    internal static string HostJsonQueueEncoding()
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "host.json")))
        {
            root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("no host.json above the test output");
        }
        using var hostJson = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(root, "host.json")));
        return hostJson.RootElement.GetProperty("extensions").GetProperty("queues").TryGetProperty("messageEncoding", out var encoding)
            ? encoding.GetString()! : "base64";
    }

    internal static string Decode(string stored, string encoding) =>
        encoding == "base64" ? Encoding.UTF8.GetString(Convert.FromBase64String(stored)) : stored;

    internal static async Task<IConfiguration> ConfigurationAsync(string wakeQueue) => Configuration(new()
    {
        ["AzureWebJobsStorage"] = await TestAzurite.ConnectionStringAsync(),
        ["ConveyorWakeQueue"] = wakeQueue,
    });

    private static IConfiguration Configuration(Dictionary<string, string?> values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values).Build();
}
