using Azure.Core;
using Azure.Storage.Queues;
using Conveyor.Queue;
using Microsoft.Extensions.Configuration;

namespace Conveyor.Functions.Queues;

/// <summary>
/// Posts wake-ups to the Azure Storage queue that <see cref="WakeFunction"/> listens on (app setting
/// <c>ConveyorWakeQueue</c>), in the storage account of <c>AzureWebJobsStorage</c>: a connection string locally
/// (Azurite), the app's identity in Azure (<c>AzureWebJobsStorage__queueServiceUri</c> or <c>__accountName</c>).
/// Messages are Base64, as host.json's <c>extensions.queues.messageEncoding</c> expects.
/// </summary>
internal sealed class StorageWakeSender(IConfiguration configuration, TokenCredential credential) : IWakeSender
{
    public const string QueueSetting = "ConveyorWakeQueue";
    public const string DefaultQueue = "conveyor-wake";
    private const string Connection = "AzureWebJobsStorage";

    // Built at the first post, so an app whose storage settings are wrong still serves HTTP (and says why per post).
    private readonly Lazy<QueueClient> _client = new(() => CreateClient(configuration, credential));
    private int _created;

    public async Task SendAsync(string queue, int count, CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _created, 1) == 0)
        {
            // Infra and ./dev up create it; a fresh Azurite or a renamed queue would otherwise drop every wake-up.
            await _client.Value.CreateIfNotExistsAsync(cancellationToken: cancellationToken);
        }
        for (var i = 0; i < count; i++)
        {
            await _client.Value.SendMessageAsync(queue, cancellationToken);
        }
    }

    /// <summary>The wake queue's client, from the same settings the Functions host's queue trigger reads.</summary>
    internal static QueueClient CreateClient(IConfiguration configuration, TokenCredential credential)
    {
        var name = configuration[QueueSetting] is { Length: > 0 } setting ? setting : DefaultQueue;
        var options = new QueueClientOptions { MessageEncoding = QueueMessageEncoding.Base64 };
        // An enqueue waits for its post: a storage outage costs it at most about 3 × 2 s, not the SDK's minutes.
        options.Retry.MaxRetries = 2;
        options.Retry.Delay = TimeSpan.FromMilliseconds(200);
        options.Retry.NetworkTimeout = TimeSpan.FromSeconds(2);
        if (configuration[Connection] is { Length: > 0 } connectionString)
        {
            return new QueueClient(connectionString, name, options);
        }
        var section = configuration.GetSection(Connection);
        var serviceUri = section["queueServiceUri"] is { Length: > 0 } uri ? new Uri(uri)
            : section["accountName"] is { Length: > 0 } account ? new Uri($"https://{account}.queue.core.windows.net")
            : throw new InvalidOperationException(
                $"{Connection} names no storage account: set a connection string, {Connection}__queueServiceUri or {Connection}__accountName");
        return new QueueClient(new Uri(serviceUri, name), credential, options);
    }
}
