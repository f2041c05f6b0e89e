using System.Reflection;
using System.Text.Json;
using Conveyor.Functions;
using Microsoft.Azure.Functions.Worker;

namespace Conveyor.Tests.Infra;

/// <summary>The dashboard behind App Service authentication (Easy Auth, Microsoft Entra), and the API kept out of it.</summary>
public sealed partial class InfraTemplateTests
{
    [Fact]
    public void App_Service_authentication_is_off_by_default_and_when_on_guards_the_dashboard_and_lets_every_API_route_through()
    {
        Assert.Equal("", template.ParameterDefault("dashboardEntraClientId"));
        var auth = Assert.Single(template.Resources("Microsoft.Web/sites/config"), r => r.GetProperty("name").GetString()!.Contains("authsettingsV2", StringComparison.Ordinal));
        Assert.Equal("[not(empty(parameters('dashboardEntraClientId')))]", auth.GetProperty("condition").GetString());
        var properties = auth.GetProperty("properties");
        var validation = properties.GetProperty("globalValidation");
        Assert.True(validation.GetProperty("requireAuthentication").GetBoolean());
        Assert.Equal("RedirectToLoginPage", validation.GetProperty("unauthenticatedClientAction").GetString());
        var entra = properties.GetProperty("identityProviders").GetProperty("azureActiveDirectory");
        Assert.True(entra.GetProperty("enabled").GetBoolean());
        // No client secret in the settings: the app's identity stands in for it (a federated credential).
        var secretSetting = entra.GetProperty("registration").GetProperty("clientSecretSettingName").GetString()!;
        Assert.Equal("[parameters('identityClientId')]", AppSettings()[secretSetting]);

        // Every route the Functions app serves: the API's are excluded (a key-based caller never meets a sign-in),
        // the dashboard's are not.
        var excluded = ExcludedPaths(validation);
        var routes = typeof(FunctionsApp).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods()).SelectMany(m => m.GetParameters())
            .Select(p => p.GetCustomAttribute<HttpTriggerAttribute>()?.Route).OfType<string>()
            .Select(route => "/api/" + route)
            .ToList();
        Assert.Contains("/api/dashboard", routes);
        foreach (var route in routes)
        {
            var isExcluded = excluded.Any(path => path.EndsWith("/*", StringComparison.Ordinal)
                ? route.StartsWith(path[..^1], StringComparison.Ordinal)
                : route == path);
            Assert.True(isExcluded != route.StartsWith("/api/dashboard", StringComparison.Ordinal),
                $"{route} is {(isExcluded ? "" : "not ")}excluded from App Service authentication");
        }
    }

    /// <summary>The excluded paths, evaluated (the module declares them as a variable).</summary>
    private List<string> ExcludedPaths(JsonElement validation)
    {
        var scope = template.Scope();
        var module = scope.Module("function-app");
        return [.. module.Evaluate(validation.GetProperty("excludedPaths"))!.AsArray().Select(p => p!.GetValue<string>())];
    }
}
