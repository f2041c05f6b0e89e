using System.Text;
using System.Text.Json;

namespace Conveyor.Tests.Infra;

/// <summary>
/// infra/hooks/preprovision.sh picks the PostgreSQL Entra administrator from whoever is signed in to the Azure CLI:
/// a user, a service principal, or a managed identity (az login --identity). The az and azd CLIs are stand-ins
/// (<see cref="HookRunner"/>); the token they hand out is a JWT with the claims Entra puts in such tokens.
/// </summary>
public sealed class PreprovisionHookTests
{
    private const string ObjectId = "6a1c3c2e-0b7d-4f43-9d55-2f0e8a1b9c7d";

    [Fact]
    public async Task A_signed_in_user_becomes_the_administrator_under_their_user_principal_name()
    {
        using var hooks = new HookRunner();
        hooks.Write("token", Jwt(new { oid = ObjectId, upn = "alice@contoso.com" }));
        hooks.Write("user-type", "user");
        hooks.Write("user-name", "alice@contoso.com");
        hooks.Write("signed-in-upn", "alice@contoso.com");

        var result = await hooks.RunAsync("preprovision.sh");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal([$"CONVEYOR_PG_ADMIN_OBJECT_ID={ObjectId}", "CONVEYOR_PG_ADMIN_NAME=alice@contoso.com", "CONVEYOR_PG_ADMIN_TYPE=User"], hooks.AzdEnvSets);
    }

    [Fact]
    public async Task A_service_principal_keeps_its_display_name_with_spaces_and_needs_graph_only_for_the_name()
    {
        using var hooks = new HookRunner();
        hooks.Write("token", Jwt(new { oid = ObjectId, appid = "3f1e2d4c-5b6a-4978-8a9b-0c1d2e3f4a5b" }));
        hooks.Write("user-type", "servicePrincipal");
        hooks.Write("user-name", "3f1e2d4c-5b6a-4978-8a9b-0c1d2e3f4a5b");
        hooks.Write("sp-display-name", "Conveyor CI deploy (prod)");

        var result = await hooks.RunAsync("preprovision.sh");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal([$"CONVEYOR_PG_ADMIN_OBJECT_ID={ObjectId}", "CONVEYOR_PG_ADMIN_NAME=Conveyor CI deploy (prod)", "CONVEYOR_PG_ADMIN_TYPE=ServicePrincipal"], hooks.AzdEnvSets);
    }

    [Theory]
    [InlineData("systemAssignedIdentity", "/subscriptions/0000/resourceGroups/rg-ci/providers/Microsoft.Compute/virtualMachines/ci-runner-01", "ci-runner-01")]
    [InlineData("userAssignedIdentity", "/subscriptions/0000/resourcegroups/rg-ci/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-github-runner", "id-github-runner")]
    public async Task A_managed_identity_signed_in_with_az_login_identity_is_named_after_its_resource(string login, string resourceId, string name)
    {
        // az account show says user.name = systemAssignedIdentity / userAssignedIdentity: no application id to
        // look up, and often no Graph permission. The token says who it is.
        using var hooks = new HookRunner();
        hooks.Write("token", Jwt(new { oid = ObjectId, xms_mirid = resourceId }));
        hooks.Write("user-type", "servicePrincipal");
        hooks.Write("user-name", login);

        var result = await hooks.RunAsync("preprovision.sh");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal([$"CONVEYOR_PG_ADMIN_OBJECT_ID={ObjectId}", $"CONVEYOR_PG_ADMIN_NAME={name}", "CONVEYOR_PG_ADMIN_TYPE=ServicePrincipal"], hooks.AzdEnvSets);
        Assert.DoesNotContain(hooks.AzCalls, call => call.StartsWith("az ad ", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_service_principal_without_graph_access_is_asked_for_its_name_and_nothing_is_set()
    {
        using var hooks = new HookRunner();
        hooks.Write("token", Jwt(new { oid = ObjectId }));
        hooks.Write("user-type", "servicePrincipal");
        hooks.Write("user-name", "3f1e2d4c-5b6a-4978-8a9b-0c1d2e3f4a5b");
        // No sp-display-name: the stand-in fails `az ad sp show` as Graph does without permission.

        var result = await hooks.RunAsync("preprovision.sh");

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("azd env set CONVEYOR_PG_ADMIN_NAME", result.Stderr, StringComparison.Ordinal);
        Assert.Empty(hooks.AzdEnvSets);

        // Given the name, the object id still comes from the token.
        hooks.Environment["CONVEYOR_PG_ADMIN_NAME"] = "Conveyor CI";
        var named = await hooks.RunAsync("preprovision.sh");
        Assert.True(named.ExitCode == 0, named.ToString());
        Assert.Contains($"CONVEYOR_PG_ADMIN_OBJECT_ID={ObjectId}", hooks.AzdEnvSets);
        Assert.Contains("CONVEYOR_PG_ADMIN_NAME=Conveyor CI", hooks.AzdEnvSets);
    }

    [Fact]
    public async Task An_administrator_chosen_already_is_kept_without_asking_azure()
    {
        using var hooks = new HookRunner();
        hooks.Environment["CONVEYOR_PG_ADMIN_OBJECT_ID"] = ObjectId;
        hooks.Environment["CONVEYOR_PG_ADMIN_NAME"] = "conveyor-admins";

        var result = await hooks.RunAsync("preprovision.sh");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Empty(hooks.AzCalls);
        Assert.Empty(hooks.AzdEnvSets);
    }

    /// <summary>An unsigned JWT carrying <paramref name="claims"/> (plus audience and tenant), base64url-encoded as Entra's are.</summary>
    private static string Jwt(object claims)
    {
        static string Encode(string json) => Convert.ToBase64String(Encoding.UTF8.GetBytes(json)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        var fields = JsonSerializer.SerializeToElement(claims).EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString());
        fields["aud"] = "https://ossrdbms-aad.database.windows.net";
        fields["tid"] = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        return Encode("{\"alg\":\"RS256\",\"typ\":\"JWT\"}") + "." + Encode(JsonSerializer.Serialize(fields)) + ".c2lnbmF0dXJl";
    }
}
