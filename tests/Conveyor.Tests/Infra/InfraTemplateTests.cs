using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Conveyor.Tests.Infra;

/// <summary>
/// Runs <c>infra/check</c> (Bicep 0.49.2 build + lint, failing on any warning) once and exposes the compiled
/// ARM template. Modules compile to nested <c>Microsoft.Resources/deployments</c> with inner templates, so
/// every query walks the whole JSON tree.
/// </summary>
public sealed class CompiledTemplate : IAsyncLifetime
{
    private readonly string _outputDirectory = Path.Combine(Path.GetTempPath(), "conveyor-infra-" + Guid.NewGuid().ToString("N"));
    private JsonDocument? _document;

    public string RepositoryRoot { get; } = FindRepositoryRoot();
    public int ExitCode { get; private set; } = -1;
    public string Output { get; private set; } = "";

    /// <summary>The compiled template; fails the calling test with bicep's output when infra/check failed.</summary>
    public JsonElement Root
    {
        get
        {
            Assert.True(ExitCode == 0 && _document is not null, $"infra/check failed (exit {ExitCode}):\n{Output}");
            return _document!.RootElement;
        }
    }

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(_outputDirectory);
        var outputPath = Path.Combine(_outputDirectory, "main.json");
        var start = new ProcessStartInfo("bash")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = RepositoryRoot,
        };
        start.ArgumentList.Add(Path.Combine(RepositoryRoot, "infra", "check"));
        start.ArgumentList.Add(outputPath);

        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start bash");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        await process.WaitForExitAsync(timeout.Token);
        ExitCode = process.ExitCode;
        Output = await stdout + await stderr;
        if (ExitCode == 0 && File.Exists(outputPath))
        {
            await using var json = File.OpenRead(outputPath);
            _document = await JsonDocument.ParseAsync(json);
        }
    }

    public Task DisposeAsync()
    {
        _document?.Dispose();
        Directory.Delete(_outputDirectory, recursive: true);
        return Task.CompletedTask;
    }

    /// <summary>Every JSON value in the template, depth first.</summary>
    public IEnumerable<JsonElement> All() => Descendants(Root);

    /// <summary>Resources of one type, wherever they sit (top level or in a module's inner template).</summary>
    public IReadOnlyList<JsonElement> Resources(string type) =>
        [.. All().Where(e => e.ValueKind == JsonValueKind.Object
            && e.TryGetProperty("type", out var t)
            && t.ValueKind == JsonValueKind.String
            && string.Equals(t.GetString(), type, StringComparison.OrdinalIgnoreCase)
            && e.TryGetProperty("properties", out _))];

    /// <summary>The templates: the root one and every module's inner template.</summary>
    public IReadOnlyList<JsonElement> Templates() =>
        [.. All().Where(e => e.ValueKind == JsonValueKind.Object
            && e.TryGetProperty("$schema", out var s)
            && s.ValueKind == JsonValueKind.String
            && s.GetString()!.Contains("deploymentTemplate.json", StringComparison.OrdinalIgnoreCase))];

    /// <summary>The root template's scope for evaluating expressions, with <paramref name="parameters"/> given.</summary>
    public TemplateScope Scope(Dictionary<string, JsonNode?>? parameters = null) => new(Root, parameters);

    /// <summary>The inner template of the root template's module (nested deployment) <paramref name="deploymentName"/>.</summary>
    public JsonElement NestedTemplate(string deploymentName) =>
        Scope().Deployment(deploymentName).GetProperty("properties").GetProperty("template");

    /// <summary>The @allowed values of a parameter of the root template.</summary>
    public IReadOnlyList<string> AllowedValues(string name) =>
        [.. Root.GetProperty("parameters").GetProperty(name).GetProperty("allowedValues").EnumerateArray().Select(v => v.GetString()!)];

    /// <summary>Default value of a parameter of the root template.</summary>
    public string ParameterDefault(string name) =>
        Root.GetProperty("parameters").GetProperty(name).GetProperty("defaultValue").GetString()!;

    private static IEnumerable<JsonElement> Descendants(JsonElement element)
    {
        yield return element;
        var children = element.ValueKind switch
        {
            JsonValueKind.Object => element.EnumerateObject().Select(p => p.Value),
            JsonValueKind.Array => element.EnumerateArray(),
            _ => [],
        };
        foreach (var child in children)
        {
            foreach (var descendant in Descendants(child))
            {
                yield return descendant;
            }
        }
    }

    internal static string FindRepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Functions.sln")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException($"no Functions.sln above {AppContext.BaseDirectory}");
    }
}

public sealed partial class InfraTemplateTests(CompiledTemplate template) : IClassFixture<CompiledTemplate>
{
    /// <summary>Settings the app reads (options binding, timer schedules, host storage, telemetry).</summary>
    private static readonly string[] SettingsTheAppReads =
    [
        "Conveyor__Redis__HostName",
        "Conveyor__Redis__UseEntraId",
        "Conveyor__Redis__PrincipalId",
        "Conveyor__Postgres__ConnectionString",
        "Conveyor__Postgres__UseEntraId",
        "Conveyor__Postgres__MigrateOnStart",
        "Conveyor__Identity__ClientId",
        "Conveyor__Processor__SessionDuration",
        "ConveyorSchedulerSchedule",
        "ConveyorCustodianSchedule",
        "ConveyorHeartbeatFlushSchedule",
        "ConveyorStaleSweeperSchedule",
        "ConveyorProcessorSchedule",
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
        "AzureWebJobsStorage__queueServiceUri",
        "ConveyorWakeQueue",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        "AZURE_CLIENT_ID",
    ];

    /// <summary>Processor ShutdownGrace default: running handlers get this long after a session ends.</summary>
    private static readonly TimeSpan ProcessorShutdownGrace = TimeSpan.FromSeconds(30);

    [GeneratedRegex("password|secret|key|token|connectionstring", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex SecretLookingName();

    [Fact]
    public void Infra_check_builds_and_lints_the_template_without_a_single_warning()
    {
        Assert.True(template.ExitCode == 0, $"infra/check failed (exit {template.ExitCode}):\n{template.Output}");
        Assert.Contains("0 warnings, 0 errors", template.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void Compiled_template_has_no_secret_parameter_without_secure()
    {
        var templates = template.Templates();
        Assert.NotEmpty(templates);
        var offenders = new List<string>();
        foreach (var t in templates)
        {
            if (!t.TryGetProperty("parameters", out var parameters))
            {
                continue;
            }
            foreach (var parameter in parameters.EnumerateObject())
            {
                var type = parameter.Value.GetProperty("type").GetString();
                var secure = string.Equals(type, "securestring", StringComparison.OrdinalIgnoreCase)
                    || string.Equals(type, "secureObject", StringComparison.OrdinalIgnoreCase);
                if (SecretLookingName().IsMatch(parameter.Name) && !secure)
                {
                    offenders.Add($"{parameter.Name} ({type})");
                }
            }
        }
        Assert.True(offenders.Count == 0, "parameters that look secret but are not @secure(): " + string.Join(", ", offenders));
    }

    [Fact]
    public void Storage_account_disallows_shared_key_access()
    {
        var accounts = template.Resources("Microsoft.Storage/storageAccounts");
        Assert.NotEmpty(accounts);
        Assert.All(accounts, account =>
            Assert.Equal(JsonValueKind.False, account.GetProperty("properties").GetProperty("allowSharedKeyAccess").ValueKind));
    }

    [Fact]
    public void Function_app_sets_every_setting_the_app_reads()
    {
        var settings = AppSettings();
        var missing = SettingsTheAppReads.Where(name => !settings.ContainsKey(name)).ToList();
        Assert.True(missing.Count == 0, "app settings missing: " + string.Join(", ", missing));
        Assert.All(SettingsTheAppReads, name => Assert.False(string.IsNullOrWhiteSpace(settings[name]), $"{name} is empty"));
        Assert.Equal("true", settings["Conveyor__Redis__UseEntraId"]);
        Assert.Equal("true", settings["Conveyor__Postgres__UseEntraId"]);
        // Migrations run in the pre-deploy hook as the administrator, not as the app's identity.
        Assert.Equal("false", settings["Conveyor__Postgres__MigrateOnStart"]);
        Assert.Equal("managedidentity", settings["AzureWebJobsStorage__credential"]);
    }

    [Fact]
    public void The_wake_queue_is_created_in_the_host_storage_named_as_the_app_reads_it_and_the_identity_may_use_its_messages()
    {
        // The queue resource, named by the storage module's parameter, which main.bicep sets to names.wakeQueue.
        var queue = Assert.Single(template.All(), e => e.ValueKind == JsonValueKind.Object
            && e.TryGetProperty("type", out var type) && type.GetString() == "Microsoft.Storage/storageAccounts/queueServices/queues");
        Assert.Contains("parameters('wakeQueueName')", queue.GetProperty("name").GetString(), StringComparison.Ordinal);
        var scope = template.Scope();
        Assert.Equal("[variables('names').wakeQueue]", scope.Deployment("storage").GetProperty("properties").GetProperty("parameters").GetProperty("wakeQueueName").GetProperty("value").GetString());
        Assert.Contains(template.All(), e => e.ValueKind == JsonValueKind.Object && e.TryGetProperty("wakeQueue", out var name)
            && name.GetString() == Conveyor.Functions.Queues.StorageWakeSender.DefaultQueue); // variables('names').wakeQueue

        // The app's trigger (%ConveyorWakeQueue%) and sender read the storage module's output, on the queue endpoint, as the identity.
        var settings = AppSettings();
        Assert.Equal("[parameters('wakeQueueName')]", settings["ConveyorWakeQueue"]);
        Assert.Equal("[parameters('storageQueueEndpoint')]", settings["AzureWebJobsStorage__queueServiceUri"]);
        var app = scope.Deployment("function-app").GetProperty("properties").GetProperty("parameters");
        Assert.Contains("outputs.wakeQueueName.value", app.GetProperty("wakeQueueName").GetProperty("value").GetString(), StringComparison.Ordinal);
        Assert.Contains("outputs.queueEndpoint.value", app.GetProperty("storageQueueEndpoint").GetProperty("value").GetString(), StringComparison.Ordinal);

        // Storage Queue Data Contributor for the identity on the account (receive, delete, poison queue, post).
        var roles = template.NestedTemplate("storage").GetProperty("variables").GetProperty("roles");
        Assert.Contains(roles.EnumerateObject(), role => role.Value.GetString() == "974c5e8b-45b9-4653-ba55-5f855dd0fb88");
    }

    [Fact]
    public void Function_app_settings_carry_no_secret()
    {
        var settings = AppSettings();
        Assert.DoesNotContain("AzureWebJobsStorage", settings.Keys);
        // The PostgreSQL connection string is checked evaluated: The_app_verifies_the_postgres_certificate_and_host_and_sends_no_password.
        Assert.Contains("Authorization=AAD;ClientId=", settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"], StringComparison.Ordinal);
        Assert.DoesNotContain(template.All(), e => e.ValueKind == JsonValueKind.String
            && e.GetString()!.Contains("listKeys(", StringComparison.OrdinalIgnoreCase));
    }

    [Fact]
    public void Function_app_runs_dotnet_isolated_10_on_flex_consumption_with_the_placeholder_workaround()
    {
        var plan = Assert.Single(template.Resources("Microsoft.Web/serverfarms"));
        Assert.Equal("FC1", plan.GetProperty("sku").GetProperty("name").GetString());
        var site = Assert.Single(template.Resources("Microsoft.Web/sites"));
        var config = site.GetProperty("properties").GetProperty("functionAppConfig");
        Assert.Equal("dotnet-isolated", config.GetProperty("runtime").GetProperty("name").GetString());
        Assert.Equal("10.0", config.GetProperty("runtime").GetProperty("version").GetString());
        Assert.Equal("UserAssignedIdentity", config.GetProperty("deployment").GetProperty("storage").GetProperty("authentication").GetProperty("type").GetString());

        var settings = AppSettings();
        Assert.Contains("WEBSITE_USE_PLACEHOLDER_DOTNETISOLATED", settings.Keys);
        // Flex takes the runtime from functionAppConfig and rejects these.
        Assert.DoesNotContain("FUNCTIONS_WORKER_RUNTIME", settings.Keys);
        Assert.DoesNotContain("FUNCTIONS_EXTENSION_VERSION", settings.Keys);
    }

    [Fact]
    public void Redis_disables_access_keys_never_evicts_and_uses_OSS_clustering()
    {
        var database = Assert.Single(template.Resources("Microsoft.Cache/redisEnterprise/databases"));
        var properties = database.GetProperty("properties");
        Assert.Equal("Disabled", properties.GetProperty("accessKeysAuthentication").GetString());
        Assert.Equal("NoEviction", properties.GetProperty("evictionPolicy").GetString());
        Assert.Equal("OSSCluster", properties.GetProperty("clusteringPolicy").GetString());
        var access = Assert.Single(template.Resources("Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments"));
        Assert.Equal("default", access.GetProperty("properties").GetProperty("accessPolicyName").GetString());
    }

    [Fact]
    public void Postgres_accepts_only_Microsoft_Entra_authentication()
    {
        var server = Assert.Single(template.Resources("Microsoft.DBforPostgreSQL/flexibleServers"));
        var auth = server.GetProperty("properties").GetProperty("authConfig");
        Assert.Equal("Disabled", auth.GetProperty("passwordAuth").GetString());
        Assert.Equal("Enabled", auth.GetProperty("activeDirectoryAuth").GetString());
        Assert.False(server.GetProperty("properties").TryGetProperty("administratorLoginPassword", out _));
        Assert.NotEmpty(template.Resources("Microsoft.DBforPostgreSQL/flexibleServers/administrators"));
    }

    [Fact]
    public void Timer_schedules_default_to_the_documented_cadence()
    {
        Assert.Equal("*/5 * * * * *", template.ParameterDefault("schedulerSchedule"));
        Assert.Equal("*/15 * * * * *", template.ParameterDefault("custodianSchedule"));
        Assert.Equal("*/10 * * * * *", template.ParameterDefault("heartbeatFlushSchedule"));
        Assert.Equal("*/30 * * * * *", template.ParameterDefault("staleSweeperSchedule"));
        Assert.Equal("*/10 * * * * *", template.ParameterDefault("processorSchedule"));
    }

    [Fact]
    public void Processor_session_and_its_grace_end_before_the_function_timeout()
    {
        var session = TimeSpan.Parse(template.ParameterDefault("processorSessionDuration"), CultureInfo.InvariantCulture);
        var timeout = TimeSpan.Parse(template.ParameterDefault("functionTimeout"), CultureInfo.InvariantCulture);
        Assert.True(session + ProcessorShutdownGrace < timeout, $"session {session} + grace {ProcessorShutdownGrace} must end before functionTimeout {timeout}");

        // host.json holds the same timeout for local runs (the app setting overrides it in Azure).
        var hostJson = Path.Combine(template.RepositoryRoot, "functions", "host.json");
        if (File.Exists(hostJson))
        {
            using var host = JsonDocument.Parse(File.ReadAllText(hostJson), new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
            if (host.RootElement.TryGetProperty("functionTimeout", out var local))
            {
                var localTimeout = TimeSpan.Parse(local.GetString()!, CultureInfo.InvariantCulture);
                Assert.True(session + ProcessorShutdownGrace < localTimeout, $"host.json functionTimeout {localTimeout} is too short for session {session} + grace {ProcessorShutdownGrace}");
            }
        }
    }

    /// <summary>Name → value (an ARM expression or literal) of every entry of every appSettings array.</summary>
    private Dictionary<string, string> AppSettings()
    {
        var settings = new Dictionary<string, string>(StringComparer.Ordinal);
        var arrays = template.All()
            .Where(e => e.ValueKind == JsonValueKind.Object && e.TryGetProperty("appSettings", out _))
            .Select(e => e.GetProperty("appSettings"))
            .ToList();
        Assert.NotEmpty(arrays);
        foreach (var array in arrays)
        {
            Assert.True(array.ValueKind == JsonValueKind.Array, $"appSettings is computed ({array}); keep it a literal list so it can be checked");
            foreach (var entry in array.EnumerateArray())
            {
                settings[entry.GetProperty("name").GetString()!] = entry.GetProperty("value").GetString() ?? "";
            }
        }
        return settings;
    }
}
