using System.Text;
using Microsoft.AspNetCore.Http;

namespace Conveyor.Dashboard;

/// <summary>
/// A dashboard answer with the headers every one of them carries: a Content-Security-Policy that lets the page run only
/// the dashboard's own script and style sheet (so markup slipped into a payload, a job type or a runtime name could not
/// run even if it escaped encoding), no framing, no MIME sniffing, no referrer, no caching.
/// </summary>
internal sealed class HtmlResult(string body, int status, string contentType) : IResult
{
    private const string Policy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

    public async Task ExecuteAsync(HttpContext httpContext)
    {
        ArgumentNullException.ThrowIfNull(httpContext);
        var response = httpContext.Response;
        response.StatusCode = status;
        response.ContentType = contentType;
        response.Headers.ContentSecurityPolicy = Policy;
        response.Headers.XContentTypeOptions = "nosniff";
        response.Headers.XFrameOptions = "DENY";
        response.Headers["Referrer-Policy"] = "no-referrer";
        response.Headers.CacheControl = "no-store";
        var bytes = Encoding.UTF8.GetBytes(body);
        response.ContentLength = bytes.Length;
        await response.Body.WriteAsync(bytes, httpContext.RequestAborted);
    }
}

/// <summary>The dashboard's embedded script and style sheet (shared/Dashboard/Assets).</summary>
internal sealed record DashboardAsset(string Content, string ContentType)
{
    private static readonly Dictionary<string, DashboardAsset> Assets = new(StringComparer.Ordinal)
    {
        ["dashboard.js"] = Load("dashboard.js", "text/javascript; charset=utf-8"),
        ["dashboard.css"] = Load("dashboard.css", "text/css; charset=utf-8"),
    };

    public static DashboardAsset? Find(string name) => Assets.GetValueOrDefault(name);

    private static DashboardAsset Load(string name, string contentType)
    {
        using var stream = typeof(DashboardAsset).Assembly.GetManifestResourceStream("Conveyor.Dashboard.Assets." + name)
            ?? throw new InvalidOperationException($"The dashboard asset {name} is not embedded");
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return new DashboardAsset(reader.ReadToEnd(), contentType);
    }
}
