using System.Diagnostics;
using System.Reflection;
using System.Text.Json;
using Conveyor.Functions;
using Conveyor.Functions.Http;
using Conveyor.Functions.Timers;
using Conveyor.Hosting;
using Conveyor.Queue;
using Conveyor.Storage;
using Conveyor.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Azure.Functions.Worker;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Conveyor.Tests.Functions;

/// <summary>The Functions app's classes: wired from Program.cs' registration, routes equal to the self-host's, timers call their service once.</summary>
public sealed class FunctionsAppTests
{
    private static readonly Assembly FunctionsAssembly = typeof(FunctionsApp).Assembly;

    private static IEnumerable<(Type Type, MethodInfo Method, FunctionAttribute Function)> Functions() =>
        from type in FunctionsAssembly.GetTypes()
        from method in type.GetMethods()
        let attribute = method.GetCustomAttribute<FunctionAttribute>()
        where attribute is not null
        select (type, method, attribute);

    private static async Task<ServiceProvider> FunctionsServicesAsync(Dictionary<string, string?>? settings = null)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(settings ?? []).Build();
        var services = new ServiceCollection().AddLogging();
        services.AddConveyorFunctions(configuration);
        services.AddSingleton(new RedisConnection(await TestRedis.GetAsync()));
        services.AddSingleton(Npgsql.NpgsqlDataSource.Create(await TestPostgres.ServerConnectionStringAsync()));
        return services.BuildServiceProvider(new ServiceProviderOptions { ValidateOnBuild = true, ValidateScopes = true });
    }

    [Fact]
    public async Task Every_function_class_resolves_from_the_registration_Program_uses()
    {
        await using var services = await FunctionsServicesAsync();
        var functions = Functions().ToList();
        Assert.True(functions.Count >= 13, $"found {functions.Count} functions");
        foreach (var (type, _, _) in functions)
        {
            Assert.NotNull(ActivatorUtilities.CreateInstance(services, type));
        }
        Assert.Equal(functions.Count, functions.Select(f => f.Function.Name).Distinct().Count());
    }

    [Fact]
    public async Task The_function_route_table_equals_the_self_hosts()
    {
        var functionRoutes = Functions()
            .SelectMany(f => f.Method.GetParameters())
            .Select(p => p.GetCustomAttribute<HttpTriggerAttribute>())
            .Where(t => t is not null)
            .SelectMany(t => t!.Methods!.Select(m => $"{m.ToUpperInvariant()} /api/{t.Route}"))
            .Order()
            .ToList();

        await using var server = await SelfHostServer.StartAsync(TestRedis.UniqueQueue("routes"));
        Assert.Equal(server.Routes(), functionRoutes);
    }

    [Fact]
    public async Task An_http_function_forwards_to_the_shared_handler()
    {
        await using var services = await FunctionsServicesAsync();
        var function = ActivatorUtilities.CreateInstance<EnqueueJobFunction>(services);
        var queue = TestRedis.UniqueQueue("fn");
        var context = new DefaultHttpContext { RequestServices = services };
        context.Request.ContentType = "application/json";
        context.Request.Body = new MemoryStream("""{"type":"echo","payload":[1,2]}"""u8.ToArray());

        var result = await function.Run(context.Request, queue, CancellationToken.None);
        context.Response.Body = new MemoryStream();
        await result.ExecuteAsync(context);

        Assert.Equal(StatusCodes.Status202Accepted, context.Response.StatusCode);
        Assert.Equal(1, (await services.GetRequiredService<QueueAdmin>().GetStatsAsync(queue)).Ready);
    }

    [Theory]
    [InlineData(typeof(SchedulerFunction), "conveyor.scheduler.run")]
    [InlineData(typeof(CustodianFunction), "conveyor.custodian.run")]
    [InlineData(typeof(ProcessorFunction), "conveyor.processor.run")]
    public async Task Each_timer_function_calls_its_service_once_per_invocation(Type functionType, string activityName)
    {
        using var recorder = new ActivityRecorder();
        await using var services = await FunctionsServicesAsync(new()
        {
            ["Conveyor:Processor:SessionDuration"] = "00:00:01",
            ["Conveyor:Processor:IdleTimeout"] = "00:00:01",
            ["Conveyor:Processor:Queues:0"] = TestRedis.UniqueQueue("timer"),
        });
        var function = ActivatorUtilities.CreateInstance(services, functionType);
        var run = functionType.GetMethod("Run")!;
        using var marker = new Activity("timer test " + Guid.NewGuid()).Start();

        await (Task)run.Invoke(function, [new TimerInfo(), CancellationToken.None])!;

        // Count only this invocation's activities (other tests run timers in parallel).
        Assert.Equal(1, recorder.Count(activityName, marker.TraceId));
    }

    [Fact]
    public void Every_schedule_setting_in_the_local_settings_sample_parses_as_ncrontab()
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Functions.sln")))
        {
            root = Path.GetDirectoryName(root)!;
        }
        using var sample = JsonDocument.Parse(File.ReadAllText(Path.Combine(root, "local.settings.sample.json")));
        var values = sample.RootElement.GetProperty("Values");
        foreach (var (setting, fallback) in Schedules.Defaults)
        {
            var expression = values.GetProperty(setting).GetString();
            Assert.NotNull(Schedules.Parse(setting, expression));
            Assert.Equal(fallback, expression);
        }
        Assert.Throws<ConveyorValidationException>(() => Schedules.Parse("X", "every five seconds"));
        Assert.Equal("UseDevelopmentStorage=true", values.GetProperty("AzureWebJobsStorage").GetString());
        Assert.Equal(Conveyor.Functions.Queues.StorageWakeSender.DefaultQueue, values.GetProperty("ConveyorWakeQueue").GetString());
    }
}
