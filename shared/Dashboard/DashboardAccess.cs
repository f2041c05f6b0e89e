using System.Buffers.Text;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using Conveyor.Api;
using Conveyor.Storage;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Conveyor.Dashboard;

/// <summary>Who is looking at the dashboard: a session (<see cref="DashboardAccessMode.ApiKey"/>) or an Entra principal.</summary>
/// <param name="SessionId">What CSRF tokens are bound to: the session's random id, or <c>entra:</c> and the principal's id.</param>
/// <param name="Name">What the header shows.</param>
public sealed record DashboardUser(string SessionId, string Name);

/// <summary>
/// The dashboard's access rules, the same on both hosts. Sessions and CSRF tokens are HMAC-SHA256 signatures with one
/// secret kept in Redis (<c>conveyor:dashboard:secret</c>, created on first use): every instance of every host checks
/// what any other signed, which ASP.NET Core's data protection would only do with a key ring shared by all instances
/// (Flex Consumption has no shared file system). Deleting the key signs everyone out.
/// <list type="bullet">
/// <item>Session cookie: <c>expires.sessionId.mac</c>, HttpOnly, SameSite=Strict, path <c>/api/dashboard</c>, Secure
/// unless the request is to a loopback host over plain HTTP.</item>
/// <item>CSRF token (a hidden field in every form): the MAC of the session id, compared in constant time on every
/// action. SameSite=Strict already keeps the cookie off cross-site posts; the token is the second lock.</item>
/// </list>
/// </summary>
public sealed class DashboardAccess(RedisConnection redis, IOptions<DashboardOptions> options, IOptions<ApiOptions> api, TimeProvider time)
{
    public const string CookieName = "conveyor-dashboard";
    public const string CsrfField = "__csrf";
    public const string BasePath = "/api/dashboard";

    private static readonly RedisKey SecretKey = "conveyor:dashboard:secret";
    private static readonly TimeSpan SecretCacheTime = TimeSpan.FromMinutes(1);

    private readonly byte[][] _keys = [.. api.Value.Keys.Where(k => !string.IsNullOrEmpty(k)).Select(k => SHA256.HashData(Encoding.UTF8.GetBytes(k)))];
    private volatile CachedSecret? _secret;

    public DashboardAccessMode Mode => options.Value.Access;

    /// <summary>The user, or null when the request carries no valid sign-in.</summary>
    /// <exception cref="DashboardAccessException">Easy Auth mode, but App Service authentication is off: the principal header proves nothing.</exception>
    public async Task<DashboardUser?> AuthenticateAsync(HttpContext http)
    {
        if (Mode == DashboardAccessMode.EasyAuth)
        {
            if (!options.Value.AppServiceAuthEnabled)
            {
                throw new DashboardAccessException(
                    "App Service authentication is not enabled on this app, so an X-MS-CLIENT-PRINCIPAL header could come from anyone: " +
                    "the dashboard stays closed. Deploy with the dashboardEntraClientId parameter (docs/deploy.md).");
            }
            var id = http.Request.Headers["X-MS-CLIENT-PRINCIPAL-ID"].FirstOrDefault();
            if (string.IsNullOrEmpty(id))
            {
                return null;
            }
            var name = http.Request.Headers["X-MS-CLIENT-PRINCIPAL-NAME"].FirstOrDefault();
            return new DashboardUser("entra:" + id, string.IsNullOrEmpty(name) ? id : name);
        }
        var cookie = http.Request.Cookies[CookieName];
        var parts = cookie?.Split('.');
        if (parts is not [var expires, var session, var mac]
            || !long.TryParse(expires, NumberStyles.None, CultureInfo.InvariantCulture, out var until)
            || until <= time.GetUtcNow().ToUnixTimeSeconds())
        {
            return null;
        }
        var expected = await MacAsync("session", expires, session);
        return FixedTimeEquals(mac, expected) ? new DashboardUser(session, "signed in with an API key") : null;
    }

    /// <summary>Where an anonymous browser goes to sign in, coming back to <paramref name="returnPath"/>.</summary>
    public string SignInTarget(string returnPath) => Mode == DashboardAccessMode.EasyAuth
        ? "/.auth/login/aad?post_login_redirect_uri=" + Uri.EscapeDataString(returnPath)
        : BasePath + "/signin?returnUrl=" + Uri.EscapeDataString(returnPath);

    /// <summary>Whether <paramref name="key"/> is one of <c>Conveyor:Api:Keys</c> (constant time per key).</summary>
    public bool IsApiKey(string? key)
    {
        if (string.IsNullOrEmpty(key))
        {
            return false;
        }
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(key));
        return _keys.Any(k => CryptographicOperations.FixedTimeEquals(k, hash));
    }

    /// <summary>Starts a session: sets the signed cookie.</summary>
    public async Task SignInAsync(HttpContext http)
    {
        var lifetime = options.Value.SessionLifetime;
        var expires = time.GetUtcNow().Add(lifetime).ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
        var session = Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(18));
        var mac = await MacAsync("session", expires, session);
        http.Response.Cookies.Append(CookieName, $"{expires}.{session}.{mac}", Cookie(http, lifetime));
    }

    /// <summary>Ends the session in this browser (the cookie is removed; its signature stays valid until it expires).</summary>
    public static void SignOut(HttpContext http) => http.Response.Cookies.Delete(CookieName, Cookie(http, TimeSpan.Zero));

    /// <summary>The CSRF token of <paramref name="user"/>'s forms.</summary>
    public Task<string> CsrfTokenAsync(DashboardUser user) => MacAsync("csrf", user.SessionId);

    /// <summary>Whether a posted form carries <paramref name="user"/>'s CSRF token.</summary>
    public async Task<bool> CheckCsrfAsync(DashboardUser user, IFormCollection form) =>
        form.TryGetValue(CsrfField, out var posted) && posted.Count == 1 && FixedTimeEquals(posted[0], await CsrfTokenAsync(user));

    private static CookieOptions Cookie(HttpContext http, TimeSpan lifetime) => new()
    {
        HttpOnly = true,
        SameSite = SameSiteMode.Strict,
        // Browsers drop a Secure cookie sent over plain HTTP, except to localhost: plain HTTP works on a developer's machine only.
        Secure = http.Request.IsHttps || !IsLoopback(http.Request.Host.Host),
        Path = BasePath,
        MaxAge = lifetime,
        IsEssential = true,
    };

    private static bool IsLoopback(string host) =>
        string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase) || (IPAddress.TryParse(host.Trim('[', ']'), out var ip) && IPAddress.IsLoopback(ip));

    private static bool FixedTimeEquals(string? presented, string expected) =>
        presented is not null && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(presented), Encoding.UTF8.GetBytes(expected));

    private async Task<string> MacAsync(params string[] parts)
    {
        var secret = await SecretAsync();
        return Base64Url.EncodeToString(HMACSHA256.HashData(secret, Encoding.UTF8.GetBytes(string.Join('|', parts))));
    }

    /// <summary>The signing secret: created once in Redis (<c>SET NX</c>) by whichever instance comes first, cached for a minute.</summary>
    private async Task<byte[]> SecretAsync()
    {
        var now = time.GetUtcNow();
        if (_secret is { } cached && cached.Until > now)
        {
            return cached.Bytes;
        }
        var db = await redis.GetDatabaseAsync();
        await db.StringSetAsync(SecretKey, Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)), when: When.NotExists);
        var stored = await db.StringGetAsync(SecretKey);
        if (stored.IsNull)
        {
            throw new InvalidOperationException("conveyor:dashboard:secret vanished between SET NX and GET");
        }
        var secret = Convert.FromBase64String(stored!);
        _secret = new CachedSecret(secret, now + SecretCacheTime);
        return secret;
    }
}

/// <summary>The signing secret as read from Redis, and until when this process uses it without reading it again.</summary>
internal sealed record CachedSecret(byte[] Bytes, DateTimeOffset Until);

/// <summary>The dashboard cannot be opened on this host as configured (Easy Auth mode without App Service authentication).</summary>
public sealed class DashboardAccessException(string message) : Exception(message);
