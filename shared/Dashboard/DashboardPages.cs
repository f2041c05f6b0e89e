using System.Globalization;
using Conveyor.Api;
using Conveyor.Dashboard.Pages;
using Conveyor.Presence;
using Conveyor.Queue;
using Microsoft.AspNetCore.Components;
using Microsoft.AspNetCore.Components.Web;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Conveyor.Dashboard;

/// <summary>What every page's frame needs: its title, who is signed in, their CSRF token, how often it refreshes, a notice.</summary>
public sealed record PageChrome(string Title, DashboardUser? User, string? Csrf, int RefreshSeconds, string? Notice = null);

/// <summary>
/// The dashboard's handlers, one per route, called by both hosts (<see cref="DashboardRoutes"/> maps them on the self-host;
/// functions/Dashboard forwards to the same methods). Pages are Razor components rendered to HTML on the server
/// (<see cref="HtmlRenderer"/>); every action is a plain form post with a CSRF token, answered with a redirect.
/// </summary>
public sealed class DashboardPages(
    QueueBrowser browser, QueueAdmin admin, DashboardAccess access, IOptions<DashboardOptions> options, ILoggerFactory loggers)
{
    private const string Base = DashboardAccess.BasePath;
    private const string PlainText = "text/plain; charset=utf-8";

    /// <summary>Every queue with its counts.</summary>
    public Task<IResult> OverviewAsync(HttpContext http, CancellationToken cancellationToken) =>
        PageAsync(http, async user =>
        {
            var view = await browser.OverviewAsync(cancellationToken);
            return await RenderAsync<OverviewPage>(http, new Dictionary<string, object?> { ["View"] = view }, await ChromeAsync(http, "Queues", user));
        });

    /// <summary>One queue: its counts and a page of each list (<c>?ready=2&amp;dead=3</c>).</summary>
    public Task<IResult> QueueAsync(HttpContext http, string queue, CancellationToken cancellationToken) =>
        PageAsync(http, async user =>
        {
            var query = http.Request.Query;
            var pages = new QueuePages(Page(query, "ready"), Page(query, "scheduled"), Page(query, "running"), Page(query, "dead"));
            var view = await browser.QueueAsync(queue, pages, cancellationToken);
            return await RenderAsync<QueuePage>(http, new Dictionary<string, object?> { ["View"] = view }, await ChromeAsync(http, queue, user));
        });

    /// <summary>One job; a page saying so (404) when it is unknown or finished.</summary>
    public Task<IResult> JobAsync(HttpContext http, string queue, string id, CancellationToken cancellationToken) =>
        PageAsync(http, async user =>
        {
            var view = await browser.JobAsync(queue, id, cancellationToken);
            var chrome = await ChromeAsync(http, $"Job {id}", user);
            return view is null
                ? await ErrorAsync(http, StatusCodes.Status404NotFound, $"No job '{id}' in queue '{queue}': it was never enqueued, or it ran and was acked.", chrome)
                : await RenderAsync<JobPage>(http, new Dictionary<string, object?> { ["View"] = view }, chrome);
        });

    /// <summary>The queue page's "find a job" form: goes to the job's page (<c>?id=</c>).</summary>
    public Task<IResult> FindJobAsync(HttpContext http, string queue, CancellationToken cancellationToken) =>
        PageAsync(http, user =>
        {
            var id = http.Request.Query["id"].FirstOrDefault()?.Trim();
            JobValidation.QueueName(queue);
            JobValidation.JobId(id);
            return Task.FromResult<IResult>(TypedResults.Redirect(JobPath(queue, id!)));
        });

    /// <summary>Consumers of every queue and a page of runtimes (<c>?status=online&amp;after=&lt;id&gt;</c>).</summary>
    public Task<IResult> RuntimesAsync(HttpContext http, CancellationToken cancellationToken) =>
        PageAsync(http, async user =>
        {
            RuntimeStatus? status = http.Request.Query["status"].FirstOrDefault() switch
            {
                null or "" => null,
                "online" => RuntimeStatus.Online,
                "offline" => RuntimeStatus.Offline,
                _ => throw new ConveyorValidationException("status", "must be online or offline"),
            };
            var after = http.Request.Query["after"].FirstOrDefault();
            var view = await browser.RuntimesAsync(status, string.IsNullOrEmpty(after) ? null : after, cancellationToken);
            return await RenderAsync<RuntimesPage>(http, new Dictionary<string, object?> { ["View"] = view }, await ChromeAsync(http, "Consumers and runtimes", user));
        });

    /// <summary>The sign-in form (self-host); with Easy Auth, App Service's own sign-in.</summary>
    public async Task<IResult> SignInPageAsync(HttpContext http, CancellationToken cancellationToken)
    {
        var back = ReturnPath(http.Request.Query["returnUrl"].FirstOrDefault());
        if (access.Mode == DashboardAccessMode.EasyAuth)
        {
            return TypedResults.Redirect(access.SignInTarget(back));
        }
        return await SignInFormAsync(http, back, null, StatusCodes.Status200OK);
    }

    /// <summary>Checks the posted API key; a right one starts a session and goes back where the user was headed.</summary>
    public async Task<IResult> SignInAsync(HttpContext http, CancellationToken cancellationToken)
    {
        if (access.Mode == DashboardAccessMode.EasyAuth)
        {
            return TypedResults.Redirect(access.SignInTarget(Base));
        }
        var form = await http.Request.ReadFormAsync(cancellationToken);
        var back = ReturnPath(form["returnUrl"].FirstOrDefault());
        if (!access.IsApiKey(form["key"].FirstOrDefault()))
        {
            return await SignInFormAsync(http, back, "That is not one of this app's API keys (Conveyor:Api:Keys).", StatusCodes.Status401Unauthorized);
        }
        await access.SignInAsync(http);
        return TypedResults.Redirect(back);
    }

    /// <summary>Ends the session (self-host) or App Service's (Easy Auth).</summary>
    public Task<IResult> SignOutAsync(HttpContext http, CancellationToken cancellationToken) =>
        ActionAsync(http, () =>
        {
            if (access.Mode == DashboardAccessMode.EasyAuth)
            {
                return Task.FromResult("/.auth/logout?post_logout_redirect_uri=" + Uri.EscapeDataString(Base));
            }
            DashboardAccess.SignOut(http);
            return Task.FromResult(Base + "/signin");
        }, cancellationToken);

    /// <summary>Gives one dead job a fresh set of attempts.</summary>
    public Task<IResult> RequeueDeadAsync(HttpContext http, string queue, string id, CancellationToken cancellationToken) =>
        ActionAsync(http, async () => QueuePath(queue, await admin.RequeueDeadAsync(queue, id, cancellationToken)
            ? $"Job {id} is back in the ready list."
            : $"Job {id} is not dead (any more): nothing requeued."), cancellationToken);

    /// <summary>Deletes one dead job for good.</summary>
    public Task<IResult> DeleteDeadAsync(HttpContext http, string queue, string id, CancellationToken cancellationToken) =>
        ActionAsync(http, async () => QueuePath(queue, await admin.DeleteDeadAsync(queue, id, cancellationToken)
            ? $"Job {id} is deleted."
            : $"Job {id} is not dead (any more): nothing deleted."), cancellationToken);

    /// <summary>Gives every dead job of the queue a fresh set of attempts.</summary>
    public Task<IResult> RequeueAllDeadAsync(HttpContext http, string queue, CancellationToken cancellationToken) =>
        ActionAsync(http, async () =>
            QueuePath(queue, $"{(await admin.RequeueAllDeadAsync(queue, cancellationToken)).ToString(CultureInfo.InvariantCulture)} dead jobs are back in the ready list."), cancellationToken);

    /// <summary>The dashboard's script or style sheet (anonymous: they hold nothing secret).</summary>
    public static IResult Asset(string name) => DashboardAsset.Find(name) is { } asset
        ? new HtmlResult(asset.Content, StatusCodes.Status200OK, asset.ContentType)
        : TypedResults.NotFound();

    public static string QueuePath(string queue, string? notice = null) =>
        $"{Base}/queues/{Uri.EscapeDataString(queue)}" + (notice is null ? "" : "?notice=" + Uri.EscapeDataString(notice));

    /// <summary>Where a dead job's action posts: <paramref name="verb"/> is requeue or delete.</summary>
    public static string DeadJobPath(string queue, string id, string verb) => $"{Base}/queues/{Uri.EscapeDataString(queue)}/dead/{Uri.EscapeDataString(id)}/{verb}";

    public static string JobPath(string queue, string id) => $"{Base}/queues/{Uri.EscapeDataString(queue)}/jobs/{Uri.EscapeDataString(id)}";

    /// <summary>
    /// The one place a page checks access and maps errors: anonymous → the sign-in (a redirect), Easy Auth without App
    /// Service authentication → 403, and what the API maps (a bad page number → 400, Redis or PostgreSQL down → 503) as
    /// a page with that status.
    /// </summary>
    private async Task<IResult> PageAsync(HttpContext http, Func<DashboardUser, Task<IResult>> page)
    {
        try
        {
            var user = await access.AuthenticateAsync(http);
            return user is null
                ? TypedResults.Redirect(access.SignInTarget(http.Request.Path + http.Request.QueryString))
                : await page(user);
        }
        catch (DashboardAccessException ex)
        {
            return await ErrorAsync(http, StatusCodes.Status403Forbidden, ex.Message);
        }
        catch (Exception ex) when (Problems.TryMap(ex, out var problem))
        {
            return await ErrorAsync(http, problem.StatusCode, problem.ProblemDetails.Detail ?? ex.Message);
        }
    }

    /// <summary>An action: a signed-in user and their CSRF token, or a refusal (401, 403); then the action, then a redirect to the page it returns.</summary>
    private async Task<IResult> ActionAsync(HttpContext http, Func<Task<string>> action, CancellationToken cancellationToken)
    {
        try
        {
            var user = await access.AuthenticateAsync(http);
            if (user is null)
            {
                return new HtmlResult("Sign in first.", StatusCodes.Status401Unauthorized, PlainText);
            }
            if (!http.Request.HasFormContentType || !await access.CheckCsrfAsync(user, await http.Request.ReadFormAsync(cancellationToken)))
            {
                return new HtmlResult("The form's CSRF token is missing or wrong: reload the page and try again.", StatusCodes.Status403Forbidden, PlainText);
            }
            return TypedResults.Redirect(await action());
        }
        catch (DashboardAccessException ex)
        {
            return new HtmlResult(ex.Message, StatusCodes.Status403Forbidden, PlainText);
        }
        catch (Exception ex) when (Problems.TryMap(ex, out var problem))
        {
            return await ErrorAsync(http, problem.StatusCode, problem.ProblemDetails.Detail ?? ex.Message);
        }
    }

    private async Task<IResult> SignInFormAsync(HttpContext http, string back, string? error, int status) =>
        await RenderAsync<SignInPage>(
            http, new Dictionary<string, object?> { ["ReturnTo"] = back, ["Error"] = error }, new PageChrome("Sign in", null, null, 0), status);

    /// <summary>An error as a page; without <paramref name="chrome"/>, without the signed-in navigation (the error may be that no one could be signed in).</summary>
    private Task<IResult> ErrorAsync(HttpContext http, int status, string message, PageChrome? chrome = null) =>
        RenderAsync<ErrorPage>(
            http, new Dictionary<string, object?> { ["Message"] = message }, (chrome ?? new PageChrome("Error", null, null, 0)) with { RefreshSeconds = 0 }, status);

    private async Task<PageChrome> ChromeAsync(HttpContext http, string title, DashboardUser user)
    {
        var notice = http.Request.Query["notice"].FirstOrDefault();
        return new PageChrome(title, user, await access.CsrfTokenAsync(user), options.Value.RefreshSeconds, string.IsNullOrEmpty(notice) ? null : notice);
    }

    private async Task<IResult> RenderAsync<TPage>(HttpContext http, Dictionary<string, object?> parameters, PageChrome chrome, int status = StatusCodes.Status200OK)
        where TPage : IComponent
    {
        parameters["Chrome"] = chrome;
        // The request's scope: a host may register the renderer's services scoped (the Functions worker does).
        await using var renderer = new HtmlRenderer(http.RequestServices, loggers);
        var html = await renderer.Dispatcher.InvokeAsync(async () =>
            (await renderer.RenderComponentAsync<TPage>(ParameterView.FromDictionary(parameters))).ToHtmlString());
        http.RequestAborted.ThrowIfCancellationRequested();
        return new HtmlResult(html, status, "text/html; charset=utf-8");
    }

    private static int Page(IQueryCollection query, string name)
    {
        var text = query[name].FirstOrDefault();
        if (string.IsNullOrEmpty(text))
        {
            return 1;
        }
        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var page) && page is >= 1 and <= QueueBrowser.MaxPage
            ? page
            : throw new ConveyorValidationException(name, $"must be a page number from 1 to {QueueBrowser.MaxPage}");
    }

    /// <summary>Only a path inside the dashboard: never another site (an open redirect), never <c>//host</c>.</summary>
    private static string ReturnPath(string? url) =>
        url is not null && url.StartsWith(Base, StringComparison.Ordinal) && !url.Contains("//", StringComparison.Ordinal) && !url.Contains('\\', StringComparison.Ordinal)
            ? url
            : Base;
}
