using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Conveyor.Dashboard;
using Conveyor.Queue;
using Conveyor.Storage;
using Conveyor.Tests.Infrastructure;
using Microsoft.Playwright;

namespace Conveyor.Tests.Dashboard;

/// <summary>
/// The dashboard in a real Chromium against the self-host (real Redis and PostgreSQL): sign-in, the numbers, the actions,
/// and that nothing a producer or a runtime writes can run as script in the page. Each page it visits is saved as a
/// screenshot under the test output.
/// </summary>
public sealed class DashboardBrowserTests(SelfHostApp app, Chromium chromium) : IClassFixture<SelfHostApp>, IClassFixture<Chromium>
{
    private const string Base = DashboardAccess.BasePath;

    [Fact]
    public async Task Every_page_needs_a_sign_in_with_an_API_key_and_the_session_cookie_is_HttpOnly_and_SameSite_strict()
    {
        await using var context = await chromium.NewContextAsync(app);
        var page = await context.NewPageAsync();

        await page.GotoAsync($"{Base}/queues/{app.Queue}");
        Assert.EndsWith($"{Base}/signin?returnUrl={Uri.EscapeDataString($"{Base}/queues/{app.Queue}")}", page.Url, StringComparison.Ordinal);
        await ShotAsync(page, "signin");

        await page.Locator("input[name=key]").FillAsync("not-the-key");
        var refused = await page.RunAndWaitForResponseAsync(
            () => page.Locator("form.signin button").ClickAsync(), response => response.Request.Method == "POST" && response.Url.EndsWith("/signin", StringComparison.Ordinal));
        Assert.Equal((int)HttpStatusCode.Unauthorized, refused.Status);
        Assert.Contains("not one of this app's API keys", await page.Locator("p.error").InnerTextAsync(), StringComparison.Ordinal);
        Assert.Empty(await context.CookiesAsync());

        await page.Locator("input[name=key]").FillAsync(SelfHostServer.Key);
        await page.Locator("form.signin button").ClickAsync();
        await page.WaitForURLAsync($"**{Base}/queues/{app.Queue}");
        Assert.Equal(app.Queue, await page.Locator("main h1").InnerTextAsync());
        var cookie = Assert.Single(await context.CookiesAsync());
        Assert.Equal(DashboardAccess.CookieName, cookie.Name);
        Assert.True(cookie.HttpOnly);
        Assert.Equal(SameSiteAttribute.Strict, cookie.SameSite);
        Assert.Equal(Base, cookie.Path);

        await page.Locator("header button:has-text('Sign out')").ClickAsync();
        await page.WaitForURLAsync($"**{Base}/signin");
        await page.GotoAsync(Base);
        Assert.Contains($"{Base}/signin", page.Url, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_overview_shows_the_counts_the_API_answers_and_marks_a_queue_nobody_serves()
    {
        var queue = TestRedis.UniqueQueue("dash");
        for (var i = 0; i < 3; i++)
        {
            await EnqueueAsync(queue, """{"type":"probe","payload":{}}""");
        }
        await EnqueueAsync(queue, """{"type":"probe","payload":{},"delaySeconds":3600}""");
        var page = await SignedInPageAsync();

        await page.GotoAsync(Base);

        var api = (await app.Client.GetFromJsonAsync<JsonElement>("/api/queues")).GetProperty("queues").EnumerateArray()
            .Single(q => q.GetProperty("queue").GetString() == queue);
        var row = page.Locator($"tr[data-queue='{queue}']");
        foreach (var count in new[] { "ready", "scheduled", "running", "dead", "consumers" })
        {
            var shown = long.Parse((await row.Locator($"td[data-count={count}]").InnerTextAsync()).Replace(",", "", StringComparison.Ordinal), CultureInfo.InvariantCulture);
            Assert.Equal(api.GetProperty(count).GetInt64(), shown);
        }
        Assert.Equal(3, api.GetProperty("ready").GetInt64());
        // Ready jobs and no live consumer: the row stands out (idle, or unserved once the scheduler has seen it long enough).
        Assert.Matches("^(idle|unserved)$", await row.GetAttributeAsync("class") ?? "");

        // The last hour as an inline SVG drawn on the server, its totals those of the history API, also its accessible name.
        var history = await app.Client.GetFromJsonAsync<JsonElement>($"/api/queues/{queue}/history");
        Assert.Equal(4, history.GetProperty("totalEnqueued").GetInt64());
        var chart = row.Locator("figure.history");
        foreach (var total in new[] { "enqueued", "processed", "failed" })
        {
            var expected = history.GetProperty("total" + char.ToUpperInvariant(total[0]) + total[1..]).GetInt64();
            Assert.Equal(expected, long.Parse((await chart.GetAttributeAsync($"data-{total}"))!, CultureInfo.InvariantCulture));
        }
        var label = await chart.Locator("svg[role=img]").GetAttributeAsync("aria-label");
        Assert.Contains("4 enqueued, 0 processed, 0 failed", label, StringComparison.Ordinal);
        Assert.Equal(label, await chart.Locator("svg > title").TextContentAsync());
        Assert.Equal(3, await chart.Locator("svg polyline").CountAsync());
        Assert.Equal(QueueHistory.Minutes, (await chart.Locator("svg polyline.enqueued").GetAttributeAsync("points"))!.Split(' ').Length);
        Assert.True(await chart.Locator("svg").IsVisibleAsync());
        await ShotAsync(page, "overview");
    }

    [Fact]
    public async Task A_dead_job_shows_its_error_and_requeue_and_delete_from_the_page_change_its_state()
    {
        var error = "kaput <b>bold</b> & <script>window.__xss='error'</script>";
        var again = await EnqueueAsync(app.Queue, Job("again", 1, error));
        var gone = await EnqueueAsync(app.Queue, Job("gone", 1, error));
        await WaitDeadAsync(again);
        await WaitDeadAsync(gone);
        var page = await SignedInPageAsync();
        page.Dialog += async (_, dialog) => await dialog.AcceptAsync();

        await page.GotoAsync($"{Base}/queues/{app.Queue}");
        var deadRow = page.Locator($"table[data-list=dead] tr[data-job='{again}']");
        // The processor records "<exception type>: <message>"; the markup in the message is shown as it was thrown.
        Assert.EndsWith(": " + error, await deadRow.Locator("td.error-text").InnerTextAsync(), StringComparison.Ordinal);
        await AssertInertAsync(page);
        await ShotAsync(page, "queue");

        await deadRow.Locator("button:has-text('Requeue')").ClickAsync();
        await page.Locator("p.notice").WaitForAsync();
        Assert.Contains($"Job {again} is back in the ready list.", await page.Locator("p.notice").InnerTextAsync(), StringComparison.Ordinal);
        // Its second run succeeds (failTimes 1): it runs again and leaves.
        await Wait.UntilAsync(async () => (await app.ProbeRunsAsync(again)).Count == 2, "the requeued job ran again");
        await Wait.UntilAsync(async () => (await app.Client.GetAsync($"/api/queues/{app.Queue}/jobs/{again}")).StatusCode == HttpStatusCode.NotFound, "the requeued job completed");

        await page.Locator($"table[data-list=dead] tr[data-job='{gone}'] button:has-text('Delete')").ClickAsync();
        await page.Locator("p.notice", new() { HasText = "deleted" }).WaitForAsync();
        Assert.Contains($"Job {gone} is deleted.", await page.Locator("p.notice").InnerTextAsync(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NotFound, (await app.Client.GetAsync($"/api/queues/{app.Queue}/jobs/{gone}")).StatusCode);
        Assert.Single(await app.ProbeRunsAsync(gone));
        Assert.Equal(0, await page.Locator($"tr[data-job='{gone}']").CountAsync());
    }

    [Fact]
    public async Task A_running_job_shows_its_consumer_and_since_when_it_runs_on_the_queue_and_job_pages()
    {
        var db = (await TestRedis.GetAsync()).GetDatabase();
        var before = await RedisTime.NowMsAsync(db);
        var id = await EnqueueAsync(app.Queue, JsonSerializer.Serialize(new { type = "probe", payload = new { holdMs = 20_000 } }));
        await Wait.UntilAsync(async () => await StateAsync(id) == "running", $"job {id} is running");
        var after = await RedisTime.NowMsAsync(db);
        var page = await SignedInPageAsync();

        await page.GotoAsync($"{Base}/queues/{app.Queue}");

        var row = page.Locator($"table[data-list=running] tr[data-job='{id}']");
        var consumer = await row.Locator("td").Nth(3).InnerTextAsync();
        Assert.False(string.IsNullOrWhiteSpace(consumer));
        var since = long.Parse((await row.Locator("td[data-since]").GetAttributeAsync("data-since"))!, CultureInfo.InvariantCulture);
        Assert.InRange(since, before, after);
        // The script shows it in the browser's zone with its age.
        Assert.Matches(@"\((in )?\d+ (s|min)( ago)?\)", await row.Locator("td[data-since] time").InnerTextAsync());
        await ShotAsync(page, "queue-running");

        // The job's own page says the same.
        await row.Locator("a").First.ClickAsync();
        await page.Locator("dd[data-field=since]").WaitForAsync();
        Assert.Equal(consumer, await page.Locator("dd[data-field=consumer]").InnerTextAsync());
        Assert.Equal(since, long.Parse((await page.Locator("dd[data-field=since]").GetAttributeAsync("data-since"))!, CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task Requeue_all_asks_first_and_moves_every_dead_job_back()
    {
        var ids = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            ids.Add(await EnqueueAsync(app.Queue, Job($"all{i}", 1, "first run fails")));
        }
        foreach (var id in ids)
        {
            await WaitDeadAsync(id);
        }
        var page = await SignedInPageAsync();
        await page.GotoAsync($"{Base}/queues/{app.Queue}");
        var asked = 0;
        var accept = false;
        page.Dialog += async (_, dialog) =>
        {
            Interlocked.Increment(ref asked);
            await (Volatile.Read(ref accept) ? dialog.AcceptAsync() : dialog.DismissAsync());
        };

        await page.Locator("button:has-text('Requeue all dead')").ClickAsync();
        await Wait.UntilAsync(() => Volatile.Read(ref asked) == 1, "the confirmation was asked (and dismissed)");
        Assert.Equal("dead", await StateAsync(ids[0]));

        Volatile.Write(ref accept, true);
        var posted = await page.RunAndWaitForResponseAsync(
            () => page.Locator("button:has-text('Requeue all dead')").ClickAsync(),
            response => response.Request.Method == "POST" && response.Url.EndsWith("/dead/requeue", StringComparison.Ordinal));
        Assert.Equal((int)HttpStatusCode.Redirect, posted.Status);
        await page.Locator("p.notice").WaitForAsync();
        Assert.Contains("dead jobs are back in the ready list", await page.Locator("p.notice").InnerTextAsync(), StringComparison.Ordinal);
        foreach (var id in ids)
        {
            await Wait.UntilAsync(async () => (await app.ProbeRunsAsync(id)).Count == 2, $"requeued job {id} ran again");
        }
    }

    [Fact]
    public async Task Markup_in_a_payload_a_job_type_and_a_runtime_name_is_shown_as_text()
    {
        var queue = TestRedis.UniqueQueue("xss");
        var payloadMarkup = "<script>window.__xss='payload'</script><img src=x onerror=\"window.__xss='payload-img'\">";
        var viaApi = await EnqueueAsync(queue, JsonSerializer.Serialize(new { type = "probe", payload = new { html = payloadMarkup } }, RawMarkup));
        // The API refuses such a type (names are [A-Za-z0-9_.-]); another producer writing Redis directly is not bound by it.
        var typeMarkup = "<img src=x onerror=\"window.__xss='type'\">";
        var foreign = await WriteForeignJobAsync(queue, typeMarkup);
        var runtimeName = "<script>window.__xss='runtime'</script><b>agent</b>";
        var registered = await app.Client.PostAsync("/api/runtimes", ConveyorApp.Json(JsonSerializer.Serialize(new { name = runtimeName })));
        Assert.Equal(HttpStatusCode.Created, registered.StatusCode);
        var runtimeId = (await registered.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString();
        var page = await SignedInPageAsync();

        await page.GotoAsync($"{Base}/queues/{queue}/jobs/{viaApi}");
        Assert.Contains(payloadMarkup.Replace("\"", "\\\"", StringComparison.Ordinal), await page.Locator("pre[data-field=payload]").InnerTextAsync(), StringComparison.Ordinal);
        await ShotAsync(page, "job");
        await AssertInertAsync(page);

        await page.GotoAsync($"{Base}/queues/{queue}");
        Assert.Equal(typeMarkup, await page.Locator($"table[data-list=ready] tr[data-job='{foreign}'] td").Nth(1).InnerTextAsync());
        await AssertInertAsync(page);
        await page.GotoAsync($"{Base}/queues/{queue}/jobs/{foreign}");
        Assert.Equal(typeMarkup, await page.Locator("dd[data-field=type]").InnerTextAsync());
        await AssertInertAsync(page);

        await page.GotoAsync($"{Base}/runtimes");
        Assert.Equal(runtimeName, await page.Locator($"tr[data-runtime='{runtimeId}'] td[data-field=name]").InnerTextAsync());
        await ShotAsync(page, "runtimes");
        await AssertInertAsync(page);
    }

    [Fact]
    public async Task An_action_posted_without_the_CSRF_token_is_refused()
    {
        var page = await SignedInPageAsync();
        await page.GotoAsync($"{Base}/queues/{app.Queue}");
        var token = await page.Locator($"input[name={DashboardAccess.CsrfField}]").First.GetAttributeAsync("value");
        Assert.False(string.IsNullOrEmpty(token));
        var action = $"{Base}/queues/{app.Queue}/dead/no-such-job/requeue";
        const string post = """
            async ([url, fields]) => (await fetch(url, { method: 'POST', body: new URLSearchParams(fields), credentials: 'same-origin' })).status
            """;

        var without = await page.EvaluateAsync<int>(post, new object[] { action, new Dictionary<string, string> { ["x"] = "1" } });
        var wrong = await page.EvaluateAsync<int>(post, new object[] { action, new Dictionary<string, string> { [DashboardAccess.CsrfField] = token + "x" } });
        var right = await page.EvaluateAsync<int>(post, new object[] { action, new Dictionary<string, string> { [DashboardAccess.CsrfField] = token! } });

        Assert.Equal(403, without);
        Assert.Equal(403, wrong);
        Assert.Equal(200, right); // the redirect back to the queue page, followed
        using var anonymous = new HttpClient { BaseAddress = app.Client.BaseAddress };
        var signedOut = await anonymous.PostAsync(action, new FormUrlEncodedContent(new Dictionary<string, string> { [DashboardAccess.CsrfField] = token! }));
        Assert.Equal(HttpStatusCode.Unauthorized, signedOut.StatusCode);
    }

    /// <summary>Writes &lt; &gt; ' as themselves, as a producer in another language may.</summary>
    private static readonly JsonSerializerOptions RawMarkup = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private async Task<IPage> SignedInPageAsync()
    {
        var context = await chromium.NewContextAsync(app);
        var page = await context.NewPageAsync();
        await page.GotoAsync($"{Base}/signin");
        await page.Locator("input[name=key]").FillAsync(SelfHostServer.Key);
        await page.Locator("form.signin button").ClickAsync();
        await page.WaitForURLAsync($"**{Base}");
        return page;
    }

    /// <summary>No markup ran: the marker the payloads try to set is unset, and no injected element exists.</summary>
    private static async Task AssertInertAsync(IPage page)
    {
        Assert.Equal("none", await page.EvaluateAsync<string>("() => String(window.__xss ?? 'none')"));
        Assert.Equal(0, await page.Locator("main img, main b, main script").CountAsync());
    }

    private static string Job(string prefix, int failTimes, string error) => JsonSerializer.Serialize(new
    {
        id = $"{prefix}-{Guid.NewGuid():N}",
        type = "probe",
        payload = new { failTimes, error },
        maxAttempts = 1,
    });

    private async Task<string> EnqueueAsync(string queue, string job)
    {
        var response = await app.Client.PostAsync($"/api/queues/{queue}/jobs", ConveyorApp.Json(job));
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        return (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
    }

    private async Task<string?> StateAsync(string id)
    {
        var response = await app.Client.GetAsync($"/api/queues/{app.Queue}/jobs/{id}");
        return response.StatusCode == HttpStatusCode.NotFound ? null : (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("state").GetString();
    }

    private Task WaitDeadAsync(string id) => Wait.UntilAsync(async () => await StateAsync(id) == "dead", $"job {id} died");

    /// <summary>A ready job whose header names <paramref name="type"/>, written as the enqueue script lays a job out.</summary>
    private static async Task<string> WriteForeignJobAsync(string queue, string type)
    {
        var id = "foreign-" + Guid.NewGuid().ToString("N");
        var db = (await TestRedis.GetAsync()).GetDatabase();
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var header = JsonSerializer.Serialize(new { type, maxAttempts = 1, payload = new { @in = "payloads" }, enqueuedAt = now });
        await db.HashSetAsync($"conveyor:{{{queue}}}:jobs", id, header);
        await db.HashSetAsync($"conveyor:{{{queue}}}:state", id, $"0|1|{now}|");
        await db.HashSetAsync($"conveyor:{{{queue}}}:payloads", id, "{}");
        await db.ListRightPushAsync($"conveyor:{{{queue}}}:ready", id);
        return id;
    }

    private static async Task ShotAsync(IPage page, string name) =>
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(Chromium.ScreenshotFolder, $"dashboard-{name}.png"), FullPage = true });
}
