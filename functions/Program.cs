using Azure.Core;
using Azure.Monitor.OpenTelemetry.Exporter;
using Conveyor;
using Conveyor.Api;
using Conveyor.Functions;
using Microsoft.ApplicationInsights.Extensibility;
using Microsoft.Azure.Functions.Worker;
using Microsoft.Azure.Functions.Worker.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

var builder = FunctionsApplication.CreateBuilder(args);
builder.ConfigureFunctionsWebApplication();
// Handlers map the errors they expect (Problems.GuardAsync); one they did not expect answers the same 500 problem as
// the self-host's exception handler instead of the host's empty 500. Inside the ASP.NET Core proxying middleware,
// which registered first, so the HTTP response is still ours to write.
builder.Use(next => async context =>
{
    try
    {
        await next(context);
    }
    catch (Exception ex) when (context.GetHttpContext() is { Response.HasStarted: false } http)
    {
        await Problems.WriteUnexpectedAsync(http, ex);
    }
});

// Application Insights: WorkerService 2.x (Worker.ApplicationInsights breaks on 3.x) for requests and logs,
// OpenTelemetry for Conveyor's own meter and traces. Local auth is off in Azure: both use Entra.
builder.Services
    .AddApplicationInsightsTelemetryWorkerService()
    .ConfigureFunctionsApplicationInsights();
builder.Logging.Services.Configure<LoggerFilterOptions>(options =>
{
    // The Application Insights SDK adds a Warning-level default rule; let host.json / Logging decide instead.
    var rule = options.Rules.FirstOrDefault(r => r.ProviderName == "Microsoft.Extensions.Logging.ApplicationInsights.ApplicationInsightsLoggerProvider");
    if (rule is not null)
    {
        options.Rules.Remove(rule);
    }
});
// Npgsql logs every command at Information: keep its warnings and errors only (Logging:LogLevel:Npgsql overrides).
builder.Logging.AddFilter("Npgsql", LogLevel.Warning);
var telemetry = builder.Services.AddOpenTelemetry()
    .WithMetrics(metrics => metrics.AddMeter(ConveyorTelemetry.Name))
    // The worker's invocation activity (source Microsoft.Azure.Functions.Worker) continues the host's trace: listening to
    // it lets it be sampled like its parent, so a job enqueued over HTTP carries a sampled trace parent into its run.
    .WithTracing(tracing => tracing.AddSource(ConveyorTelemetry.Name, "Microsoft.Azure.Functions.Worker"));
if (!string.IsNullOrEmpty(builder.Configuration["APPLICATIONINSIGHTS_CONNECTION_STRING"]))
{
    // Application Insights has local auth disabled (infra/): both exporters sign in with the app's identity.
    telemetry.UseAzureMonitorExporter();
    builder.Services.AddOptions<AzureMonitorExporterOptions>()
        .Configure<TokenCredential>((options, credential) => options.Credential = credential);
    builder.Services.AddOptions<TelemetryConfiguration>()
        .Configure<TokenCredential>((configuration, credential) => configuration.SetAzureTokenCredential(credential));
}

builder.Services.AddConveyorFunctions(builder.Configuration);
builder.Build().Run();
