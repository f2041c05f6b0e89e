using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Azure.Storage.Queues;

namespace Conveyor.Tests.Infrastructure;

/// <summary>
/// The Azure Storage queue service the tests talk to: <c>CONVEYOR_TEST_AZURITE</c> (a storage connection string) when
/// set, otherwise Azurite's queue service from <c>.dev/azurite</c> (what <c>./dev</c> installs) started on a free
/// loopback port and stopped at exit. Never skipped: if neither works, tests fail saying how to get it.
/// </summary>
public static class TestAzurite
{
    private const string HowToGetAzurite =
        "Conveyor's wake-up tests need Azurite's queue service: run them with `./dev test` (it installs Azurite from npm into .dev/azurite " +
        "and starts it), or point CONVEYOR_TEST_AZURITE at a storage connection string.";

    /// <summary>Azurite's well-known development account key (public: the same in every Azurite).</summary>
    private const string DevelopmentKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    private static readonly Lazy<Task<string>> Shared = new(StartAsync);
    private static Process? _started;

    static TestAzurite() => AppDomain.CurrentDomain.ProcessExit += (_, _) =>
    {
        try
        {
            _started?.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
        }
    };

    /// <summary>The connection string of the test run's queue service.</summary>
    public static Task<string> ConnectionStringAsync() => Shared.Value;

    /// <summary>A storage queue name no other test uses (3-63 lowercase letters, digits and hyphens).</summary>
    public static string UniqueQueueName(string hint) => $"{hint}-{Guid.NewGuid():N}";

    /// <summary>A client of queue <paramref name="name"/> that reads message bodies as stored (no decoding), as the host's extension receives them.</summary>
    public static async Task<QueueClient> RawClientAsync(string name) =>
        new(await ConnectionStringAsync(), name, new QueueClientOptions { MessageEncoding = QueueMessageEncoding.None });

    private static async Task<string> StartAsync()
    {
        var configured = Environment.GetEnvironmentVariable("CONVEYOR_TEST_AZURITE");
        if (!string.IsNullOrWhiteSpace(configured))
        {
            return configured;
        }
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Functions.sln")))
        {
            root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException(HowToGetAzurite);
        }
        var azurite = Path.Combine(root, ".dev", "azurite", "node_modules", ".bin", "azurite-queue");
        if (!File.Exists(azurite))
        {
            throw new InvalidOperationException($"{azurite} is not installed. {HowToGetAzurite}");
        }
        int port;
        using (var listener = new TcpListener(IPAddress.Loopback, 0))
        {
            listener.Start();
            port = ((IPEndPoint)listener.LocalEndpoint).Port;
        }
        _started = Process.Start(new ProcessStartInfo(azurite,
            $"--silent --queueHost 127.0.0.1 --queuePort {port} --skipApiVersionCheck --disableTelemetry --inMemoryPersistence")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        }) ?? throw new InvalidOperationException($"Azurite did not start. {HowToGetAzurite}");
        _started.OutputDataReceived += (_, _) => { };
        _started.BeginOutputReadLine();
        _started.BeginErrorReadLine();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, port);
                break;
            }
            catch (SocketException ex) when (DateTime.UtcNow > deadline || _started.HasExited)
            {
                throw new InvalidOperationException($"Azurite on port {port} did not accept connections. {HowToGetAzurite}", ex);
            }
            catch (SocketException)
            {
                await Task.Delay(100);
            }
        }
        return ConnectionString(port);
    }

    private static string ConnectionString(int port) =>
        $"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DevelopmentKey};QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;";
}
