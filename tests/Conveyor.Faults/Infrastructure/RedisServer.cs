using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Conveyor.Faults.Infrastructure;

/// <summary>
/// A redis-server of one scenario's own, on a free loopback port with its data in the scenario's folder, so that
/// killing, freezing and restarting it never touches the Redis other tests use. With <c>aof</c> it writes an
/// append-only file with <c>appendfsync always</c>: a restart keeps every write it acknowledged.
/// </summary>
internal sealed class RedisServer : IDisposable
{
    private readonly string _dir;
    private readonly bool _aof;
    private Process? _process;

    private RedisServer(string dir, bool aof)
    {
        _dir = dir;
        _aof = aof;
        Port = Ports.Free();
    }

    public int Port { get; }

    public string Endpoint => $"127.0.0.1:{Port}";

    public int Pid => _process?.Id ?? throw new InvalidOperationException("redis-server is not running");

    public static async Task<RedisServer> StartAsync(string dir, bool aof)
    {
        Directory.CreateDirectory(dir);
        var server = new RedisServer(dir, aof);
        await server.StartProcessAsync();
        return server;
    }

    /// <summary>SIGKILL: no shutdown, no final save. What an OOM kill or a host crash does.</summary>
    public void Kill()
    {
        var process = _process ?? throw new InvalidOperationException("redis-server is not running");
        Signals.TrySend(process.Id, Signals.Continue);
        process.Kill();
        process.WaitForExit();
        process.Dispose();
        _process = null;
    }

    /// <summary>Starts it again on the same port and folder (it loads its append-only file, if any).</summary>
    public Task RestartAsync() => StartProcessAsync();

    /// <summary>SIGSTOP: the server answers nothing, connections stay open, as in a stalled VM.</summary>
    public void Freeze() => Signals.Send(Pid, Signals.Stop);

    public void Thaw() => Signals.Send(Pid, Signals.Continue);

    private async Task StartProcessAsync()
    {
        var info = new ProcessStartInfo("redis-server")
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var arg in (string[])[
            "--port", $"{Port}", "--bind", "127.0.0.1", "--dir", _dir, "--logfile", Path.Combine(_dir, "redis.log"),
            "--save", "", "--maxmemory-policy", "noeviction", "--enable-debug-command", "local",
            "--appendonly", _aof ? "yes" : "no", "--appendfsync", "always"])
        {
            info.ArgumentList.Add(arg);
        }
        Process process;
        try
        {
            process = Process.Start(info) ?? throw new InvalidOperationException("redis-server did not start");
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new InvalidOperationException("redis-server is not installed (Debian/Ubuntu: apt-get install redis-server; ./dev test installs it)", ex);
        }
        _process = process;
        Watchdog.Guard(process.Id, $"kill -CONT {process.Id}; kill -KILL {process.Id}");
        await WaitUntilServingAsync(process);
    }

    /// <summary>Until PING answers PONG (not -LOADING while it replays its append-only file).</summary>
    private async Task WaitUntilServingAsync(Process process)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        var buffer = new byte[64];
        while (true)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"redis-server exited with {process.ExitCode}; see {Path.Combine(_dir, "redis.log")}");
            }
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, Port);
                var stream = client.GetStream();
                await stream.WriteAsync("PING\r\n"u8.ToArray());
                var read = await stream.ReadAsync(buffer);
                if (Encoding.ASCII.GetString(buffer, 0, read).StartsWith("+PONG", StringComparison.Ordinal))
                {
                    return;
                }
            }
            catch (SocketException)
            {
            }
            catch (IOException)
            {
            }
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"redis-server on port {Port} did not answer PING within 30 s; see {Path.Combine(_dir, "redis.log")}");
            }
            await Task.Delay(50);
        }
    }

    public void Dispose()
    {
        if (_process is not null)
        {
            Kill();
        }
    }
}
