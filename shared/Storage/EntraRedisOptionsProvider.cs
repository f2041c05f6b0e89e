using System.Buffers.Text;
using System.Text.Json;
using StackExchange.Redis.Configuration;

namespace Conveyor.Storage;

/// <summary>A Microsoft Entra token for Redis and the ACL user it signs in as (the identity's object id).</summary>
internal sealed record EntraRedisToken(string User, string Token, DateTimeOffset ExpiresOn)
{
    /// <summary>
    /// The <c>oid</c> claim of an access token (a JWT: header.payload.signature, base64url). Used when
    /// <c>Conveyor:Redis:PrincipalId</c> is not set: the object id is the Redis ACL user name.
    /// </summary>
    public static string ObjectIdOf(string accessToken)
    {
        var parts = accessToken.Split('.');
        if (parts.Length != 3)
        {
            throw new FormatException("The access token is not a JWT (header.payload.signature), so its oid claim cannot be read; set Conveyor:Redis:PrincipalId to the identity's object id");
        }
        try
        {
            using var payload = JsonDocument.Parse(Base64Url.DecodeFromChars(parts[1]));
            if (payload.RootElement.ValueKind == JsonValueKind.Object
                && payload.RootElement.TryGetProperty("oid", out var oid)
                && oid.ValueKind == JsonValueKind.String
                && !string.IsNullOrWhiteSpace(oid.GetString()))
            {
                return oid.GetString()!;
            }
        }
        catch (Exception ex) when (ex is FormatException or JsonException)
        {
            throw new FormatException("The access token's payload is not base64url JSON, so its oid claim cannot be read; set Conveyor:Redis:PrincipalId to the identity's object id", ex);
        }
        throw new FormatException("The access token has no oid claim; set Conveyor:Redis:PrincipalId to the identity's object id");
    }
}

/// <summary>
/// Azure Managed Redis defaults (TLS, RESP3, no abort on connect failure, maintenance events) plus the current
/// Entra user and token. It is set as <c>ConfigurationOptions.Defaults</c> with User/Password left unset on the
/// options, so StackExchange.Redis reads <see cref="User"/> and <see cref="Password"/> here on every
/// (re)connect and a reconnect after a refresh signs in with the new token.
/// </summary>
internal sealed class EntraRedisOptionsProvider : AzureManagedRedisOptionsProvider
{
    private volatile EntraRedisToken? _current;

    public EntraRedisToken? Current
    {
        get => _current;
        set => _current = value;
    }

    public override string? User => _current?.User;

    public override string? Password => _current?.Token;
}
