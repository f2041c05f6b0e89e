using Conveyor.Storage;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Conveyor.Tests.Infra;

/// <summary>
/// infra/hooks/postprovision.sh and predeploy.sh against the real test PostgreSQL (through a TLS proxy, with
/// stand-ins for the az/azd CLIs and for Azure's pgaadauth function; see <see cref="AzurePostgresStandIn"/>).
/// </summary>
public sealed class DatabaseHookTests(AzurePostgresStandIn postgres) : IClassFixture<AzurePostgresStandIn>
{
    private const string InsufficientPrivilege = "42501";

    [Fact]
    public async Task A_database_owned_by_a_system_role_refuses_the_migration_and_postprovision_says_so_before_changing_anything()
    {
        // What the old template did: the resource provider created the database before any Entra administrator
        // existed, so a system role (azuresu) owns it.
        var database = postgres.NewDatabase();
        var systemRole = postgres.NewRole("azuresu_");
        await postgres.CreateRoleAsync(systemRole, "NOLOGIN");
        await postgres.ExecuteAsync("postgres", $"CREATE DATABASE {database} OWNER {systemRole}");
        var admin = await postgres.CreateAdministratorAsync(postgres.NewRole("admin_"));

        // The reproduction: from PostgreSQL 15 on, public is owned by pg_database_owner, so only the database's
        // owner may create in it. The administrator's first migration statement fails.
        Assert.True(await postgres.ScalarAsync<int>("postgres", "SELECT current_setting('server_version_num')::int") >= 150000,
            "the reproduction needs PostgreSQL 15 or later");
        await using (var asAdmin = postgres.As(admin, database))
        {
            await using var migrate = asAdmin.CreateCommand("CREATE TABLE public.schema_versions (id serial PRIMARY KEY)");
            var refused = await Assert.ThrowsAsync<PostgresException>(() => migrate.ExecuteNonQueryAsync());
            Assert.Equal(InsufficientPrivilege, refused.SqlState);
            Assert.Equal("permission denied for schema public", refused.MessageText);
            await using var check = asAdmin.CreateCommand("SELECT has_schema_privilege('public', 'CREATE')");
            Assert.False((bool)(await check.ExecuteScalarAsync())!, "the administrator may create in public");
        }

        var appRole = postgres.NewRole("id-conveyor-");
        using var hooks = postgres.Hooks(admin, database, appRole);
        var result = await hooks.RunAsync("postprovision.sh");

        Assert.True(result.ExitCode != 0, result.ToString());
        Assert.Contains($"database \"{database}\" exists but belongs to role \"{systemRole}\"", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("permission denied for schema public", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("az postgres flexible-server db delete", result.Stderr, StringComparison.Ordinal);
        Assert.False(await RoleExistsAsync(database + "_owner"), "no owner role after a refusal");
        Assert.False(await RoleExistsAsync(appRole), "no app role after a refusal");
    }

    [Fact]
    public async Task Postprovision_and_predeploy_make_an_owned_database_the_administrator_migrates_and_an_app_role_with_table_rights_only()
    {
        var database = postgres.NewDatabase();
        // A service principal's display name: spaces, a double quote and a semicolon must survive psql and the
        // Npgsql connection string alike.
        var admin = await postgres.CreateAdministratorAsync(postgres.NewRole("Conveyor CI \"deploy\"; ") + " (prod)");
        var appRole = postgres.NewRole("id-conveyor-");
        const string appObjectId = "0f4b9c4e-8f0e-4a54-b7a1-5d1c2f3e4a5b";
        using var hooks = postgres.Hooks(admin, database, appRole, appObjectId);
        var tlsBefore = postgres.Proxy.TlsSessions;

        var provisioned = await hooks.RunAsync("postprovision.sh");
        Assert.True(provisioned.ExitCode == 0, provisioned.ToString());
        var deployed = await hooks.RunAsync("predeploy.sh");
        Assert.True(deployed.ExitCode == 0, deployed.ToString());
        Assert.Contains("applied", deployed.Stdout, StringComparison.Ordinal);

        var owner = database + "_owner";
        Assert.Equal(owner, await postgres.ScalarAsync<string>("postgres", "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1", database));
        Assert.Equal(owner, await postgres.ScalarAsync<string>(database, "SELECT tableowner::text FROM pg_tables WHERE schemaname = 'public' AND tablename = 'runtimes'"));
        Assert.Equal(owner, await postgres.ScalarAsync<string>(database, "SELECT tableowner::text FROM pg_tables WHERE schemaname = 'public' AND tablename = 'schema_versions'"));
        Assert.True(postgres.Proxy.TlsSessions > tlsBefore, "the hooks connected through the TLS proxy (it hangs up on anything else)");

        // The app's role: made by pgaadauth_create_principal_with_oid for the identity's object id, as a service,
        // not an administrator; no CREATEDB/CREATEROLE, not in azure_pg_admin.
        Assert.Equal($"pgaadauth oid={appObjectId} type=service admin=f mfa=f",
            await postgres.ScalarAsync<string>("postgres", "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1", appRole));
        Assert.False(await postgres.ScalarAsync<bool>("postgres", "SELECT rolcreatedb OR rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = $1", appRole), "app role has CREATEDB, CREATEROLE or SUPERUSER");
        Assert.False(await postgres.ScalarAsync<bool>("postgres", "SELECT pg_has_role($1, $2, 'MEMBER')", appRole, postgres.AzurePgAdmin), "app role is in azure_pg_admin");

        // What it may do: read and write Conveyor's rows, check the schema version; and nothing more.
        await using (var app = postgres.As(appRole, database))
        {
            var id = Guid.NewGuid();
            await using (var insert = app.CreateCommand("INSERT INTO runtimes (id, name, token_hash) VALUES ($1, 'worker-1', repeat('a', 64))"))
            {
                insert.Parameters.AddWithValue(id);
                Assert.Equal(1, await insert.ExecuteNonQueryAsync());
            }
            await using (var update = app.CreateCommand("UPDATE runtimes SET status = 'online', last_seen_at = now() WHERE id = $1"))
            {
                update.Parameters.AddWithValue(id);
                Assert.Equal(1, await update.ExecuteNonQueryAsync());
            }
            await using (var delete = app.CreateCommand("DELETE FROM runtimes WHERE id = $1"))
            {
                delete.Parameters.AddWithValue(id);
                Assert.Equal(1, await delete.ExecuteNonQueryAsync());
            }
            var status = await new SchemaMigrator(app, NullLogger<SchemaMigrator>.Instance).CheckAsync();
            Assert.True(status.Matches, $"pending {string.Join(", ", status.Pending)}, unknown {string.Join(", ", status.Unknown)}");

            foreach (var forbidden in new[] { "CREATE TABLE public.intruder (id int)", "DROP TABLE runtimes", "TRUNCATE runtimes", "ALTER TABLE runtimes ADD COLUMN x int" })
            {
                await using var command = app.CreateCommand(forbidden);
                var refused = await Assert.ThrowsAsync<PostgresException>(() => command.ExecuteNonQueryAsync());
                Assert.True(refused.SqlState == InsufficientPrivilege, $"{forbidden}: {refused.SqlState} {refused.MessageText}");
            }
        }

        // Both hooks again: nothing to do, nothing broken.
        var again = await hooks.RunAsync("postprovision.sh");
        Assert.True(again.ExitCode == 0, again.ToString());
        var redeployed = await hooks.RunAsync("predeploy.sh");
        Assert.True(redeployed.ExitCode == 0, redeployed.ToString());
        Assert.Contains("schema is up to date", redeployed.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Where_schema_public_belongs_to_azure_pg_admin_postprovision_lets_the_owner_role_create_in_it()
    {
        // Azure gives schema public of a new database to azure_pg_admin rather than to the database owner
        // (frappe/frappe#39145): the owner role cannot create in it until an administrator grants it.
        var database = postgres.NewDatabase();
        var owner = database + "_owner";
        var admin = await postgres.CreateAdministratorAsync(postgres.NewRole("admin_"));
        await postgres.CreateRoleAsync(owner, "NOLOGIN");
        await postgres.ExecuteAsync("postgres", $"GRANT {owner} TO {AzurePostgresStandIn.Quote(admin)}");
        await postgres.ExecuteAsync("postgres", $"CREATE DATABASE {database} OWNER {owner}");
        await postgres.ExecuteAsync(database, $"ALTER SCHEMA public OWNER TO {postgres.AzurePgAdmin}; REVOKE CREATE ON SCHEMA public FROM PUBLIC");
        await using (var asOwner = postgres.As(admin, database))
        {
            await using var create = asOwner.CreateCommand($"SET ROLE {owner}; CREATE TABLE public.schema_versions (id serial PRIMARY KEY)");
            var refused = await Assert.ThrowsAsync<PostgresException>(() => create.ExecuteNonQueryAsync());
            Assert.Equal("permission denied for schema public", refused.MessageText);
        }

        using var hooks = postgres.Hooks(admin, database, postgres.NewRole("id-conveyor-"));
        var provisioned = await hooks.RunAsync("postprovision.sh");
        Assert.True(provisioned.ExitCode == 0, provisioned.ToString());
        var deployed = await hooks.RunAsync("predeploy.sh");
        Assert.True(deployed.ExitCode == 0, deployed.ToString());

        Assert.Equal(owner, await postgres.ScalarAsync<string>(database, "SELECT tableowner::text FROM pg_tables WHERE schemaname = 'public' AND tablename = 'runtimes'"));
    }

    [Fact]
    public async Task A_database_the_administrator_created_by_hand_is_handed_to_the_owner_role()
    {
        var database = postgres.NewDatabase();
        var admin = await postgres.CreateAdministratorAsync(postgres.NewRole("admin_"));
        await using (var asAdmin = postgres.As(admin, "postgres"))
        {
            await using var create = asAdmin.CreateCommand($"CREATE DATABASE {database}");
            await create.ExecuteNonQueryAsync();
        }

        using var hooks = postgres.Hooks(admin, database, postgres.NewRole("id-conveyor-"));
        var result = await hooks.RunAsync("postprovision.sh");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(database + "_owner", await postgres.ScalarAsync<string>("postgres", "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1", database));
    }

    [Fact]
    public async Task A_second_administrator_is_told_how_to_join_the_owner_role_and_then_migrates()
    {
        var database = postgres.NewDatabase();
        var first = await postgres.CreateAdministratorAsync(postgres.NewRole("first_"));
        using (var hooks = postgres.Hooks(first, database, postgres.NewRole("id-conveyor-")))
        {
            Assert.Equal(0, (await hooks.RunAsync("postprovision.sh")).ExitCode);
            Assert.Equal(0, (await hooks.RunAsync("predeploy.sh")).ExitCode);
        }

        // Another administrator (say CI's identity, after a developer deployed) may not make itself a member of the
        // owner role: on PostgreSQL 16+ CREATEROLE is not enough for that, modelled here by NOCREATEROLE.
        var second = await postgres.CreateAdministratorAsync(postgres.NewRole("second_"), createRole: false);
        using var secondHooks = postgres.Hooks(second, database, postgres.NewRole("id-conveyor-"));
        var refused = await secondHooks.RunAsync("predeploy.sh");
        Assert.True(refused.ExitCode != 0, refused.ToString());
        var grant = $"GRANT {database}_owner TO {second};";
        Assert.Contains($"is not a member of role \"{database}_owner\"", refused.Stderr, StringComparison.Ordinal);
        Assert.Contains(grant, refused.Stderr, StringComparison.Ordinal);

        // The first administrator runs the statement the hint gives, and the second one migrates.
        await using (var asFirst = postgres.As(first, "postgres"))
        {
            await using var command = asFirst.CreateCommand(grant);
            await command.ExecuteNonQueryAsync();
        }
        var deployed = await secondHooks.RunAsync("predeploy.sh");
        Assert.True(deployed.ExitCode == 0, deployed.ToString());
        Assert.Contains("schema is up to date", deployed.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_hooks_refuse_a_server_whose_certificate_does_not_name_the_host_or_chain_to_a_trusted_root()
    {
        var database = postgres.NewDatabase();
        var admin = await postgres.CreateAdministratorAsync(postgres.NewRole("admin_"));
        using var hooks = postgres.Hooks(admin, database, postgres.NewRole("id-conveyor-"));

        // The proxy's certificate names localhost only: reached as 127.0.0.1 it is someone else's server.
        hooks.Environment["AZURE_POSTGRES_FQDN"] = "127.0.0.1";
        var wrongHost = await hooks.RunAsync("postprovision.sh");
        Assert.True(wrongHost.ExitCode != 0, wrongHost.ToString());
        Assert.Contains("does not match host name \"127.0.0.1\"", wrongHost.Stderr, StringComparison.Ordinal);

        // Without PGSSLROOTCERT the hooks trust the system's roots, which never signed the test CA.
        hooks.Environment["AZURE_POSTGRES_FQDN"] = "localhost";
        hooks.Environment.Remove("PGSSLROOTCERT");
        var untrusted = await hooks.RunAsync("postprovision.sh");
        Assert.True(untrusted.ExitCode != 0, untrusted.ToString());
        Assert.Contains("certificate verify failed", untrusted.Stderr, StringComparison.Ordinal);

        Assert.Null(await postgres.ScalarAsync<string>("postgres", "SELECT datname::text FROM pg_database WHERE datname = $1", database));
    }

    [Fact]
    public async Task Predeploy_before_postprovision_says_to_prepare_the_database_first()
    {
        var database = postgres.NewDatabase();
        var admin = await postgres.CreateAdministratorAsync(postgres.NewRole("admin_"));
        using var hooks = postgres.Hooks(admin, database, postgres.NewRole("id-conveyor-"));

        var result = await hooks.RunAsync("predeploy.sh");

        Assert.True(result.ExitCode != 0, result.ToString());
        Assert.Contains($"database {database} does not exist", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("postprovision.sh", result.Stderr, StringComparison.Ordinal);
    }

    private async Task<bool> RoleExistsAsync(string role) =>
        await postgres.ScalarAsync<bool>("postgres", "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", role);
}
