using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;

namespace Conveyor.Testing;

/// <summary>
/// A TCP proxy on a free loopback port between the engine and a real server (Redis or PostgreSQL) that fails the
/// link on demand, the way a network or a managed service does on a bad day. One source file, compiled into both
/// test projects (tests/Conveyor.Tests and tests/Conveyor.Faults link it).
/// <list type="bullet">
/// <item><see cref="Stall"/>: nothing passes in either direction (connections stay open, new ones are accepted and
/// hang) until <see cref="Resume"/>: a frozen server, or this client alone cut off by the network;</item>
/// <item><see cref="HoldReplies"/>: requests reach the server, its replies wait here until <see cref="Resume"/>: a
/// call that runs on the server and times out on the client;</item>
/// <item><see cref="Resume"/>: delivers what was held, in order, and forwards again (and ends <see cref="Refuse"/>);</item>
/// <item><see cref="CutAll"/>: resets every open connection; new ones are accepted;</item>
/// <item><see cref="Refuse"/>: resets every open connection, and every new one until <see cref="Resume"/>: a stopped
/// server;</item>
/// <item><see cref="Latency"/>: delays every chunk it forwards (a long path, not a narrow one);</item>
/// <item><see cref="CutAfterScripts"/>: forwards a chunk that carries EVAL/EVALSHA to Redis, then resets the
/// connection before any reply comes back: the script ran on the server, and the client never learns what it did.</item>
/// </list>
/// </summary>
internal sealed class FaultProxy : IAsyncDisposable
{
    private static readonly byte[] EvalUpper = "\r\nEVAL"u8.ToArray();
    private static readonly byte[] EvalLower = "\r\neval"u8.ToArray();

    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly string _host;
    private readonly int _port;
    private readonly CancellationTokenSource _closing = new();
    private readonly Lock _gate = new();
    private readonly HashSet<Link> _links = [];
    private readonly Random _random;
    private TaskCompletionSource _requestsFlow = NewOpenGate();
    private TaskCompletionSource _repliesFlow = NewOpenGate();
    private bool _refusing;
    private double _scriptCutProbability;
    private int _cuts;
    private int _scriptCuts;
    private Task _accepting = Task.CompletedTask;

    private FaultProxy(string host, int port, int seed)
    {
        _host = host;
        _port = port;
        _random = new Random(seed);
    }

    /// <summary>The loopback port to connect to instead of the server's.</summary>
    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary><c>127.0.0.1:port</c> of the proxy.</summary>
    public string Endpoint => $"127.0.0.1:{Port}";

    /// <summary>Added to every chunk forwarded, in each direction.</summary>
    public TimeSpan Latency { get; set; }

    /// <summary>Connections reset so far (by <see cref="CutAll"/>, <see cref="Refuse"/> or after a script).</summary>
    public int Cuts => Volatile.Read(ref _cuts);

    /// <summary>Connections reset right after a script request reached the server.</summary>
    public int ScriptCuts => Volatile.Read(ref _scriptCuts);

    /// <summary>Starts a proxy to <paramref name="host"/>:<paramref name="port"/>; <paramref name="seed"/> drives <see cref="CutAfterScripts"/>.</summary>
    public static FaultProxy Start(string host, int port, int seed = 0)
    {
        var proxy = new FaultProxy(host, port, seed);
        proxy._listener.Start();
        proxy._accepting = proxy.AcceptAsync();
        return proxy;
    }

    /// <summary>Starts a proxy to <paramref name="endpoint"/> (<c>host:port</c>).</summary>
    public static FaultProxy To(string endpoint, int seed = 0)
    {
        var colon = endpoint.LastIndexOf(':');
        return Start(endpoint[..colon], int.Parse(endpoint[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture), seed);
    }

    /// <summary>From now on nothing passes in either direction: bytes wait here until <see cref="Resume"/>.</summary>
    public void Stall()
    {
        lock (_gate)
        {
            Close(ref _requestsFlow);
            Close(ref _repliesFlow);
        }
    }

    /// <summary>From now on, bytes from the server wait here until <see cref="Resume"/>; requests still reach it.</summary>
    public void HoldReplies()
    {
        lock (_gate)
        {
            Close(ref _repliesFlow);
        }
    }

    /// <summary>Delivers what was held, in both directions, forwards later bytes, and accepts connections again.</summary>
    public void Resume()
    {
        lock (_gate)
        {
            _refusing = false;
            _requestsFlow.TrySetResult();
            _repliesFlow.TrySetResult();
        }
    }

    /// <summary>Resets every open connection and, until <see cref="Resume"/>, every new one: the server looks stopped.</summary>
    public void Refuse()
    {
        lock (_gate)
        {
            _refusing = true;
        }
        CutAll();
    }

    /// <summary>From now on, each chunk carrying a script call cuts its connection with this probability (0 stops it).</summary>
    public void CutAfterScripts(double probability) => Volatile.Write(ref _scriptCutProbability, probability);

    /// <summary>Resets every open connection; returns how many.</summary>
    public int CutAll()
    {
        Link[] links;
        lock (_gate)
        {
            links = [.. _links];
        }
        foreach (var link in links)
        {
            Cut(link);
        }
        return links.Length;
    }

    public async ValueTask DisposeAsync()
    {
        await _closing.CancelAsync();
        _listener.Stop();
        Resume();
        CutAll();
        await _accepting;
        _closing.Dispose();
    }

    private static TaskCompletionSource NewOpenGate()
    {
        var open = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        open.SetResult();
        return open;
    }

    private static void Close(ref TaskCompletionSource flow)
    {
        if (flow.Task.IsCompleted)
        {
            flow = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
    }

    private Task Flowing(bool fromClient)
    {
        lock (_gate)
        {
            return fromClient ? _requestsFlow.Task : _repliesFlow.Task;
        }
    }

    private async Task AcceptAsync()
    {
        while (!_closing.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptSocketAsync(_closing.Token);
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
        // Dual mode: the host may be a name (localhost) or an IPv4 or IPv6 address.
        var server = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        client.NoDelay = true;
        try
        {
            if (Refusing())
            {
                throw new SocketException((int)SocketError.ConnectionRefused);
            }
            await server.ConnectAsync(_host, _port, _closing.Token);
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException)
        {
            Reset(client);
            server.Dispose();
            return;
        }
        var link = new Link(client, server);
        bool refused;
        lock (_gate)
        {
            refused = _refusing;
            if (!refused)
            {
                _links.Add(link);
            }
        }
        if (refused)
        {
            Cut(link);
            return;
        }
        try
        {
            await Task.WhenAll(PumpAsync(link, fromClient: true), PumpAsync(link, fromClient: false));
        }
        finally
        {
            lock (_gate)
            {
                _links.Remove(link);
            }
            Cut(link, count: false);
        }
    }

    private bool Refusing()
    {
        lock (_gate)
        {
            return _refusing;
        }
    }

    /// <summary>
    /// One direction of a link: a reader that stamps each chunk with the time it may leave (now + latency), and a
    /// writer that forwards chunks in order once due and once its direction flows. Latency delays every chunk
    /// without serialising the delays, as a long network path does.
    /// </summary>
    private async Task PumpAsync(Link link, bool fromClient)
    {
        var (from, to) = fromClient ? (link.Client, link.Server) : (link.Server, link.Client);
        var chunks = Channel.CreateUnbounded<(byte[] Data, long Due)>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var writing = ForwardAsync(link, to, chunks.Reader, fromClient);
        try
        {
            var buffer = new byte[64 * 1024];
            while (true)
            {
                var read = await from.ReceiveAsync(buffer, SocketFlags.None, _closing.Token);
                if (read == 0)
                {
                    break;
                }
                chunks.Writer.TryWrite((buffer[..read], Stopwatch.GetTimestamp() + (long)(Latency.TotalSeconds * Stopwatch.Frequency)));
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException or IOException)
        {
        }
        chunks.Writer.TryComplete();
        await writing;
    }

    private async Task ForwardAsync(Link link, Socket to, ChannelReader<(byte[] Data, long Due)> chunks, bool fromClient)
    {
        try
        {
            await foreach (var (data, due) in chunks.ReadAllAsync(_closing.Token))
            {
                var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due);
                if (wait > TimeSpan.Zero)
                {
                    await Task.Delay(wait, _closing.Token);
                }
                await Flowing(fromClient).WaitAsync(_closing.Token);
                if (link.Doomed)
                {
                    return;
                }
                var cutAfter = fromClient && CarriesScript(data) && Roll(Volatile.Read(ref _scriptCutProbability));
                if (cutAfter)
                {
                    // Nothing flows back from now on: the server runs the script, its reply is lost.
                    link.Doomed = true;
                }
                await to.SendAsync(data, SocketFlags.None, _closing.Token);
                if (cutAfter)
                {
                    await Task.Delay(20, _closing.Token);
                    Interlocked.Increment(ref _scriptCuts);
                    Cut(link);
                    return;
                }
            }
            to.Shutdown(SocketShutdown.Send);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException or IOException)
        {
        }
    }

    private static bool CarriesScript(ReadOnlySpan<byte> chunk) => chunk.IndexOf(EvalUpper) >= 0 || chunk.IndexOf(EvalLower) >= 0;

    private bool Roll(double probability)
    {
        if (probability <= 0)
        {
            return false;
        }
        lock (_random)
        {
            return _random.NextDouble() < probability;
        }
    }

    private void Cut(Link link, bool count = true)
    {
        if (!link.TryClose())
        {
            return;
        }
        link.Doomed = true;
        if (count)
        {
            Interlocked.Increment(ref _cuts);
        }
        Reset(link.Client);
        Reset(link.Server);
    }

    /// <summary>Closes with SO_LINGER 0: the peer gets a RST, as when a network path or a server dies.</summary>
    private static void Reset(Socket socket)
    {
        try
        {
            socket.LingerState = new LingerOption(true, 0);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }
        socket.Dispose();
    }

    private sealed class Link(Socket client, Socket server)
    {
        private int _closed;

        public Socket Client { get; } = client;

        public Socket Server { get; } = server;

        /// <summary>Set once nothing more may be forwarded on this link.</summary>
        public volatile bool Doomed;

        public bool TryClose() => Interlocked.Exchange(ref _closed, 1) == 0;
    }
}
