using Conveyor.Tests.Infrastructure;
using Npgsql;

namespace Conveyor.Tests.Infra;

/// <summary>
/// The test PostgreSQL, arranged the way Azure Database for PostgreSQL flexible server looks to the hooks:
/// a NOLOGIN stand-in for <c>azure_pg_admin</c>; Entra administrators as LOGIN roles with CREATEDB and CREATEROLE
/// but no superuser, members of it; and, in database <c>postgres</c>, a stand-in for Azure's
/// <c>pgaadauth_create_principal_with_oid</c> (Azure-only: it creates a LOGIN role and records the Entra object id;
/// the stand-in records it as the role's comment). Behind a <see cref="TlsPostgresProxy"/>, so the hooks'
/// verify-full connections check a real certificate. Every role and database made here is dropped at the end.
/// Needs the harness's server: the test user is a superuser, and loopback sign-in is trust (any token passes).
/// </summary>
public sealed class AzurePostgresStandIn : IAsyncLifetime
{
    private readonly List<string> _roles = [];
    private readonly List<string> _databases = [];
    private string _server = "";

    /// <summary>Suffix that keeps this run's roles apart from anything else on the server (roles are cluster-wide).</summary>
    public string Run { get; } = Guid.NewGuid().ToString("N")[..8];

    public string AzurePgAdmin => $"azure_pg_admin_{Run}";

    public TlsPostgresProxy Proxy { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        _server = await TestPostgres.ServerConnectionStringAsync();
        var upstream = new NpgsqlConnectionStringBuilder(_server);
        Proxy = new TlsPostgresProxy(upstream.Host!, upstream.Port);
        await CreateRoleAsync(AzurePgAdmin, "NOLOGIN");
        await ExecuteAsync("postgres", $"""
            CREATE OR REPLACE FUNCTION public.pgaadauth_create_principal_with_oid(rolename text, objectid text, objecttype text, isadmin boolean, ismfa boolean)
            RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
            BEGIN
              EXECUTE format('CREATE ROLE %I LOGIN', rolename);
              EXECUTE format('COMMENT ON ROLE %I IS %L', rolename, format('pgaadauth oid=%s type=%s admin=%s mfa=%s', objectid, objecttype, isadmin, ismfa));
              RETURN 'Created role for ' || rolename;
            END
            $$;
            REVOKE EXECUTE ON FUNCTION public.pgaadauth_create_principal_with_oid(text, text, text, boolean, boolean) FROM PUBLIC;
            GRANT EXECUTE ON FUNCTION public.pgaadauth_create_principal_with_oid(text, text, text, boolean, boolean) TO {AzurePgAdmin};
            """);
    }

    public async Task DisposeAsync()
    {
        foreach (var database in _databases)
        {
            await ExecuteAsync("postgres", $"DROP DATABASE IF EXISTS {Quote(database)} WITH (FORCE)");
        }
        var roles = (await ExistingAsync(_roles)).Select(Quote).ToList();
        if (roles.Count > 0)
        {
            await ExecuteAsync("postgres", $"DROP OWNED BY {string.Join(", ", roles)}; DROP ROLE {string.Join(", ", roles)}");
        }
        await Proxy.DisposeAsync();
    }

    /// <summary>A new database name; dropped (and its owner role <c>&lt;name&gt;_owner</c>) at the end.</summary>
    public string NewDatabase()
    {
        var name = $"conveyor_hook_{Guid.NewGuid():N}"[..28];
        _databases.Add(name);
        _roles.Add(name + "_owner");
        return name;
    }

    /// <summary>A name for a role the hooks or a test create; dropped at the end.</summary>
    public string NewRole(string prefix)
    {
        var name = $"{prefix}{Guid.NewGuid():N}"[..(prefix.Length + 8)];
        _roles.Add(name);
        return name;
    }

    /// <summary>
    /// An Entra administrator as Azure makes one: LOGIN, CREATEDB, CREATEROLE (unless <paramref name="createRole"/>
    /// is false, which also models PostgreSQL 16+, where CREATEROLE no longer lets a role grant itself others' roles),
    /// member of azure_pg_admin, not a superuser.
    /// </summary>
    public async Task<string> CreateAdministratorAsync(string name, bool createRole = true)
    {
        _roles.Add(name);
        await CreateRoleAsync(name, $"LOGIN CREATEDB {(createRole ? "CREATEROLE" : "NOCREATEROLE")} IN ROLE {AzurePgAdmin}");
        return name;
    }

    public async Task CreateRoleAsync(string name, string options)
    {
        if (!_roles.Contains(name))
        {
            _roles.Add(name);
        }
        await ExecuteAsync("postgres", $"CREATE ROLE {Quote(name)} {options}");
    }

    /// <summary>A hook runner aimed at this server through the TLS proxy, signing in as <paramref name="administrator"/>.</summary>
    public HookRunner Hooks(string administrator, string database, string appRole, string appObjectId = "4b0c6a47-62a5-4d8c-9a0e-0e5b8f6f1a21")
    {
        var runner = new HookRunner();
        runner.Environment["AZURE_POSTGRES_FQDN"] = "localhost";
        runner.Environment["AZURE_POSTGRES_PORT"] = Proxy.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        runner.Environment["AZURE_POSTGRES_DATABASE"] = database;
        runner.Environment["AZURE_IDENTITY_NAME"] = appRole;
        runner.Environment["AZURE_IDENTITY_PRINCIPAL_ID"] = appObjectId;
        runner.Environment["CONVEYOR_PG_ADMIN_NAME"] = administrator;
        runner.Environment["PGSSLROOTCERT"] = Proxy.CaFile;
        // The self-host this test run built, instead of `dotnet run --project selfhost`.
        runner.Environment["CONVEYOR_SELFHOST"] = Path.Combine(AppContext.BaseDirectory, "Conveyor.SelfHost.dll");
        return runner;
    }

    /// <summary>A data source signed in as <paramref name="role"/> (loopback trust: no password), straight to the server.</summary>
    public NpgsqlDataSource As(string role, string database) =>
        NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(_server) { Username = role, Database = database, Pooling = false }.ConnectionString);

    /// <summary>Runs SQL as the test superuser.</summary>
    public async Task ExecuteAsync(string database, string sql)
    {
        await using var dataSource = As(new NpgsqlConnectionStringBuilder(_server).Username!, database);
        await using var command = dataSource.CreateCommand(sql);
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>One value, as the test superuser; parameters are $1, $2, ...</summary>
    public async Task<T?> ScalarAsync<T>(string database, string sql, params object[] args)
    {
        await using var dataSource = As(new NpgsqlConnectionStringBuilder(_server).Username!, database);
        await using var command = dataSource.CreateCommand(sql);
        foreach (var arg in args)
        {
            command.Parameters.AddWithValue(arg);
        }
        var value = await command.ExecuteScalarAsync();
        return value is null or DBNull ? default : (T)value;
    }

    public static string Quote(string identifier) => "\"" + identifier.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";

    private async Task<List<string>> ExistingAsync(IEnumerable<string> roles)
    {
        var existing = new List<string>();
        foreach (var role in roles.Distinct(StringComparer.Ordinal))
        {
            if (await ScalarAsync<bool>("postgres", "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", role))
            {
                existing.Add(role);
            }
        }
        return existing;
    }
}
