using System.ComponentModel.DataAnnotations;

namespace Conveyor.Storage;

/// <summary>Where Redis is. Section <c>Conveyor:Redis</c>.</summary>
public sealed class RedisOptions
{
    public const string Section = "Conveyor:Redis";

    /// <summary>StackExchange.Redis configuration string. Default: <c>localhost:6379</c>.</summary>
    [Required]
    public string ConnectionString { get; set; } = "localhost:6379";
}
