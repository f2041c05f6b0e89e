using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;
using Conveyor.Api;
using Conveyor.Dashboard;
using Conveyor.Storage;
using Conveyor.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;

namespace Conveyor.Tests.Dashboard;

/// <summary>The Functions worker as App Service runs it with authentication on: the platform sets <c>WEBSITE_AUTH_ENABLED=True</c>.</summary>
public sealed class EasyAuthFunctionsApp : FunctionsWorkerApp
{
    public EasyAuthFunctionsApp()
    {
        Settings = new Dictionary<string, string?> { ["WEBSITE_AUTH_ENABLED"] = "True" };
    }
}

#if !FUNCTIONS_STANDIN
/// <summary>
/// The dashboard on the real Functions worker, over HTTP: there App Service authentication (Easy Auth, Microsoft Entra)
/// signs users in and passes the principal in <c>X-MS-CLIENT-PRINCIPAL-*</c> headers, which these tests send as the
/// platform would.
/// </summary>
public sealed partial class DashboardOnFunctionsTests(EasyAuthFunctionsApp app) : IClassFixture<EasyAuthFunctionsApp>
{
    [Fact]
    public async Task Without_a_principal_the_dashboard_sends_the_browser_to_the_Entra_sign_in()
    {
        var response = await app.Client.GetAsync("/api/dashboard/runtimes");

        Assert.Equal(HttpStatusCode.Redirect, response.StatusCode);
        Assert.Equal("/.auth/login/aad?post_login_redirect_uri=%2Fapi%2Fdashboard%2Fruntimes", response.Headers.Location?.OriginalString);
    }

    [Fact]
    public async Task With_a_principal_the_overview_shows_the_counts_the_API_answers()
    {
        var queue = TestRedis.UniqueQueue("dashfn");
        for (var i = 0; i < 2; i++)
        {
            Assert.Equal(HttpStatusCode.Accepted, (await app.Client.PostAsync($"/api/queues/{queue}/jobs", ConveyorApp.Json("""{"type":"probe","payload":1,"delaySeconds":3600}"""))).StatusCode);
        }

        var response = await app.Client.SendAsync(SignedIn(HttpMethod.Get, "/api/dashboard"));

        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{response.StatusCode}: " + string.Join("\n", app.Host.Logs.Where(l => l.Exception is not null).Select(l => l.Exception)));
        Assert.Equal("text/html", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains("script-src 'self'", response.Headers.GetValues("Content-Security-Policy").Single(), StringComparison.Ordinal);
        var html = await response.Content.ReadAsStringAsync();
        var api = await app.Client.GetFromJsonAsync<JsonElement>($"/api/queues/{queue}");
        var row = Regex.Match(html, $"<tr data-queue=\"{queue}\".*?</tr>", RegexOptions.Singleline).Value;
        Assert.Equal(api.GetProperty("scheduled").GetInt64().ToString(System.Globalization.CultureInfo.InvariantCulture), Count().Match(row).Groups[1].Value);
        Assert.Contains("ada@example.com", html, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_action_without_the_CSRF_token_is_refused()
    {
        var request = SignedIn(HttpMethod.Post, $"/api/dashboard/queues/{app.Queue}/dead/no-such-job/requeue");
        request.Content = new FormUrlEncodedContent(new Dictionary<string, string> { ["x"] = "1" });

        var response = await app.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
    }

    private static HttpRequestMessage SignedIn(HttpMethod method, string path)
    {
        var request = new HttpRequestMessage(method, path);
        request.Headers.Add("X-MS-CLIENT-PRINCIPAL-ID", "00000000-0000-0000-0000-00000000ada0");
        request.Headers.Add("X-MS-CLIENT-PRINCIPAL-NAME", "ada@example.com");
        return request;
    }

    [GeneratedRegex("data-count=\"scheduled\">([0-9,]+)<")]
    private static partial Regex Count();
}
#endif

/// <summary>The Easy Auth rule itself: the principal header counts only where App Service authentication is on.</summary>
public sealed class EasyAuthRuleTests
{
    [Fact]
    public async Task A_principal_header_is_not_trusted_while_App_Service_authentication_is_off()
    {
        var access = new DashboardAccess(
            new RedisConnection(await TestRedis.GetAsync()),
            Options.Create(new DashboardOptions { Access = DashboardAccessMode.EasyAuth, AppServiceAuthEnabled = false }),
            Options.Create(new ApiOptions()),
            TimeProvider.System);
        var http = new DefaultHttpContext();
        http.Request.Headers["X-MS-CLIENT-PRINCIPAL-ID"] = "forged";

        await Assert.ThrowsAsync<DashboardAccessException>(() => access.AuthenticateAsync(http));
    }
}
