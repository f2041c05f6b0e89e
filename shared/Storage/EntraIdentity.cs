using Azure.Core;
using Azure.Identity;
using Microsoft.Extensions.Configuration;

namespace Conveyor.Storage;

/// <summary>
/// The one <see cref="TokenCredential"/> of the process: <see cref="DefaultAzureCredential"/>, pinned to the
/// user-assigned managed identity named by <c>Conveyor:Identity:ClientId</c> (else <c>AZURE_CLIENT_ID</c>).
/// Registered as a factory, so hosts that use plain connection strings never build or call it.
/// </summary>
internal static class EntraIdentity
{
    public const string ClientIdSetting = "Conveyor:Identity:ClientId";

    public static TokenCredential CreateCredential(IConfiguration configuration)
    {
        var clientId = FirstSet(configuration[ClientIdSetting], configuration["AZURE_CLIENT_ID"]);
        var options = new DefaultAzureCredentialOptions();
        if (clientId is not null)
        {
            options.ManagedIdentityClientId = clientId;
        }
        return new DefaultAzureCredential(options);
    }

    private static string? FirstSet(params string?[] values) => values.FirstOrDefault(v => !string.IsNullOrWhiteSpace(v));
}

/// <summary>Conveyor could not get a Microsoft Entra token, so it cannot sign in to a data store.</summary>
public sealed class EntraTokenException(string scope, string message, Exception? inner = null)
    : ConveyorException(message, inner)
{
    /// <summary>The scope the token was asked for, e.g. <c>https://redis.azure.com/.default</c>.</summary>
    public string Scope { get; } = scope;
}
