using System.Net;
using System.Net.Sockets;

namespace Conveyor.Tests.Infrastructure;

/// <summary>
/// A TCP proxy on a free loopback port in front of a real server, for faults a server cannot make by itself:
/// <see cref="HoldReplies"/> lets requests through but keeps the answers (a call that runs on the server and times out
/// on the client), <see cref="Hold"/> keeps both directions (this client alone is cut off, the server runs on),
/// <see cref="Release"/> delivers what was kept, <see cref="Cut"/> drops every connection at once.
/// </summary>
public sealed class FaultyProxy : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly IPEndPoint _target;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<TcpClient> _connections = [];
    private readonly Task _accepting;
    private TaskCompletionSource _repliesFlow = NewOpenGate();
    private TaskCompletionSource _requestsFlow = NewOpenGate();

    private FaultyProxy(IPEndPoint target)
    {
        _target = target;
        _listener.Start();
        _accepting = AcceptAsync();
    }

    /// <summary>Starts a proxy to <paramref name="endpoint"/> (<c>host:port</c>, loopback).</summary>
    public static FaultyProxy To(string endpoint)
    {
        var colon = endpoint.LastIndexOf(':');
        return new FaultyProxy(new IPEndPoint(IPAddress.Loopback, int.Parse(endpoint[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture)));
    }

    /// <summary><c>127.0.0.1:port</c> of the proxy.</summary>
    public string Endpoint => $"127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";

    /// <summary>From now on, bytes from the server wait here; requests still reach it.</summary>
    public void HoldReplies()
    {
        lock (_connections)
        {
            if (_repliesFlow.Task.IsCompleted)
            {
                _repliesFlow = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }
        }
    }

    /// <summary>From now on, nothing passes in either direction: bytes wait here.</summary>
    public void Hold()
    {
        HoldReplies();
        lock (_connections)
        {
            if (_requestsFlow.Task.IsCompleted)
            {
                _requestsFlow = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }
        }
    }

    /// <summary>Delivers what was held so far, in both directions, and lets later bytes through.</summary>
    public void Release()
    {
        lock (_connections)
        {
            _requestsFlow.TrySetResult();
            _repliesFlow.TrySetResult();
        }
    }

    /// <summary>Closes every open connection (in both directions, at once); new ones are accepted.</summary>
    public void Cut()
    {
        lock (_connections)
        {
            foreach (var connection in _connections)
            {
                // Reset, not a graceful close: the peer sees the connection drop at once.
                connection.Client?.Close(0);
                connection.Dispose();
            }
            _connections.Clear();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        Release();
        Cut();
        await _accepting.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stop.Dispose();
    }

    private static TaskCompletionSource NewOpenGate()
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        gate.SetResult();
        return gate;
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }
            var server = new TcpClient();
            try
            {
                await server.ConnectAsync(_target, _stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException)
            {
                client.Dispose();
                server.Dispose();
                continue;
            }
            lock (_connections)
            {
                _connections.Add(client);
                _connections.Add(server);
            }
            _ = PumpAsync(client, server, replies: false);
            _ = PumpAsync(server, client, replies: true);
        }
    }

    private async Task PumpAsync(TcpClient from, TcpClient to, bool replies)
    {
        var buffer = new byte[64 * 1024];
        try
        {
            var source = from.GetStream();
            var sink = to.GetStream();
            while (true)
            {
                var read = await source.ReadAsync(buffer, _stop.Token);
                if (read == 0)
                {
                    break;
                }
                Task gate;
                lock (_connections)
                {
                    gate = replies ? _repliesFlow.Task : _requestsFlow.Task;
                }
                await gate.WaitAsync(_stop.Token);
                await sink.WriteAsync(buffer.AsMemory(0, read), _stop.Token);
            }
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException or OperationCanceledException or InvalidOperationException)
        {
        }
        from.Dispose();
        to.Dispose();
    }
}
