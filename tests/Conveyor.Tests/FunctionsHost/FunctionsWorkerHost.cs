using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Reflection;
using System.Text.Json;
using System.Threading.Channels;
using Conveyor.Hosting;
using Conveyor.Tests.FunctionsHost.Rpc;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Template;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using NCrontab;

namespace Conveyor.Tests.FunctionsHost;

/// <summary>How to start the worker.</summary>
public sealed record FunctionsWorkerOptions
{
    /// <summary>App settings, passed as environment variables the way the host passes them (<c>Conveyor__Redis__ConnectionString</c>).</summary>
    public required IReadOnlyDictionary<string, string> AppSettings { get; init; }

    /// <summary>Invoke every timer function on its schedule, as the host does (not those switched off with <c>AzureWebJobs.&lt;name&gt;.Disabled</c>). Default: false, timers run only through <see cref="FunctionsWorkerHost.InvokeTimerAsync"/>.</summary>
    public bool RunTimersOnSchedule { get; init; }

    /// <summary>Assemblies loaded into the worker as .NET startup hooks (<c>DOTNET_STARTUP_HOOKS</c>).</summary>
    public IReadOnlyList<string> StartupHooks { get; init; } = [];

    /// <summary>The longest the host waits for any one thing (a handshake step, an invocation, an HTTP response). Default: 60 s.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>The app folder: functions/'s build output (worker.config.json, functions.metadata, host.json). Default: <see cref="FunctionsWorkerHost.BuildOutput"/>.</summary>
    public string? AppDirectory { get; init; }
}

/// <summary>
/// Plays the Azure Functions host for the real isolated worker built from functions/: a gRPC server for the
/// host-worker protocol (FunctionRpc.EventStream, HTTP/2 on a free loopback port), the worker process with the host's
/// arguments and environment, the init handshake, worker indexing (FunctionsMetadataRequest), one FunctionLoadRequest
/// per function, invocations (timers, queue messages, and HTTP the way the host proxies it to the worker's ASP.NET Core listener with
/// <c>x-ms-invocation-id</c>, route values and query as trigger metadata), InvocationCancel, and WorkerTerminate.
/// It enforces no function keys: the real host does that, the worker never sees a key.
/// Every wait is bounded by <see cref="FunctionsWorkerOptions.Timeout"/> and says what it waited for; disposing
/// stops the worker (WorkerTerminate, then its whole process tree is killed if it lingers).
/// </summary>
public sealed class FunctionsWorkerHost : IAsyncDisposable
{
    public const string InvocationIdHeader = "x-ms-invocation-id";

    /// <summary>What the test host claims to be in WorkerInitRequest.</summary>
    private const string HostVersion = "4.1040.100.0";

    /// <summary>The worker's ASP.NET Core extension binds a port it found free a moment before; a start that lost that race is retried.</summary>
    private const int StartAttempts = 3;

    private static readonly TimeSpan TerminateGrace = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan ExitWait = TimeSpan.FromSeconds(15);
    private static readonly ConcurrentDictionary<int, Process> Running = new();

    private readonly FunctionsWorkerOptions _options;
    private readonly string _appDirectory;
    private readonly Channel<StreamingMessage> _toWorker = Channel.CreateUnbounded<StreamingMessage>(new() { SingleReader = true });
    private readonly ConcurrentDictionary<string, TaskCompletionSource<StreamingMessage>> _requests = new();
    private readonly ConcurrentDictionary<string, TaskCompletionSource<InvocationResponse>> _invocations = new();
    private readonly TaskCompletionSource<bool> _streamStarted = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _workerExited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ConcurrentQueue<string> _output = new();
    private readonly ConcurrentQueue<WorkerLog> _logs = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<Task> _timers = [];
    private readonly HttpClient _forwarder = new(new SocketsHttpHandler
    {
        AllowAutoRedirect = false,
        UseCookies = false,
        ActivityHeadersPropagator = null, // the host sets traceparent itself, below
    });
    private List<HttpRoute> _routes = [];
    private WebApplication? _grpc;
    private Process? _worker;
    private Uri? _workerHttpUri;
    private bool _starting = true;
    private int _disposed;

    static FunctionsWorkerHost() => AppDomain.CurrentDomain.ProcessExit += (_, _) =>
    {
        // A test process that exits without disposing a host leaves no worker behind (see also StartWatchdog).
        foreach (var process in Running.Values)
        {
            Kill(process);
        }
    };

    private FunctionsWorkerHost(FunctionsWorkerOptions options)
    {
        _options = options;
        _appDirectory = options.AppDirectory ?? BuildOutput();
    }

    /// <summary>What the worker answered in WorkerInitResponse.</summary>
    public IReadOnlyDictionary<string, string> Capabilities { get; private set; } = new Dictionary<string, string>();

    /// <summary>The functions the worker indexed and loaded, by name.</summary>
    public IReadOnlyDictionary<string, RpcFunctionMetadata> Functions { get; private set; } = new Dictionary<string, RpcFunctionMetadata>();

    /// <summary>Every log the worker sent over the stream (RpcLog), in the order it sent them.</summary>
    public IReadOnlyCollection<WorkerLog> Logs => _logs;

    /// <summary>The worker process's id (for tests of the fixture itself).</summary>
    public int ProcessId => _worker?.Id ?? throw new InvalidOperationException("the worker has not started");

    /// <summary>From launching the worker to the last function loaded.</summary>
    public TimeSpan StartupTime { get; private set; }

    /// <summary>
    /// Launches the worker and completes the handshake: StartStream, init, worker indexing, one load per function; then,
    /// with <see cref="FunctionsWorkerOptions.RunTimersOnSchedule"/>, starts invoking timers on their schedules.
    /// </summary>
    /// <exception cref="FunctionsWorkerStartException">The worker exited, failed a handshake step or did not answer in time; it says what the host received.</exception>
    public static async Task<FunctionsWorkerHost> StartAsync(FunctionsWorkerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        for (var attempt = 1; ; attempt++)
        {
            var host = new FunctionsWorkerHost(options);
            try
            {
                await host.StartWorkerAsync();
                return host;
            }
            catch (FunctionsWorkerStartException ex) when (ex.LostPortRace && attempt < StartAttempts)
            {
                await host.DisposeAsync();
            }
            catch
            {
                await host.DisposeAsync();
                throw;
            }
        }
    }

    /// <summary>functions/'s build output for this test build's configuration (the folder the host runs the app from).</summary>
    public static string BuildOutput()
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Functions.sln")))
        {
            root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException($"no Functions.sln above {AppContext.BaseDirectory}");
        }
        var configuration = typeof(FunctionsWorkerHost).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Debug";
        var output = Path.Combine(root, "functions", "bin", configuration, "net10.0");
        if (!File.Exists(Path.Combine(output, "worker.config.json")) || !File.Exists(Path.Combine(output, "functions.metadata")))
        {
            throw new InvalidOperationException(
                $"{output} holds no deployable Functions app (worker.config.json, functions.metadata): build functions/ against the real Worker packages first (dotnet build functions -c {configuration})");
        }
        return output;
    }

    /// <summary>An HttpClient whose requests go through this host to the worker, as the Functions host's front end would send them.</summary>
    /// <summary>The HTTP routes the loaded functions serve, as <c>METHOD /api/route</c>, sorted (the self-host's <c>SelfHostServer.Routes</c> form).</summary>
    public IReadOnlyList<string> Routes() =>
        [.. _routes.SelectMany(r => r.Methods.Select(m => $"{m} /{r.Template}")).Order()];

    public HttpClient CreateClient() => new(new HostFrontEnd(this)) { BaseAddress = new Uri("http://localhost/") };

    /// <summary>
    /// Invokes a timer function once with the TimerInfo the host's timer extension sends, and waits for the worker's
    /// answer. Cancelling <paramref name="cancellationToken"/> sends InvocationCancel, as the host does on shutdown, and
    /// still waits for (and returns) the worker's answer.
    /// </summary>
    public Task<InvocationResponse> InvokeTimerAsync(string name, CancellationToken cancellationToken = default)
    {
        var function = Function(name);
        var binding = function.Bindings.SingleOrDefault(b => b.Value.Type == "timerTrigger").Key
            ?? throw new ArgumentException($"{name} has no timerTrigger binding", nameof(name));
        var now = DateTime.UtcNow;
        var timer = JsonSerializer.Serialize(new
        {
            Schedule = new { AdjustForDST = true },
            ScheduleStatus = new { Last = now.AddSeconds(-1), Next = now.AddSeconds(1), LastUpdated = now },
            IsPastDue = false,
        });
        return InvokeAsync(
            Guid.NewGuid().ToString(),
            function,
            new ParameterBinding { Name = binding, Data = new TypedData { Json = timer } },
            new Dictionary<string, TypedData>(),
            NewTraceParent(),
            cancellationToken);
    }

    /// <summary>
    /// Invokes a queue-triggered function once with one message, the way the host's Storage Queues extension does once it
    /// has dequeued (and, per host.json's <c>messageEncoding</c>, decoded) it: the body as the trigger's string data, and
    /// the message's properties as trigger metadata (<c>QueueTrigger</c>, <c>Id</c>, <c>DequeueCount</c>, times,
    /// <c>PopReceipt</c>). Waits for the worker's answer; cancelling sends InvocationCancel, as the host does on shutdown.
    /// </summary>
    public Task<InvocationResponse> InvokeQueueAsync(string name, string body, long dequeueCount = 1, CancellationToken cancellationToken = default)
    {
        var function = Function(name);
        var binding = function.Bindings.SingleOrDefault(b => b.Value.Type == "queueTrigger").Key
            ?? throw new ArgumentException($"{name} has no queueTrigger binding", nameof(name));
        var now = DateTimeOffset.UtcNow;
        var metadata = new Dictionary<string, TypedData>
        {
            ["QueueTrigger"] = new() { String = body },
            ["Id"] = new() { String = Guid.NewGuid().ToString() },
            ["PopReceipt"] = new() { String = Convert.ToBase64String(Guid.NewGuid().ToByteArray()) },
            ["DequeueCount"] = new() { Json = dequeueCount.ToString(System.Globalization.CultureInfo.InvariantCulture) },
            ["InsertionTime"] = new() { Json = JsonSerializer.Serialize(now) },
            ["ExpirationTime"] = new() { Json = JsonSerializer.Serialize(now.AddDays(7)) },
            ["NextVisibleTime"] = new() { Json = JsonSerializer.Serialize(now.AddMinutes(10)) },
        };
        return InvokeAsync(
            Guid.NewGuid().ToString(),
            function,
            new ParameterBinding { Name = binding, Data = new TypedData { String = body } },
            metadata,
            NewTraceParent(),
            cancellationToken);
    }

    private async Task StartWorkerAsync()
    {
        var clock = Stopwatch.StartNew();
        var grpc = await StartGrpcServerAsync();
        LaunchWorker(grpc);
        await AwaitAsync(_streamStarted.Task, "the worker to open the gRPC stream (StartStream)");

        var init = new WorkerInitRequest { HostVersion = HostVersion, WorkerDirectory = _appDirectory, FunctionAppDirectory = _appDirectory };
        foreach (var capability in (string[])["RpcHttpBodyOnly", "RawHttpBodyBytes", "TypedDataCollection", "RpcHttpTriggerMetadataRemoved",
                     "IgnoreEmptyValuedRpcHttpHeaders", "UseNullableValueDictionaryForHttp", "HandlesWorkerTerminateMessage",
                     "HandlesInvocationCancelMessage"])
        {
            init.Capabilities[capability] = bool.TrueString;
        }
        var initialized = (await RequestAsync(new StreamingMessage { WorkerInitRequest = init }, "WorkerInitResponse")).WorkerInitResponse;
        EnsureSuccess(initialized.Result, "WorkerInitResponse");
        Capabilities = initialized.Capabilities.ToDictionary();
        _workerHttpUri = Capabilities.TryGetValue("HttpUri", out var httpUri) ? new Uri(httpUri) : null;

        // worker.config.json says "workerIndexing": "true": the worker, not the host, lists the functions.
        var metadata = (await RequestAsync(
            new StreamingMessage { FunctionsMetadataRequest = new FunctionsMetadataRequest { FunctionAppDirectory = _appDirectory } },
            "FunctionMetadataResponse")).FunctionMetadataResponse;
        EnsureSuccess(metadata.Result, "FunctionMetadataResponse");

        // One load per function: Worker 2.x does not handle FunctionLoadRequestCollection.
        var loaded = await Task.WhenAll(metadata.FunctionMetadataResults.Select(async function =>
        {
            function.Directory = _appDirectory;
            var load = (await RequestAsync(
                new StreamingMessage { FunctionLoadRequest = new FunctionLoadRequest { FunctionId = function.FunctionId, Metadata = function } },
                $"FunctionLoadResponse of {function.Name}")).FunctionLoadResponse;
            EnsureSuccess(load.Result, $"FunctionLoadResponse of {function.Name}");
            return function;
        }));
        Functions = loaded.ToDictionary(f => f.Name);
        _routes = HttpRoutes();
        if (_workerHttpUri is { } listener)
        {
            // The worker reports its HTTP listener at init but opens it a moment later: route HTTP once it accepts connections.
            await AwaitAsync(AcceptsConnectionsAsync(listener, _stopping.Token), $"the worker's HTTP listener {listener} to accept connections");
        }
        var schedules = TimerSchedules();
        StartupTime = clock.Elapsed;
        _starting = false;

        if (_options.RunTimersOnSchedule)
        {
            foreach (var (function, schedule) in schedules)
            {
                _timers.Add(RunOnScheduleAsync(function, schedule, _stopping.Token));
            }
        }
    }

    private static async Task<bool> AcceptsConnectionsAsync(Uri listener, CancellationToken cancellationToken)
    {
        while (true)
        {
            try
            {
                using var client = new System.Net.Sockets.TcpClient();
                await client.ConnectAsync(listener.Host, listener.Port, cancellationToken);
                return true;
            }
            catch (System.Net.Sockets.SocketException)
            {
                await Task.Delay(20, cancellationToken);
            }
        }
    }

    private async Task<Uri> StartGrpcServerAsync()
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        // HTTP/2 without TLS on a free loopback port: how the host listens for its workers.
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0, listen => listen.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc(grpc =>
        {
            grpc.MaxReceiveMessageSize = null;
            grpc.MaxSendMessageSize = null;
        });
        builder.Services.AddSingleton(this);
        _grpc = builder.Build();
        _grpc.MapGrpcService<FunctionRpcEndpoint>();
        await _grpc.StartAsync();
        return new Uri(_grpc.Urls.First());
    }

    private void LaunchWorker(Uri grpc)
    {
        var workerId = Guid.NewGuid().ToString();
        var requestId = Guid.NewGuid().ToString();
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(_appDirectory, "worker.config.json")));
        var description = config.RootElement.GetProperty("description");
        var start = new ProcessStartInfo(description.GetProperty("defaultExecutablePath").GetString()!)
        {
            WorkingDirectory = _appDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // The host passes both the legacy and the prefixed set; Worker 2.x reads the --functions-* ones.
        foreach (var argument in (string[])[
            Path.Combine(_appDirectory, description.GetProperty("defaultWorkerPath").GetString()!),
            "--host", grpc.Host, "--port", $"{grpc.Port}", "--workerId", workerId, "--requestId", requestId,
            "--grpcMaxMessageLength", $"{int.MaxValue}",
            "--functions-uri", grpc.AbsoluteUri, "--functions-worker-id", workerId, "--functions-request-id", requestId,
            "--functions-grpc-max-message-length", $"{int.MaxValue}"])
        {
            start.ArgumentList.Add(argument);
        }
        start.Environment["FUNCTIONS_WORKER_RUNTIME"] = "dotnet-isolated";
        // Function loading resolves scriptFile from here, and the ASP.NET Core extension reads host.json's routePrefix.
        start.Environment["FUNCTIONS_APPLICATION_DIRECTORY"] = _appDirectory;
        start.Environment["FUNCTIONS_WORKER_DIRECTORY"] = _appDirectory;
        start.Environment["AZURE_FUNCTIONS_ENVIRONMENT"] = "Development";
        start.Environment["DOTNET_STARTUP_HOOKS"] = string.Join(Path.PathSeparator, _options.StartupHooks);
        foreach (var (name, value) in _options.AppSettings)
        {
            start.Environment[name] = value;
        }

        var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => Capture(e.Data);
        process.ErrorDataReceived += (_, e) => Capture(e.Data);
        if (!process.Start())
        {
            throw new FunctionsWorkerStartException($"{start.FileName} did not start", null, [], []);
        }
        _worker = process;
        Running[process.Id] = process;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _ = ObserveExitAsync(process);
        StartWatchdog(process, Path.GetFileName(start.ArgumentList[0]));
    }

    /// <summary>
    /// The test runner ends its test host process with a kill when a run is over, so neither dispose nor ProcessExit
    /// runs for a host a test left behind, and the worker does not exit when its gRPC stream breaks: a shell kills it
    /// once this process is gone (and ends by itself when the worker does).
    /// </summary>
    private static void StartWatchdog(Process worker, string workerPath)
    {
        var alive = $"grep -qs '{workerPath}' /proc/{worker.Id}/cmdline";
        var start = new ProcessStartInfo("sh") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add($"while [ -d /proc/{Environment.ProcessId} ] && {alive}; do sleep 0.5; done; if {alive}; then kill -KILL {worker.Id}; fi");
        using var watchdog = Process.Start(start);
    }

    private void Capture(string? line)
    {
        if (line is not null)
        {
            _output.Enqueue(line);
        }
    }

    private async Task ObserveExitAsync(Process process)
    {
        // Returns once the process has exited and its redirected output has been read to the end.
        await process.WaitForExitAsync();
        Running.TryRemove(process.Id, out _);
        _workerExited.TrySetResult();
    }

    /// <summary>The body of the EventStream call the worker makes: pumps host-to-worker messages and routes the worker's.</summary>
    internal async Task RunStreamAsync(IAsyncStreamReader<StreamingMessage> fromWorker, IServerStreamWriter<StreamingMessage> toWorker, CancellationToken cancellationToken)
    {
        var pump = Task.Run(async () =>
        {
            await foreach (var message in _toWorker.Reader.ReadAllAsync(cancellationToken))
            {
                await toWorker.WriteAsync(message, cancellationToken);
            }
        }, cancellationToken);
        try
        {
            await foreach (var message in fromWorker.ReadAllAsync(cancellationToken))
            {
                Receive(message);
            }
        }
        catch (IOException)
        {
            // The worker went away mid-stream; its exit is observed (and reported) on its own.
        }
        finally
        {
            await pump.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private void Receive(StreamingMessage message)
    {
        switch (message.ContentCase)
        {
            case StreamingMessage.ContentOneofCase.StartStream:
                _streamStarted.TrySetResult(true);
                break;
            case StreamingMessage.ContentOneofCase.RpcLog:
                _logs.Enqueue(WorkerLog.From(message.RpcLog));
                break;
            case StreamingMessage.ContentOneofCase.InvocationResponse:
                if (_invocations.TryGetValue(message.InvocationResponse.InvocationId, out var invocation))
                {
                    invocation.TrySetResult(message.InvocationResponse);
                }
                break;
            case StreamingMessage.ContentOneofCase.None:
                break; // the worker acknowledges WorkerTerminate and InvocationCancel with an empty message
            default:
                if (_requests.TryGetValue(message.RequestId, out var request))
                {
                    request.TrySetResult(message);
                }
                break;
        }
    }

    private async Task<StreamingMessage> RequestAsync(StreamingMessage message, string answer)
    {
        message.RequestId = Guid.NewGuid().ToString(); // the worker echoes it on its answer
        var reply = new TaskCompletionSource<StreamingMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        _requests[message.RequestId] = reply;
        try
        {
            await _toWorker.Writer.WriteAsync(message);
            return await AwaitAsync(reply.Task, $"the worker's {answer}");
        }
        finally
        {
            _requests.TryRemove(message.RequestId, out _);
        }
    }

    private async Task<InvocationResponse> InvokeAsync(
        string invocationId, RpcFunctionMetadata function, ParameterBinding trigger, IDictionary<string, TypedData> triggerMetadata, string traceParent,
        CancellationToken cancellationToken)
    {
        // The worker dereferences the trace context unconditionally: the host always sends one.
        var request = new InvocationRequest { InvocationId = invocationId, FunctionId = function.FunctionId, TraceContext = new RpcTraceContext { TraceParent = traceParent } };
        request.InputData.Add(trigger);
        request.TriggerMetadata.Add(triggerMetadata);
        var response = new TaskCompletionSource<InvocationResponse>(TaskCreationOptions.RunContinuationsAsynchronously);
        _invocations[invocationId] = response;
        try
        {
            await _toWorker.Writer.WriteAsync(new StreamingMessage { RequestId = Guid.NewGuid().ToString(), InvocationRequest = request }, CancellationToken.None);
            await using var cancel = cancellationToken.Register(() => _toWorker.Writer.TryWrite(
                new StreamingMessage { RequestId = Guid.NewGuid().ToString(), InvocationCancel = new InvocationCancel { InvocationId = invocationId } }));
            return await AwaitAsync(response.Task, $"the worker's InvocationResponse to {function.Name} (invocation {invocationId})");
        }
        finally
        {
            _invocations.TryRemove(invocationId, out _);
        }
    }

    /// <summary>
    /// What the host does for an HTTP trigger when the worker advertises HttpUri: forward the request there with
    /// x-ms-invocation-id, and send an InvocationRequest whose HTTP input is empty and whose trigger metadata holds the
    /// route values and query; the proxied response is the answer. A path no function serves gets the host's 404.
    /// </summary>
    internal async Task<HttpResponseMessage> SendHttpAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var uri = request.RequestUri ?? throw new ArgumentException("no request URI", nameof(request));
        var workerUri = _workerHttpUri ?? throw new InvalidOperationException("the worker advertised no HttpUri capability");
        var path = PathString.FromUriComponent(uri);
        var (function, routeValues) = Match(request.Method, path);
        if (function is null)
        {
            return new HttpResponseMessage(HttpStatusCode.NotFound) { RequestMessage = request };
        }

        var invocationId = Guid.NewGuid().ToString();
        var traceParent = ContinueTrace(request);
        using var forwarded = new HttpRequestMessage(request.Method, new Uri(workerUri, uri.PathAndQuery)) { Content = request.Content };
        foreach (var (name, values) in request.Headers)
        {
            if (name is not ("Host" or "traceparent" or "tracestate"))
            {
                forwarded.Headers.TryAddWithoutValidation(name, values);
            }
        }
        forwarded.Headers.TryAddWithoutValidation(InvocationIdHeader, invocationId);
        forwarded.Headers.TryAddWithoutValidation("traceparent", traceParent);

        var metadata = routeValues.ToDictionary(kv => kv.Key, kv => new TypedData { String = Convert.ToString(kv.Value, System.Globalization.CultureInfo.InvariantCulture) ?? "" });
        var query = QueryHelpers.ParseQuery(uri.Query).ToDictionary(kv => kv.Key, kv => kv.Value.ToString());
        foreach (var (name, value) in query)
        {
            metadata.TryAdd(name, new TypedData { String = value });
        }
        metadata["Query"] = new TypedData { Json = JsonSerializer.Serialize(query) };

        // The host starts forwarding first, then sends the invocation; the worker pairs the two by invocation id.
        var http = _forwarder.SendAsync(forwarded, HttpCompletionOption.ResponseContentRead, cancellationToken);
        var binding = function.Bindings.Single(b => b.Value.Type == "httpTrigger").Key;
        var invocation = InvokeAsync(invocationId, function, new ParameterBinding { Name = binding, Data = new TypedData { Http = new RpcHttp() } }, metadata, traceParent, cancellationToken);
        var response = await AwaitAsync(http, $"the worker's HTTP response to {request.Method} {path} (invocation {invocationId} of {function.Name})");
        var result = await invocation;
        if (result.Result.Status == StatusResult.Types.Status.Failure)
        {
            // The host answers a failed invocation with a 500, whatever the worker wrote; this one also says why, for the test's message.
            response.Dispose();
            return new HttpResponseMessage(HttpStatusCode.InternalServerError)
            {
                RequestMessage = request,
                Content = new StringContent($"{function.Name} failed (invocation {invocationId}): {result.Result.Exception?.Message}"),
            };
        }
        response.RequestMessage = request;
        return response;
    }

    private (RpcFunctionMetadata? Function, RouteValueDictionary Values) Match(HttpMethod method, PathString path)
    {
        foreach (var route in _routes.Where(r => r.Methods.Contains(method.Method)).OrderBy(r => r.Parameters))
        {
            var values = new RouteValueDictionary();
            if (route.Matcher.TryMatch(path, values))
            {
                return (route.Function, values);
            }
        }
        return (null, []);
    }

    private List<HttpRoute> HttpRoutes()
    {
        var prefix = RoutePrefix();
        var routes = new List<HttpRoute>();
        foreach (var function in Functions.Values)
        {
            if (Trigger(function, "httpTrigger") is not { } trigger)
            {
                continue;
            }
            var route = trigger.TryGetProperty("route", out var r) && r.GetString() is { } template ? template : function.Name;
            var methods = trigger.TryGetProperty("methods", out var m)
                ? m.EnumerateArray().Select(x => x.GetString()!.ToUpperInvariant()).ToHashSet()
                : ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
            var parsed = TemplateParser.Parse(string.IsNullOrEmpty(prefix) ? route : $"{prefix}/{route}");
            routes.Add(new HttpRoute(function, methods, new TemplateMatcher(parsed, []), parsed.Parameters.Count, string.IsNullOrEmpty(prefix) ? route : $"{prefix}/{route}"));
        }
        return routes;
    }

    /// <summary>The function's trigger binding of <paramref name="type"/>, as the worker indexed it (raw binding JSON).</summary>
    private static JsonElement? Trigger(RpcFunctionMetadata function, string type) =>
        function.RawBindings.Select(raw => JsonDocument.Parse(raw).RootElement)
            .Where(binding => string.Equals(binding.GetProperty("type").GetString(), type, StringComparison.OrdinalIgnoreCase))
            .Select(binding => (JsonElement?)binding)
            .SingleOrDefault();

    private string RoutePrefix()
    {
        var file = Path.Combine(_appDirectory, "host.json");
        using var hostJson = JsonDocument.Parse(File.Exists(file) ? File.ReadAllText(file) : "{}",
            new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        return hostJson.RootElement.TryGetProperty("extensions", out var extensions) && extensions.TryGetProperty("http", out var http)
            && http.TryGetProperty("routePrefix", out var prefix) ? prefix.GetString() ?? "" : "api";
    }

    /// <summary>
    /// Each timer function's schedule, resolved like the host does (<c>%Setting%</c> from the app settings); like the
    /// host, a schedule that names a missing setting fails the start.
    /// </summary>
    private List<(RpcFunctionMetadata Function, CrontabSchedule Schedule)> TimerSchedules()
    {
        var schedules = new List<(RpcFunctionMetadata, CrontabSchedule)>();
        foreach (var function in Functions.Values)
        {
            if (Trigger(function, "timerTrigger") is not { } trigger || Disabled(function.Name))
            {
                continue;
            }
            var expression = trigger.GetProperty("schedule").GetString()!;
            if (expression.StartsWith('%') && expression.EndsWith('%'))
            {
                var setting = expression.Trim('%');
                expression = _options.AppSettings.TryGetValue(setting, out var value)
                    ? value
                    : throw new FunctionsWorkerStartException(
                        $"The timer {function.Name}'s schedule names app setting {setting}, which is not set (the host refuses to index it)", null, [.. _output], [.. _logs]);
            }
            schedules.Add((function, Schedules.Parse(function.Name, expression)));
        }
        return schedules;
    }

    /// <summary>The host's switch: app setting <c>AzureWebJobs.&lt;name&gt;.Disabled</c> (or <c>AzureWebJobs__&lt;name&gt;__Disabled</c>).</summary>
    private bool Disabled(string function) =>
        (_options.AppSettings.TryGetValue($"AzureWebJobs.{function}.Disabled", out var value) ||
         _options.AppSettings.TryGetValue($"AzureWebJobs__{function}__Disabled", out value))
        && bool.TryParse(value, out var disabled) && disabled;

    /// <summary>Invokes the timer on every occurrence, never two at once (the host's timer listener skips ticks while one runs).</summary>
    private async Task RunOnScheduleAsync(RpcFunctionMetadata function, CrontabSchedule schedule, CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            var now = DateTime.UtcNow;
            try
            {
                await Task.Delay(schedule.GetNextOccurrence(now) - now, stopping);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            if (_workerExited.Task.IsCompleted)
            {
                return;
            }
            try
            {
                // On dispose, stopping sends InvocationCancel to a timer still running (a processor session).
                await InvokeTimerAsync(function.Name, stopping);
            }
#pragma warning disable CA1031 // Like the host, a failed or timed-out tick is logged (the worker logs it) and the next tick runs.
            catch (Exception) when (!stopping.IsCancellationRequested && !_workerExited.Task.IsCompleted)
#pragma warning restore CA1031
            {
            }
            catch (Exception) when (stopping.IsCancellationRequested || _workerExited.Task.IsCompleted)
            {
                return;
            }
        }
    }

    private RpcFunctionMetadata Function(string name) =>
        Functions.TryGetValue(name, out var function)
            ? function
            : throw new ArgumentException($"the worker loaded no function named {name} (it loaded {string.Join(", ", Functions.Keys.Order())})", nameof(name));

    /// <summary>The host continues the caller's trace (same trace id and sampling flag, its own span); without one it starts a sampled trace.</summary>
    private static string ContinueTrace(HttpRequestMessage request)
    {
        if (request.Headers.TryGetValues("traceparent", out var values) && ActivityContext.TryParse(values.First(), null, out var caller))
        {
            return $"00-{caller.TraceId}-{ActivitySpanId.CreateRandom()}-{(byte)caller.TraceFlags:x2}";
        }
        return NewTraceParent();
    }

    private static string NewTraceParent() => $"00-{ActivityTraceId.CreateRandom()}-{ActivitySpanId.CreateRandom()}-01";

    private void EnsureSuccess(StatusResult result, string what)
    {
        if (result.Status != StatusResult.Types.Status.Success)
        {
            throw Failure($"{what} reported {result.Status}: {result.Exception?.Message}");
        }
    }

    /// <summary>Waits for <paramref name="task"/>, or fails fast, saying what it waited for, when the worker exits or the timeout passes.</summary>
    private async Task<T> AwaitAsync<T>(Task<T> task, string what)
    {
        var done = await Task.WhenAny(task, _workerExited.Task, Task.Delay(_options.Timeout));
        if (done == task)
        {
            return await task;
        }
        if (done == _workerExited.Task)
        {
            throw Failure($"The worker exited with code {_worker?.ExitCode} while the host waited for {what}");
        }
        throw _starting
            ? Failure($"Timed out after {_options.Timeout.TotalSeconds} s waiting for {what}")
            : new TimeoutException($"Timed out after {_options.Timeout.TotalSeconds} s waiting for {what}. {Tail()}");
    }

    private Exception Failure(string message) => _starting
        ? new FunctionsWorkerStartException(message, _workerExited.Task.IsCompleted ? _worker?.ExitCode : null, [.. _output], [.. _logs])
        : new InvalidOperationException($"{message}. {Tail()}");

    /// <summary>The worker's last output and logs, for failure messages.</summary>
    private string Tail() =>
        "Worker output (last lines): " + string.Join(" | ", _output.TakeLast(20)) +
        " Worker logs (last): " + string.Join(" | ", _logs.TakeLast(20).Select(l => $"{l.Level} {l.Category}: {l.Message}"));

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }
        await _stopping.CancelAsync();
        // Timers running now got InvocationCancel; give them their graceful end (a processor session's grace period).
        await Task.WhenAny(Task.WhenAll(_timers), Task.Delay(ExitWait));
        if (_worker is { } worker)
        {
            if (!_workerExited.Task.IsCompleted)
            {
                // WorkerTerminate makes the worker stop its host (StopApplication) and exit.
                _toWorker.Writer.TryWrite(new StreamingMessage { WorkerTerminate = new WorkerTerminate { GracePeriod = Duration.FromTimeSpan(TerminateGrace) } });
                await Task.WhenAny(_workerExited.Task, Task.Delay(ExitWait));
            }
            Kill(worker); // whatever is left of its process tree
            await Task.WhenAny(_workerExited.Task, Task.Delay(ExitWait));
            Running.TryRemove(worker.Id, out _);
            worker.Dispose();
        }
        _toWorker.Writer.TryComplete();
        if (_grpc is not null)
        {
            using var stopped = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await _grpc.StopAsync(stopped.Token);
            await _grpc.DisposeAsync();
        }
        _forwarder.Dispose();
        _stopping.Dispose();
    }

    private static void Kill(Process process)
    {
        try
        {
            process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // already gone
        }
    }

    private sealed record HttpRoute(RpcFunctionMetadata Function, HashSet<string> Methods, TemplateMatcher Matcher, int Parameters, string Template);

    /// <summary>The host's HTTP front end, in process: every request the client sends goes through <see cref="SendHttpAsync"/>.</summary>
    private sealed class HostFrontEnd(FunctionsWorkerHost host) : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            host.SendHttpAsync(request, cancellationToken);
    }
}

/// <summary>The gRPC service the worker calls (AzureFunctionsRpcMessages.FunctionRpc/EventStream).</summary>
internal sealed class FunctionRpcEndpoint(FunctionsWorkerHost host) : FunctionRpc.FunctionRpcBase
{
    public override Task EventStream(IAsyncStreamReader<StreamingMessage> requestStream, IServerStreamWriter<StreamingMessage> responseStream, ServerCallContext context)
        => host.RunStreamAsync(requestStream, responseStream, context.CancellationToken);
}

/// <summary>One log the worker sent the host (RpcLog).</summary>
public sealed record WorkerLog(LogLevel Level, string Category, string Message, string? Exception, string InvocationId)
{
    internal static WorkerLog From(RpcLog log) =>
        new((LogLevel)(int)log.Level, log.Category, log.Message, log.Exception?.Message, log.InvocationId);
}

/// <summary>
/// The worker did not get through start-up. Carries what the host received: the exit code (when it exited), its
/// console output (the host logs both), and the logs it sent over the stream before failing.
/// </summary>
public sealed class FunctionsWorkerStartException(string message, int? exitCode, IReadOnlyList<string> output, IReadOnlyList<WorkerLog> logs)
    : Exception(Describe(message, exitCode, output))
{
    public int? ExitCode { get; } = exitCode;

    /// <summary>The worker's standard output and error, line by line.</summary>
    public IReadOnlyList<string> Output { get; } = output;

    public IReadOnlyList<WorkerLog> Logs { get; } = logs;

    /// <summary>The worker's ASP.NET Core extension lost the race for the port it had picked.</summary>
    public bool LostPortRace => Output.Any(line => line.Contains("address already in use", StringComparison.OrdinalIgnoreCase));

    private static string Describe(string message, int? exitCode, IReadOnlyList<string> output) =>
        $"{message}{(exitCode is { } code ? $" (exit code {code})" : "")}. Worker output: {string.Join(Environment.NewLine, output.Take(40))}";
}
