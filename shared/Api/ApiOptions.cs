using System.ComponentModel.DataAnnotations;

namespace Conveyor.Api;

/// <summary>The HTTP API. Section <c>Conveyor:Api</c>.</summary>
public sealed class ApiOptions
{
    public const string Section = "Conveyor:Api";

    /// <summary>Largest request body accepted, in bytes. Default: 1 MiB. Bounds: 1 KiB to 64 MiB.</summary>
    [Range(1024, 64 * 1024 * 1024)]
    public int MaxRequestBytes { get; set; } = 1024 * 1024;

    /// <summary>
    /// Keys the self-host accepts in <c>x-functions-key</c> or <c>?code=</c> (Azure Functions checks its own
    /// function keys instead). Default: none, which makes the self-host refuse every keyed route.
    /// </summary>
    public string[] Keys { get; set; } = [];
}
