using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;

namespace Conveyor.Faults.Infrastructure;

/// <summary>
/// A TCP proxy between the engine and a server (Redis or PostgreSQL) that can misbehave on demand, like a network
/// or a managed service on a bad day:
/// <list type="bullet">
/// <item><see cref="Stall"/>: stops forwarding in both directions (connections stay open, new ones are accepted
/// and hang) until <see cref="Resume"/>;</item>
/// <item><see cref="Latency"/>: delays every chunk it forwards (a long path, not a narrow one);</item>
/// <item><see cref="CutAll"/>: resets every open connection;</item>
/// <item><see cref="CutAfterScripts"/>: forwards a chunk that carries EVAL/EVALSHA to Redis, then resets the
/// connection before any reply comes back: the script ran on the server, and the client never learns what it did.</item>
/// </list>
/// </summary>
internal sealed class FaultProxy : IAsyncDisposable
{
    private static readonly byte[] EvalUpper = "\r\nEVAL"u8.ToArray();
    private static readonly byte[] EvalLower = "\r\neval"u8.ToArray();

    private readonly TcpListener _listener;
    private readonly int _upstreamPort;
    private readonly CancellationTokenSource _closing = new();
    private readonly Lock _gate = new();
    private readonly HashSet<Link> _links = [];
    private readonly Random _random;
    private TaskCompletionSource _flowing = NewOpenGate();
    private double _scriptCutProbability;
    private int _cuts;
    private int _scriptCuts;
    private Task? _accepting;

    private FaultProxy(int upstreamPort, int seed)
    {
        _upstreamPort = upstreamPort;
        _random = new Random(seed);
        _listener = new TcpListener(IPAddress.Loopback, 0);
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public string Endpoint => $"127.0.0.1:{Port}";

    /// <summary>Added to every chunk forwarded, in each direction.</summary>
    public TimeSpan Latency { get; set; }

    /// <summary>Connections reset so far (by <see cref="CutAll"/> or after a script).</summary>
    public int Cuts => Volatile.Read(ref _cuts);

    /// <summary>Connections reset right after a script request reached the server.</summary>
    public int ScriptCuts => Volatile.Read(ref _scriptCuts);

    public static FaultProxy Start(int upstreamPort, int seed)
    {
        var proxy = new FaultProxy(upstreamPort, seed);
        proxy._listener.Start();
        proxy._accepting = proxy.AcceptAsync();
        return proxy;
    }

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

    public void Resume()
    {
        lock (_gate)
        {
            _flowing.TrySetResult();
        }
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

    private static TaskCompletionSource NewOpenGate()
    {
        var open = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        open.SetResult();
        return open;
    }

    private Task Flowing()
    {
        lock (_gate)
        {
            return _flowing.Task;
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
        var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        client.NoDelay = true;
        try
        {
            await server.ConnectAsync(IPAddress.Loopback, _upstreamPort, _closing.Token);
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException)
        {
            Reset(client);
            server.Dispose();
            return;
        }
        var link = new Link(client, server);
        lock (_gate)
        {
            _links.Add(link);
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

    /// <summary>
    /// One direction of a link: a reader that stamps each chunk with the time it may leave (now + latency), and a
    /// writer that forwards chunks in order once due. Latency delays every chunk without serialising the delays, as a
    /// long network path does.
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
                await Flowing().WaitAsync(_closing.Token);
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

    public async ValueTask DisposeAsync()
    {
        await _closing.CancelAsync();
        _listener.Stop();
        Resume();
        CutAll();
        if (_accepting is not null)
        {
            await _accepting;
        }
        _closing.Dispose();
    }

    private sealed class Link(Socket client, Socket server)
    {
        public Socket Client { get; } = client;
        public Socket Server { get; } = server;
        private int _closed;

        /// <summary>Set once nothing more may be forwarded on this link.</summary>
        public volatile bool Doomed;

        public bool TryClose() => Interlocked.Exchange(ref _closed, 1) == 0;
    }
}
