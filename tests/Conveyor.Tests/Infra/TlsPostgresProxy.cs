using System.Buffers.Binary;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Conveyor.Tests.Infra;

/// <summary>
/// A TLS front for the test PostgreSQL, so the hooks' verify-full connections meet a real certificate check:
/// it answers PostgreSQL's SSLRequest, completes the TLS handshake with a certificate for <c>localhost</c> issued by
/// a throwaway CA (<see cref="CaFile"/>, what PGSSLROOTCERT points at), then relays the bytes to the server. A
/// client that does not ask for TLS is hung up on, so a hook that connects at all used TLS.
/// </summary>
public sealed class TlsPostgresProxy : IAsyncDisposable
{
    private const int SslRequestCode = 80877103;
    private const int GssEncRequestCode = 80877104;

    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stopping = new();
    private readonly X509Certificate2 _certificate;
    private readonly string _upstreamHost;
    private readonly int _upstreamPort;
    private readonly string _directory;
    private readonly Task _accepting;
    private int _tlsSessions;

    public TlsPostgresProxy(string upstreamHost, int upstreamPort)
    {
        _upstreamHost = upstreamHost;
        _upstreamPort = upstreamPort;
        _directory = Directory.CreateTempSubdirectory("conveyor-tls-").FullName;
        (_certificate, var caPem) = IssueLocalhostCertificate();
        CaFile = Path.Combine(_directory, "ca.pem");
        File.WriteAllText(CaFile, caPem);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _accepting = AcceptAsync();
    }

    public int Port { get; }

    /// <summary>PEM file of the CA that signed the proxy's certificate (DNS name <c>localhost</c> only).</summary>
    public string CaFile { get; }

    /// <summary>TLS handshakes completed so far.</summary>
    public int TlsSessions => Volatile.Read(ref _tlsSessions);

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        _listener.Stop();
        try
        {
            await _accepting;
        }
        catch (OperationCanceledException)
        {
        }
        _stopping.Dispose();
        _certificate.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    private async Task AcceptAsync()
    {
        while (!_stopping.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stopping.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }
            _ = RelayAsync(client);
        }
    }

    private async Task RelayAsync(TcpClient client)
    {
        using (client)
        {
            try
            {
                var network = client.GetStream();
                var code = await ReadStartupCodeAsync(network);
                if (code == GssEncRequestCode)
                {
                    await network.WriteAsync("N"u8.ToArray(), _stopping.Token);
                    code = await ReadStartupCodeAsync(network);
                }
                if (code != SslRequestCode)
                {
                    return;
                }
                await network.WriteAsync("S"u8.ToArray(), _stopping.Token);
                await using var tls = new SslStream(network);
                await tls.AuthenticateAsServerAsync(new SslServerAuthenticationOptions { ServerCertificate = _certificate }, _stopping.Token);
                Interlocked.Increment(ref _tlsSessions);
                using var upstream = new TcpClient();
                await upstream.ConnectAsync(_upstreamHost, _upstreamPort, _stopping.Token);
                var server = upstream.GetStream();
                await Task.WhenAny(tls.CopyToAsync(server, _stopping.Token), server.CopyToAsync(tls, _stopping.Token));
            }
            catch (Exception ex) when (ex is IOException or SocketException or OperationCanceledException or AuthenticationException or ObjectDisposedException)
            {
                // A client that rejects the certificate hangs up mid-handshake: exactly what some tests expect.
            }
        }
    }

    private async Task<int> ReadStartupCodeAsync(NetworkStream stream)
    {
        var header = new byte[8];
        await stream.ReadExactlyAsync(header, _stopping.Token);
        return BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(4));
    }

    private static (X509Certificate2 Server, string CaPem) IssueLocalhostCertificate()
    {
        using var caKey = RSA.Create(2048);
        var caRequest = new CertificateRequest("CN=Conveyor test CA", caKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        caRequest.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(caRequest.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        using var ca = caRequest.CreateSelfSigned(now.AddHours(-1), now.AddDays(2));

        using var serverKey = RSA.Create(2048);
        var serverRequest = new CertificateRequest("CN=localhost", serverKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        serverRequest.CertificateExtensions.Add(names.Build());
        serverRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        serverRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, true));
        serverRequest.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        serverRequest.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca, true, false));
        using var issued = serverRequest.Create(ca, now.AddHours(-1), now.AddDays(1), RandomNumberGenerator.GetBytes(16));
        using var withKey = issued.CopyWithPrivateKey(serverKey);
        // A certificate whose key lives only in memory cannot serve TLS on every platform; a PKCS#12 round trip can.
        var server = X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
        return (server, ca.ExportCertificatePem());
    }
}
