using System.Net;
using System.Net.Sockets;

namespace Conveyor.Tests.Presence;

/// <summary>
/// A TCP proxy on a free loopback port in front of a real server, for tests that fail the link the way a host
/// does: <see cref="Stall"/> stops moving bytes in both directions (a frozen server: connections stay open and
/// nothing answers), <see cref="Cut"/> closes every connection and refuses new ones (a stopped server),
/// <see cref="Restore"/> forwards again, bytes held during a stall included.
/// </summary>
internal sealed class TcpProxy : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly string _host;
    private readonly int _port;
    private readonly CancellationTokenSource _stop = new();
    private readonly object _gate = new();
    private readonly HashSet<Socket> _sockets = [];
    private TaskCompletionSource _flowing = Flowing();
    private bool _cut;
    private Task _accepting = Task.CompletedTask;

    private TcpProxy(string host, int port) => (_host, _port) = (host, port);

    /// <summary>The loopback port to connect to instead of the server's.</summary>
    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public static TcpProxy Start(string host, int port)
    {
        var proxy = new TcpProxy(host, port);
        proxy._listener.Start();
        proxy._accepting = proxy.AcceptAsync();
        return proxy;
    }

    /// <summary>From now on no byte moves either way until <see cref="Restore"/>.</summary>
    public void Stall()
    {
        lock (_gate)
        {
            if (_flowing.Task.IsCompleted)
            {
                _flowing = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }
        }
    }

    /// <summary>Closes every connection; new ones are closed as soon as they are accepted, until <see cref="Restore"/>.</summary>
    public void Cut()
    {
        lock (_gate)
        {
            _cut = true;
            foreach (var socket in _sockets)
            {
                socket.Dispose();
            }
            _sockets.Clear();
        }
    }

    /// <summary>Forwards again.</summary>
    public void Restore()
    {
        lock (_gate)
        {
            _cut = false;
            _flowing.TrySetResult();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        Cut();
        await _accepting;
        _stop.Dispose();
    }

    private static TaskCompletionSource Flowing()
    {
        var flowing = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        flowing.SetResult();
        return flowing;
    }

    private async Task AcceptAsync()
    {
        while (true)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptSocketAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }
            _ = ServeAsync(client);
        }
    }

    private async Task ServeAsync(Socket client)
    {
        var server = new Socket(SocketType.Stream, ProtocolType.Tcp);
        lock (_gate)
        {
            if (_cut)
            {
                client.Dispose();
                server.Dispose();
                return;
            }
            _sockets.Add(client);
            _sockets.Add(server);
        }
        try
        {
            await server.ConnectAsync(_host, _port, _stop.Token);
            await Task.WhenAny(PumpAsync(client, server), PumpAsync(server, client));
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // The link was cut, or the proxy stopped.
        }
        finally
        {
            lock (_gate)
            {
                _sockets.Remove(client);
                _sockets.Remove(server);
            }
            client.Dispose();
            server.Dispose();
        }
    }

    private async Task PumpAsync(Socket from, Socket to)
    {
        var buffer = new byte[16 * 1024];
        try
        {
            while (true)
            {
                var read = await from.ReceiveAsync(buffer, SocketFlags.None, _stop.Token);
                if (read == 0)
                {
                    return;
                }
                Task flowing;
                lock (_gate)
                {
                    flowing = _flowing.Task;
                }
                await flowing.WaitAsync(_stop.Token);
                await to.SendAsync(buffer.AsMemory(0, read), SocketFlags.None, _stop.Token);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // The link was cut, or the proxy stopped.
        }
    }
}
