using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Npgsql;

namespace Conveyor.Tests.Infra;

/// <summary>
/// What the compiled template does with its parameters, evaluated locally (<see cref="TemplateScope"/>): the
/// PostgreSQL connection budget, verified TLS, least privilege, durable Redis, the private-network option, and the
/// parameter lists azd and ARM check before deploying. Issue 14 lists why each matters.
/// </summary>
public sealed partial class InfraTemplateTests
{
    /// <summary>
    /// max_connections per compute size, from "Limits in Azure Database for PostgreSQL flexible server"
    /// (learn.microsoft.com/azure/postgresql/flexible-server/concepts-limits, "Maximum connections"). Azure keeps 15
    /// of them for itself. Standard_B1ms (50) is listed to show why the template does not offer it.
    /// </summary>
    private static readonly Dictionary<string, int> DocumentedMaxConnections = new(StringComparer.Ordinal)
    {
        ["Standard_B1ms"] = 50,
        ["Standard_B2s"] = 429,
        ["Standard_B2ms"] = 859,
        ["Standard_B4ms"] = 1718,
        ["Standard_B8ms"] = 3437,
        ["Standard_B12ms"] = 5000,
        ["Standard_D2ds_v5"] = 859,
        ["Standard_D4ds_v5"] = 1718,
        ["Standard_D8ds_v5"] = 3437,
        ["Standard_D16ds_v5"] = 5000,
        ["Standard_E2ds_v5"] = 1718,
        ["Standard_E4ds_v5"] = 3437,
    };

    private const int AzureReservedConnections = 15;

    /// <summary>Flex Consumption's smallest maximumInstanceCount.</summary>
    private const int FlexMinimumInstances = 40;

    [GeneratedRegex(@"\[(?<kind>\w+)Trigger\(")]
    private static partial Regex TriggerAttribute();

    [Fact]
    public void Postgres_pool_size_times_the_instances_that_may_run_fits_the_default_tier_s_user_connections()
    {
        var scope = template.Scope();
        var sku = scope.Parameter("postgresSkuName")!.GetValue<string>();
        var pool = scope.Parameter("postgresMaxPoolSize")!.GetValue<int>();
        var maxInstances = scope.Parameter("maximumInstanceCount")!.GetValue<int>();
        var (scaledGroups, singleInstanceGroups) = FunctionGroupsInTheApp();

        // Each HTTP-group instance and each timer's instance holds at most `pool` connections; the hooks and an
        // operator's psql need a few more.
        var operatorConnections = scope.Variable("postgresOperatorConnections")!.GetValue<int>();
        var demand = pool * (maxInstances * scaledGroups + singleInstanceGroups) + operatorConnections;
        var userConnections = DocumentedMaxConnections[sku] - AzureReservedConnections;
        Assert.True(demand <= userConnections,
            $"{pool} connections x ({maxInstances} x {scaledGroups} + {singleInstanceGroups} instances) + {operatorConnections} = {demand} > {userConnections} user connections of {sku}");

        // The template's own arithmetic agrees, with the same counts of function groups as functions/ has.
        Assert.Equal(scaledGroups, scope.Variable("scaledFunctionGroups")!.GetValue<int>());
        Assert.Equal(singleInstanceGroups, scope.Variable("singleInstanceFunctionGroups")!.GetValue<int>());
        Assert.Equal(AzureReservedConnections, scope.Variable("postgresAzureReservedConnections")!.GetValue<int>());
        Assert.Equal(userConnections - demand, scope.Variable("postgresConnectionHeadroom")!.GetValue<long>());

        // And the app really is limited to that pool.
        var connection = AppPostgresConnectionString(scope);
        Assert.Equal(pool, connection.MaxPoolSize);
    }

    [Fact]
    public void A_deployment_whose_pools_would_exceed_the_server_s_connections_is_refused()
    {
        // ARM validates a module's parameters when the module deploys: a negative headroom fails @minValue(0).
        var postgresModule = template.Scope().Module("postgres");
        var declaration = template.NestedTemplate("postgres").GetProperty("parameters").GetProperty("connectionHeadroom");
        Assert.Equal(0, declaration.GetProperty("minValue").GetInt32());
        Assert.Equal(template.Scope().Variable("postgresConnectionHeadroom")!.ToJsonString(), postgresModule.Parameter("connectionHeadroom")!.ToJsonString());

        long Headroom(string sku, int instances, int pool) => template.Scope(new()
        {
            ["postgresSkuName"] = sku,
            ["maximumInstanceCount"] = instances,
            ["postgresMaxPoolSize"] = pool,
        }).Module("postgres").Parameter("connectionHeadroom")!.GetValue<long>();

        Assert.True(Headroom("Standard_B2s", 60, 3) >= 0);
        Assert.True(Headroom("Standard_B2s", 60, 4) < 0, "4 connections x (2 x 60 + 5) instances do not fit 414 user connections");
        Assert.True(Headroom("Standard_B2s", 100, 3) < 0, "3 connections x (2 x 100 + 5) instances do not fit: the wake group counts too");
        Assert.True(Headroom("Standard_B2s", 1000, 1) < 0, "1000 instances do not fit Standard_B2s");
        Assert.True(Headroom("Standard_D16ds_v5", 1000, 2) >= 0);
    }

    [Fact]
    public void Every_offered_postgres_sku_is_documented_and_even_the_smallest_fits_flex_s_smallest_scale_out()
    {
        var offered = template.AllowedValues("postgresSkuName");
        var skus = template.Scope().Variable("postgresSkus")!.AsObject();
        Assert.Equal(offered.Order(StringComparer.Ordinal), skus.Select(s => s.Key).Order(StringComparer.Ordinal));
        foreach (var (sku, entry) in skus)
        {
            Assert.True(DocumentedMaxConnections.TryGetValue(sku, out var documented), $"{sku}: no documented max_connections");
            Assert.Equal(documented, entry!["maxConnections"]!.GetValue<int>());
            var userConnections = documented - AzureReservedConnections;
            Assert.True(FlexMinimumInstances + 5 <= userConnections - 5, $"{sku} cannot serve {FlexMinimumInstances} instances with one connection each");
        }
        Assert.DoesNotContain("Standard_B1ms", offered);
        Assert.True(DocumentedMaxConnections["Standard_B1ms"] - AzureReservedConnections < FlexMinimumInstances,
            "Standard_B1ms is left out because 35 user connections cannot serve 40 instances");
    }

    [Fact]
    public void The_app_verifies_the_postgres_certificate_and_host_and_sends_no_password()
    {
        var connection = AppPostgresConnectionString(template.Scope());

        Assert.Equal(SslMode.VerifyFull, connection.SslMode);
        Assert.True(string.IsNullOrEmpty(connection.Password), "the Entra token is the password; none in the setting");
        Assert.True(string.IsNullOrEmpty(connection.RootCertificate), "VerifyFull against the system's roots");
        Assert.Equal("psql-conveyor-test.postgres.database.azure.com", connection.Host);
        Assert.Equal("id-conveyor-test", connection.Username);

        // The deployment output the docs and hooks show is the same string.
        var output = template.Root.GetProperty("outputs").GetProperty("CONVEYOR_POSTGRES_CONNECTION_STRING").GetProperty("value").GetString()!;
        Assert.Contains("'function-app'", output, StringComparison.Ordinal);
        Assert.EndsWith(".outputs.postgresConnectionString.value]", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Only_the_deploying_principal_administers_postgres_and_the_template_creates_no_database()
    {
        var administrators = template.Resources("Microsoft.DBforPostgreSQL/flexibleServers/administrators");
        var administrator = Assert.Single(administrators);
        var postgresModule = template.Scope(new()
        {
            ["postgresAdminObjectId"] = "9d6f0c1e-3a2b-4c5d-8e7f-a0b1c2d3e4f5",
            ["postgresAdminName"] = "ci-deployer",
            ["postgresAdminType"] = "ServicePrincipal",
        }).Module("postgres");
        Assert.Equal("9d6f0c1e-3a2b-4c5d-8e7f-a0b1c2d3e4f5", postgresModule.Parameter("adminObjectId")!.GetValue<string>());
        var properties = administrator.GetProperty("properties");
        Assert.Equal("ci-deployer", postgresModule.Evaluate(properties.GetProperty("principalName"))!.GetValue<string>());
        Assert.Equal("ServicePrincipal", postgresModule.Evaluate(properties.GetProperty("principalType"))!.GetValue<string>());

        // The administrator must be given: no default to fall back on, and an object id's length.
        var adminId = template.Root.GetProperty("parameters").GetProperty("postgresAdminObjectId");
        Assert.False(adminId.TryGetProperty("defaultValue", out _));
        Assert.Equal(36, adminId.GetProperty("minLength").GetInt32());

        // The hook creates the database, owned by the role that migrates (a database the resource provider
        // creates before any administrator exists belongs to azuresu).
        Assert.Empty(template.Resources("Microsoft.DBforPostgreSQL/flexibleServers/databases"));
        Assert.Equal("conveyor", template.Root.GetProperty("variables").GetProperty("names").GetProperty("database").GetString());
    }

    [Fact]
    public void Redis_persists_every_write_to_disk_each_second_on_every_offered_sku()
    {
        var database = Assert.Single(template.Resources("Microsoft.Cache/redisEnterprise/databases"));
        var persistence = database.GetProperty("properties").GetProperty("persistence");
        Assert.True(persistence.GetProperty("aofEnabled").GetBoolean());
        Assert.Equal("1s", persistence.GetProperty("aofFrequency").GetString());
        Assert.False(persistence.GetProperty("rdbEnabled").GetBoolean());
        var cluster = Assert.Single(template.Resources("Microsoft.Cache/redisEnterprise"));
        Assert.Equal("Enabled", cluster.GetProperty("properties").GetProperty("highAvailability").GetString());

        // Data persistence: all in-memory tiers (Memory Optimized, Balanced, Compute Optimized); Flash Optimized
        // only in preview (learn.microsoft.com/azure/redis/how-to-persistence, "Scope of availability").
        var offered = template.AllowedValues("redisSkuName");
        Assert.NotEmpty(offered);
        Assert.All(offered, sku => Assert.Matches("^(Balanced_B|MemoryOptimized_M|ComputeOptimized_X)[0-9]+$", sku));
        Assert.Contains(template.ParameterDefault("redisSkuName"), offered);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Private_networking_turns_public_access_off_behind_private_endpoints_and_public_stays_the_default(bool privateNetworking)
    {
        Assert.False(template.Scope().Parameter("privateNetworking")!.GetValue<bool>(), "public networking is the default");
        var scope = template.Scope(new() { ["privateNetworking"] = privateNetworking });
        var expected = privateNetworking ? "Disabled" : "Enabled";

        var storage = scope.Module("storage");
        var account = storage.Resource("Microsoft.Storage/storageAccounts").GetProperty("properties");
        Assert.Equal(expected, storage.Evaluate(account.GetProperty("publicNetworkAccess"))!.GetValue<string>());
        Assert.Equal(privateNetworking ? "Deny" : "Allow", storage.Evaluate(account.GetProperty("networkAcls").GetProperty("defaultAction"))!.GetValue<string>());

        var redis = scope.Module("redis");
        Assert.Equal(expected, redis.Evaluate(redis.Resource("Microsoft.Cache/redisEnterprise").GetProperty("properties").GetProperty("publicNetworkAccess"))!.GetValue<string>());

        var postgres = scope.Module("postgres");
        var server = postgres.Resource("Microsoft.DBforPostgreSQL/flexibleServers");
        Assert.Equal(expected, postgres.Evaluate(server.GetProperty("properties").GetProperty("network").GetProperty("publicNetworkAccess"))!.GetValue<string>());
        var firewall = TemplateScope.ResourcesOf(template.NestedTemplate("postgres"))
            .Single(r => r.GetProperty("name").GetString()!.Contains("AllowAllAzureServicesAndResourcesWithinAzureIps", StringComparison.Ordinal));
        Assert.Equal(!privateNetworking, postgres.Evaluate(firewall.GetProperty("condition"))!.GetValue<bool>());

        // The network and one private endpoint per data service exist exactly when asked for.
        Assert.Equal(privateNetworking, scope.Evaluate(scope.Deployment("network").GetProperty("condition"))!.GetValue<bool>());
        var endpoints = template.Root.GetProperty("resources").EnumerateArray().Single(r => r.TryGetProperty("copy", out _));
        Assert.Equal(privateNetworking, scope.Evaluate(endpoints.GetProperty("condition"))!.GetValue<bool>());
        var groups = template.Root.GetProperty("variables").GetProperty("privateEndpoints").EnumerateArray()
            .Select(e => e.GetProperty("groupId").GetString()).Order(StringComparer.Ordinal);
        Assert.Equal(["blob", "postgresqlServer", "queue", "redisEnterprise", "table"], groups);

        // Flex Consumption VNet integration: a subnet delegated to Microsoft.App/environments, and the app joins it
        // only when given one.
        var subnets = TemplateScope.ResourcesOf(template.NestedTemplate("network"))
            .Single(r => r.GetProperty("type").GetString() == "Microsoft.Network/virtualNetworks")
            .GetProperty("properties").GetProperty("subnets").EnumerateArray().ToList();
        Assert.Contains(subnets, s => s.GetProperty("name").GetString() == "app"
            && s.GetProperty("properties").GetProperty("delegations")[0].GetProperty("properties").GetProperty("serviceName").GetString() == "Microsoft.App/environments");
        var site = TemplateScope.ResourcesOf(template.NestedTemplate("function-app"))
            .Single(r => r.GetProperty("type").GetString() == "Microsoft.Web/sites").GetProperty("properties").GetProperty("virtualNetworkSubnetId");
        var app = new TemplateScope(template.NestedTemplate("function-app"), new Dictionary<string, JsonNode?> { ["virtualNetworkSubnetId"] = privateNetworking ? "/subnets/app" : "" });
        Assert.Equal(privateNetworking ? "\"/subnets/app\"" : "null", app.Evaluate(site)?.ToJsonString() ?? "null");
    }

    [Fact]
    public void Maximum_instance_count_is_a_parameter_that_reaches_the_function_app()
    {
        var declaration = template.Root.GetProperty("parameters").GetProperty("maximumInstanceCount");
        Assert.Equal(FlexMinimumInstances, declaration.GetProperty("minValue").GetInt32());
        Assert.Equal(1000, declaration.GetProperty("maxValue").GetInt32());
        var app = template.Scope(new() { ["maximumInstanceCount"] = 250 }).Module("function-app");
        var site = TemplateScope.ResourcesOf(template.NestedTemplate("function-app"))
            .Single(r => r.GetProperty("type").GetString() == "Microsoft.Web/sites");
        var scale = site.GetProperty("properties").GetProperty("functionAppConfig").GetProperty("scaleAndConcurrency").GetProperty("maximumInstanceCount");
        Assert.Equal(250, app.Evaluate(scale)!.GetValue<int>());
    }

    [Fact]
    public void Location_is_limited_to_flex_consumption_regions_and_azd_picks_it_as_a_location()
    {
        var location = template.Root.GetProperty("parameters").GetProperty("location");
        var regions = template.AllowedValues("location");
        Assert.Contains("swedencentral", regions);
        Assert.Contains("eastus2", regions);
        Assert.DoesNotContain("eastus2euap", regions);
        Assert.False(location.TryGetProperty("defaultValue", out _), "a default outside the list would only fail at deployment");
        Assert.Equal("location", location.GetProperty("metadata").GetProperty("azd").GetProperty("type").GetString());
    }

    [Fact]
    public void Main_parameters_json_maps_every_required_parameter_and_repeats_the_template_s_defaults()
    {
        using var file = JsonDocument.Parse(File.ReadAllText(Path.Combine(template.RepositoryRoot, "infra", "main.parameters.json")));
        var mapped = file.RootElement.GetProperty("parameters").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetProperty("value").GetString()!);
        var declared = template.Root.GetProperty("parameters");
        foreach (var parameter in declared.EnumerateObject().Where(p => !p.Value.TryGetProperty("defaultValue", out _)))
        {
            Assert.True(mapped.ContainsKey(parameter.Name), $"required parameter {parameter.Name} is not in main.parameters.json");
        }
        foreach (var (name, value) in mapped)
        {
            Assert.True(declared.TryGetProperty(name, out var declaration), $"main.parameters.json sets {name}, which main.bicep does not declare");
            var match = Regex.Match(value, @"^\$\{(?<var>[A-Z0-9_]+)(=(?<default>.*))?\}$");
            Assert.True(match.Success, $"{name}: {value} is not an azd ${{VARIABLE}} or ${{VARIABLE=default}}");
            if (match.Groups["default"].Success && declaration.TryGetProperty("defaultValue", out var templateDefault))
            {
                var expected = templateDefault.ValueKind == JsonValueKind.String ? templateDefault.GetString() : templateDefault.GetRawText();
                Assert.True(expected == match.Groups["default"].Value, $"{name}: main.parameters.json defaults to '{match.Groups["default"].Value}', main.bicep to '{expected}'");
            }
        }
    }

    [Fact]
    public void Azure_yaml_requires_an_azd_that_reloads_hook_values_runs_migrations_before_deploy_and_stops_on_windows()
    {
        var yaml = File.ReadAllText(Path.Combine(template.RepositoryRoot, "azure.yaml"));
        Assert.Contains("azd: \">= 1.22.0\"", yaml, StringComparison.Ordinal);
        foreach (var hook in new[] { "preprovision", "postprovision", "predeploy" })
        {
            Assert.Contains($"run: ./infra/hooks/{hook}.sh", yaml, StringComparison.Ordinal);
            var script = Path.Combine(template.RepositoryRoot, "infra", "hooks", hook + ".sh");
            Assert.True(File.Exists(script), script);
            if (!OperatingSystem.IsWindows())
            {
                Assert.True(File.GetUnixFileMode(script).HasFlag(UnixFileMode.UserExecute), $"{script} is not executable");
            }
        }
        Assert.Equal(3, Regex.Count(yaml, "windows:\\s+shell: pwsh\\s+run: Write-Error .*; exit 1"));
    }

    /// <summary>
    /// Function groups Flex Consumption scales separately, counted in functions/: every HTTP function shares one
    /// group that scales out; each timer is a group on one instance; any other trigger is a group that scales out.
    /// </summary>
    private (int Scaled, int SingleInstance) FunctionGroupsInTheApp()
    {
        var kinds = Directory.EnumerateFiles(Path.Combine(template.RepositoryRoot, "functions"), "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
                && !f.Contains("StandIn", StringComparison.Ordinal))
            .SelectMany(f => TriggerAttribute().Matches(File.ReadAllText(f)).Select(m => m.Groups["kind"].Value))
            .ToList();
        Assert.NotEmpty(kinds);
        var scaled = (kinds.Contains("Http") ? 1 : 0) + kinds.Count(k => k is not "Http" and not "Timer");
        return (scaled, kinds.Count(k => k == "Timer"));
    }

    /// <summary>The app's Conveyor__Postgres__ConnectionString, with stand-ins for the values other modules supply.</summary>
    private NpgsqlConnectionStringBuilder AppPostgresConnectionString(TemplateScope scope)
    {
        var app = scope.Module("function-app").With(new()
        {
            ["postgresFqdn"] = "psql-conveyor-test.postgres.database.azure.com",
            ["postgresDatabaseName"] = "conveyor",
            ["identityName"] = "id-conveyor-test",
        });
        var setting = AppSettingExpression("Conveyor__Postgres__ConnectionString");
        return new NpgsqlConnectionStringBuilder(app.Evaluate(JsonValue.Create(setting))!.GetValue<string>());
    }

    private string AppSettingExpression(string name) =>
        template.All()
            .Where(e => e.ValueKind == JsonValueKind.Object && e.TryGetProperty("appSettings", out _))
            .SelectMany(e => e.GetProperty("appSettings").EnumerateArray())
            .Single(s => s.GetProperty("name").GetString() == name)
            .GetProperty("value").GetString()!;
}
