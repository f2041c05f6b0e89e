using Conveyor.Tests.Infrastructure;
using Microsoft.Playwright;

namespace Conveyor.Tests.Dashboard;

/// <summary>
/// Debian's Chromium (<c>apt-get install chromium</c>; <c>./dev test</c> installs it), driven by Playwright, headless,
/// one browser per test class. Playwright's own browser download is never used: a missing Chromium fails the tests
/// with a message that says how to install it, it never skips them.
/// </summary>
public sealed class Chromium : IAsyncLifetime
{
    /// <summary>Where Debian puts it; <c>CONVEYOR_TEST_CHROMIUM</c> names another executable.</summary>
    public static string ExecutablePath => Environment.GetEnvironmentVariable("CONVEYOR_TEST_CHROMIUM") is { Length: > 0 } path ? path : "/usr/bin/chromium";

    private IPlaywright? _playwright;
    private IBrowser? _browser;

    public IBrowser Browser => _browser ?? throw new InvalidOperationException("Chromium has not started");

    /// <summary>Screenshots of the pages, under the test output (<c>bin/…/screenshots</c>).</summary>
    public static string ScreenshotFolder { get; } = Directory.CreateDirectory(Path.Combine(AppContext.BaseDirectory, "screenshots")).FullName;

    public async Task InitializeAsync()
    {
        if (!File.Exists(ExecutablePath))
        {
            throw new InvalidOperationException(
                $"Chromium is not installed at {ExecutablePath}: the dashboard's browser tests need it. Run `apt-get install chromium` " +
                "(./dev test and .ci/run install it), or point CONVEYOR_TEST_CHROMIUM at a Chromium executable.");
        }
        _playwright = await Playwright.CreateAsync();
        _browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ExecutablePath,
            Headless = true,
            Args = ["--no-sandbox"],
        });
    }

    /// <summary>A fresh browser context (its own cookies) on <paramref name="app"/>'s address.</summary>
    public Task<IBrowserContext> NewContextAsync(SelfHostApp app) => Browser.NewContextAsync(new BrowserNewContextOptions
    {
        BaseURL = app.Client.BaseAddress!.ToString().TrimEnd('/'),
        ViewportSize = new ViewportSize { Width = 1280, Height = 800 },
        TimezoneId = "Europe/Paris",
    });

    public async Task DisposeAsync()
    {
        if (_browser is not null)
        {
            await _browser.DisposeAsync();
        }
        _playwright?.Dispose();
    }
}
