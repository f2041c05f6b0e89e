using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using StackExchange.Redis;

namespace Conveyor.Tests.Infrastructure;

/// <summary>
/// The Redis the tests talk to: <c>CONVEYOR_TEST_REDIS</c> (a StackExchange.Redis configuration string)
/// when set, otherwise a <c>redis-server</c> this process starts on a free loopback port and stops at exit.
/// Never skipped: if neither works, tests fail saying how to get Redis.
/// </summary>
public static class TestRedis
{
    private static readonly Lazy<Task<ConnectionMultiplexer>> Shared = new(() => ConnectAsync(cluster: false));
    private static readonly Lazy<Task<ConnectionMultiplexer>> Cluster = new(() => ConnectAsync(cluster: true));
    private static readonly List<Process> Started = [];

    public const string HowToGetRedis =
        "Conveyor's tests need a real Redis. Install redis-server (Debian/Ubuntu: `sudo apt-get install redis-server`) so the tests can start " +
        "their own on a free loopback port, or point CONVEYOR_TEST_REDIS at a running one (e.g. CONVEYOR_TEST_REDIS=127.0.0.1:6379). " +
        "`./dev test` does all of this for you.";

    static TestRedis() => AppDomain.CurrentDomain.ProcessExit += (_, _) => StopAll();

    /// <summary>The shared multiplexer of the test run (one Redis; tests isolate themselves by queue name).</summary>
    public static Task<ConnectionMultiplexer> GetAsync() => Shared.Value;

    /// <summary>A single-node Redis Cluster started by the tests: it refuses scripts whose keys span hash slots.</summary>
    public static Task<ConnectionMultiplexer> GetClusterAsync() => Cluster.Value;

    /// <summary>Connection string of the shared Redis, for code that connects on its own.</summary>
    public static async Task<string> ConnectionStringAsync()
    {
        var multiplexer = await GetAsync();
        return multiplexer.Configuration;
    }

    /// <summary>
    /// A fresh redis-server of the test's own on a free loopback port, started with <paramref name="extraArgs"/>
    /// appended; disposing it stops it. For tests that change server-wide state (ACL users, stats) the shared
    /// server must not see.
    /// </summary>
    public static async Task<DedicatedRedis> StartDedicatedAsync(string extraArgs = "")
    {
        var (endpoint, process) = await StartServerAsync(cluster: false, extraArgs);
        return new DedicatedRedis(endpoint, process);
    }

    /// <summary>A queue name no other test uses.</summary>
    public static string UniqueQueue(string hint = "q") => $"{hint}-{Guid.NewGuid():N}"[..Math.Min(60, hint.Length + 33)];

    private static async Task<ConnectionMultiplexer> ConnectAsync(bool cluster)
    {
        var configured = Environment.GetEnvironmentVariable("CONVEYOR_TEST_REDIS");
        string endpoint;
        if (!cluster && !string.IsNullOrWhiteSpace(configured))
        {
            endpoint = configured;
        }
        else
        {
            (endpoint, _) = await StartServerAsync(cluster);
        }
        try
        {
            var options = ConfigurationOptions.Parse(endpoint);
            options.AbortOnConnectFail = true;
            options.ConnectTimeout = 5000;
            return await ConnectionMultiplexer.ConnectAsync(options);
        }
        catch (RedisConnectionException ex)
        {
            throw new InvalidOperationException($"Could not connect to Redis at {endpoint}. {HowToGetRedis}", ex);
        }
    }

    private static async Task<(string Endpoint, Process Process)> StartServerAsync(bool cluster, string extraArgs = "")
    {
        var port = FreePort();
        var dir = Directory.CreateTempSubdirectory("conveyor-redis-").FullName;
        var args = $"--port {port} --bind 127.0.0.1 --save \"\" --appendonly no --dir {dir} --maxmemory-policy noeviction";
        if (cluster)
        {
            args += " --cluster-enabled yes --cluster-config-file nodes.conf";
        }
        if (extraArgs.Length > 0)
        {
            args += " " + extraArgs;
        }
        Process process;
        try
        {
            process = Process.Start(new ProcessStartInfo("redis-server", args)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            }) ?? throw new InvalidOperationException("redis-server did not start");
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new InvalidOperationException($"redis-server is not installed or not on PATH. {HowToGetRedis}", ex);
        }
        lock (Started)
        {
            Started.Add(process);
        }
        process.OutputDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var endpoint = $"127.0.0.1:{port}";
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (true)
        {
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, port);
                break;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline && !process.HasExited)
            {
                await Task.Delay(50);
            }
            catch (SocketException ex)
            {
                throw new InvalidOperationException($"redis-server on port {port} did not accept connections. {HowToGetRedis}", ex);
            }
        }
        if (cluster)
        {
            // One node that owns every slot: it still enforces the single-slot rule for scripts.
            using var admin = await ConnectionMultiplexer.ConnectAsync(endpoint + ",allowAdmin=true");
            var server = admin.GetServer(endpoint);
            await server.ExecuteAsync("CLUSTER", "ADDSLOTSRANGE", "0", "16383");
            while (!((string?)await server.ExecuteAsync("CLUSTER", "INFO"))!.Contains("cluster_state:ok", StringComparison.Ordinal))
            {
                if (DateTime.UtcNow > deadline)
                {
                    throw new InvalidOperationException("The test Redis Cluster did not reach cluster_state:ok");
                }
                await Task.Delay(50);
            }
        }
        return (endpoint, process);
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static void StopAll()
    {
        lock (Started)
        {
            foreach (var process in Started)
            {
                try
                {
                    process.Kill(entireProcessTree: true);
                }
                catch (InvalidOperationException)
                {
                }
            }
        }
    }
}

/// <summary>A redis-server started for one test; disposing it stops it.</summary>
public sealed class DedicatedRedis(string endpoint, Process process) : IDisposable
{
    /// <summary><c>host:port</c>.</summary>
    public string Endpoint { get; } = endpoint;

    public void Dispose()
    {
        try
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
        }
        catch (InvalidOperationException)
        {
        }
        process.Dispose();
    }
}
