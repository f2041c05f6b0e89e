using Conveyor.Api;
using Conveyor.Dashboard;
using Conveyor.Hosting;
using Conveyor.Queue;
using Microsoft.Extensions.Options;

namespace Conveyor.SelfHost;

/// <summary>The Conveyor app on plain ASP.NET Core: the same API and timers as the Functions app, plus a continuous processor.</summary>
public static class SelfHost
{
    public static WebApplication Build(string[] args, Action<ConveyorBuilder>? configure = null, Action<WebApplicationBuilder>? customize = null)
    {
        var builder = WebApplication.CreateBuilder(args is ["migrate", ..] ? args[1..] : args);
        // local.settings.json (the Functions local settings) feeds the self-host too; env vars still win.
        builder.Configuration.AddLocalSettings(builder.Environment.ContentRootPath);
        builder.Configuration.AddEnvironmentVariables();
        customize?.Invoke(builder);

        var conveyor = builder.Services.AddConveyor(builder.Configuration);
        configure?.Invoke(conveyor);
        builder.Services.AddConveyorProblemDetails();
        builder.Services.AddHostedService<ScheduledMaintenance>();
        builder.Services.AddHostedService<ProcessorService>();
        builder.Services.AddSingleton<ApiKeyMiddleware>();
        // Shutdown waits for the processor's graceful end: running handlers get ShutdownGrace.
        builder.Services.AddOptions<HostOptions>().Configure<IOptions<ProcessorOptions>>((host, processor) =>
            host.ShutdownTimeout = processor.Value.ShutdownGrace + TimeSpan.FromSeconds(15));

        var app = builder.Build();
        // What no handler answers is problem JSON too: an unexpected exception (500, logged here), an unknown route
        // (404) and a wrong method (405).
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        app.UseMiddleware<ApiKeyMiddleware>();
        app.MapConveyorApi();
        app.MapConveyorDashboard();
        return app;
    }

    /// <summary>Applies pending PostgreSQL migrations and exits (azd's pre-deploy hook, <c>./dev up</c>).</summary>
    public static async Task<int> MigrateAsync(WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        var applied = await app.Services.GetRequiredService<Conveyor.Storage.SchemaMigrator>().MigrateAsync();
        await Console.Out.WriteLineAsync(applied.Count == 0 ? "schema is up to date" : $"applied {string.Join(", ", applied)}");
        return 0;
    }
}
