using System.ComponentModel.DataAnnotations;

namespace Conveyor.Dashboard;

/// <summary>Who may open the dashboard, and how.</summary>
public enum DashboardAccessMode
{
    /// <summary>
    /// The self-host's: a sign-in page takes one of <c>Conveyor:Api:Keys</c> and sets a signed session cookie
    /// (HttpOnly, SameSite=Strict, Secure except on localhost).
    /// </summary>
    ApiKey,

    /// <summary>
    /// Azure's: App Service authentication (Easy Auth, Microsoft Entra) signs the user in and passes the principal in
    /// <c>X-MS-CLIENT-PRINCIPAL-ID</c>. Trusted only while the platform says authentication is on
    /// (<c>WEBSITE_AUTH_ENABLED=True</c>), because only then does it strip that header from what clients send.
    /// </summary>
    EasyAuth,
}

/// <summary>The dashboard. Section <c>Conveyor:Dashboard</c>.</summary>
public sealed class DashboardOptions
{
    public const string Section = "Conveyor:Dashboard";

    /// <summary>Who may open it. Default: <see cref="DashboardAccessMode.ApiKey"/> (the Functions app sets <see cref="DashboardAccessMode.EasyAuth"/>).</summary>
    public DashboardAccessMode Access { get; set; } = DashboardAccessMode.ApiKey;

    /// <summary>How long a sign-in lasts (<see cref="DashboardAccessMode.ApiKey"/>). Default: 8 hours. Bounds: 1 minute to 7 days.</summary>
    [Range(typeof(TimeSpan), "00:01:00", "7.00:00:00")]
    public TimeSpan SessionLifetime { get; set; } = TimeSpan.FromHours(8);

    /// <summary>Rows per list on a page (ready, scheduled, running, dead, runtimes). Default: 25. Bounds: 5 to 200.</summary>
    [Range(5, 200)]
    public int PageSize { get; set; } = 25;

    /// <summary>Largest payload the job page shows, in bytes; a larger one is shown by its size only. Default: 64 KiB. Bounds: 1 KiB to 1 MiB.</summary>
    [Range(1024, 1024 * 1024)]
    public int MaxPayloadBytes { get; set; } = 64 * 1024;

    /// <summary>
    /// Whether App Service authentication is on for this app: not a setting of ours, but the platform's
    /// <c>WEBSITE_AUTH_ENABLED</c> (read at start-up). <see cref="DashboardAccessMode.EasyAuth"/> trusts the principal header only when true.
    /// </summary>
    public bool AppServiceAuthEnabled { get; set; }

    /// <summary>How often an open page refreshes itself, in seconds. Default: 5. Bounds: 1 to 300.</summary>
    [Range(1, 300)]
    public int RefreshSeconds { get; set; } = 5;
}
