using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;

namespace Conveyor.Storage;

/// <summary>Where Redis is and how Conveyor signs in. Section <c>Conveyor:Redis</c>.</summary>
public sealed class RedisOptions
{
    public const string Section = "Conveyor:Redis";

    /// <summary>
    /// StackExchange.Redis configuration string, used when <see cref="UseEntraId"/> is false (locally).
    /// Default: <c>localhost:6379</c>. Ignored when <see cref="UseEntraId"/> is true.
    /// </summary>
    [Required(ErrorMessage = "Conveyor:Redis:ConnectionString is empty: set it to a StackExchange.Redis configuration string (host:port), or leave it out for localhost:6379")]
    public string ConnectionString { get; set; } = "localhost:6379";

    /// <summary>
    /// <c>host:port</c> of Azure Managed Redis (e.g. <c>name.region.redis.azure.net:10000</c>), used with
    /// <see cref="UseEntraId"/>. Default: none. Required when <see cref="UseEntraId"/> is true, an error otherwise.
    /// </summary>
    public string? HostName { get; set; }

    /// <summary>
    /// Sign in to <see cref="HostName"/> with a Microsoft Entra token (scope <c>https://redis.azure.com/.default</c>)
    /// over TLS, refreshed before it expires, instead of <see cref="ConnectionString"/>. Default: false.
    /// </summary>
    public bool UseEntraId { get; set; }

    /// <summary>
    /// Object id of the identity, which is its Redis ACL user name. Default: none, and then the user is read
    /// from the token's <c>oid</c> claim. Only used with <see cref="UseEntraId"/>.
    /// </summary>
    public string? PrincipalId { get; set; }

    /// <summary>
    /// TLS on the Entra connection. Always true in production (not bound from configuration); tests turn it
    /// off to reach a plain local redis-server.
    /// </summary>
    internal bool EntraTls { get; set; } = true;
}

/// <summary>Entra needs a host; a host without Entra is a configuration mistake, not a silent fallback.</summary>
internal sealed class RedisOptionsValidator : IValidateOptions<RedisOptions>
{
    public ValidateOptionsResult Validate(string? name, RedisOptions options)
    {
        var failures = new List<string>();
        if (options.UseEntraId)
        {
            if (string.IsNullOrWhiteSpace(options.HostName))
            {
                failures.Add("Conveyor:Redis:UseEntraId is true but Conveyor:Redis:HostName is not set: set it to host:port of Azure Managed Redis (e.g. name.region.redis.azure.net:10000)");
            }
            else if (!IsHostAndPort(options.HostName))
            {
                failures.Add($"Conveyor:Redis:HostName ({options.HostName}) must be host:port (e.g. name.region.redis.azure.net:10000)");
            }
            if (!string.IsNullOrWhiteSpace(options.PrincipalId) && !Guid.TryParse(options.PrincipalId, out _))
            {
                failures.Add($"Conveyor:Redis:PrincipalId ({options.PrincipalId}) must be the identity's object id (a GUID), or be left out to read it from the token");
            }
        }
        else if (!string.IsNullOrWhiteSpace(options.HostName))
        {
            failures.Add("Conveyor:Redis:HostName is set but Conveyor:Redis:UseEntraId is not true: set UseEntraId=true to sign in with Microsoft Entra ID, or remove HostName and use Conveyor:Redis:ConnectionString");
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    private static bool IsHostAndPort(string value)
    {
        var colon = value.LastIndexOf(':');
        return colon > 0
            && int.TryParse(value.AsSpan(colon + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port)
            && port is > 0 and <= 65535;
    }
}
