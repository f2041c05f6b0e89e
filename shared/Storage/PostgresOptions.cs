using System.ComponentModel.DataAnnotations;

namespace Conveyor.Storage;

/// <summary>Where PostgreSQL is. Section <c>Conveyor:Postgres</c>.</summary>
public sealed class PostgresOptions
{
    public const string Section = "Conveyor:Postgres";

    /// <summary>
    /// Npgsql connection string. Default: <c>Host=localhost;Port=5432;Database=conveyor;Username=conveyor;Password=conveyor</c>.
    /// </summary>
    [Required(ErrorMessage = "Conveyor:Postgres:ConnectionString is empty: set it to an Npgsql connection string, or leave it out for the local default")]
    public string ConnectionString { get; set; } = "Host=localhost;Port=5432;Database=conveyor;Username=conveyor;Password=conveyor";

    /// <summary>
    /// Apply pending schema migrations when the host starts (under an advisory lock, so many instances
    /// may start at once). Default: true. When false, start-up only checks the schema version and
    /// logs an error naming the missing migrations.
    /// </summary>
    public bool MigrateOnStart { get; set; } = true;

    /// <summary>
    /// Sign in with a Microsoft Entra token (scope <c>https://ossrdbms-aad.database.windows.net/.default</c>) from the
    /// app's identity instead of a password; the connection string then names the Entra role as Username and has
    /// no Password. Default: false.
    /// </summary>
    public bool UseEntraId { get; set; }
}
