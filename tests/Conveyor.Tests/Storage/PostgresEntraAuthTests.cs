using Conveyor.Storage;
using Conveyor.Tests.Infrastructure;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Conveyor.Tests.Storage;

/// <summary>
/// <see cref="PostgresEntraAuth"/> and <see cref="PostgresDataSource"/> against the real test PostgreSQL: a role
/// whose password is the fake token stands in for the Entra role, and the server is made to check it.
/// </summary>
public sealed class PostgresEntraAuthTests
{
    [Fact]
    public async Task The_data_source_signs_in_with_a_token_for_the_PostgreSQL_scope_as_password()
    {
        var (admin, role, token) = await CreatePasswordRoleAsync();
        await using var _ = admin;
        var credential = new FakeTokenCredential { Token = token };
        var builder = new NpgsqlDataSourceBuilder(await RoleConnectionStringAsync(role));

        await using var dataSource = PostgresEntraAuth.Configure(builder, credential).Build();

        Assert.Equal(role, await CurrentUserAsync(dataSource));
        Assert.True(credential.Calls >= 1);
        Assert.All(credential.Scopes, scopes => Assert.Equal(["https://ossrdbms-aad.database.windows.net/.default"], scopes));
    }

    [Fact]
    public async Task The_token_is_refreshed_on_its_interval_and_new_connections_sign_in_with_the_new_one()
    {
        var (admin, role, token) = await CreatePasswordRoleAsync();
        await using var _ = admin;
        var credential = new FakeTokenCredential { Token = token };
        var builder = new NpgsqlDataSourceBuilder(await RoleConnectionStringAsync(role));
        await using var dataSource = PostgresEntraAuth.Configure(builder, credential, refreshInterval: TimeSpan.FromMilliseconds(200)).Build();
        await using var open = await dataSource.OpenConnectionAsync();

        // The identity's token rotates: the server now accepts only the new one.
        var rotated = "token-" + Guid.NewGuid().ToString("N");
        await using (var alter = admin.CreateCommand($"ALTER ROLE \"{role}\" PASSWORD '{rotated}'"))
        {
            await alter.ExecuteNonQueryAsync();
        }
        credential.Token = rotated;
        var asked = credential.Calls;

        await Wait.UntilAsync(() => Task.FromResult(credential.Calls > asked), "the data source asks for a fresh token", seconds: 10);
        await Wait.UntilAsync(async () =>
        {
            try
            {
                return await CurrentUserAsync(dataSource) == role; // Pooling=false: every command opens a new connection
            }
            catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.InvalidPassword)
            {
                return false;
            }
        }, "a new connection signs in with the refreshed token", seconds: 10);
        await using var still = new NpgsqlCommand("SELECT current_user", open);
        Assert.Equal(role, (string?)await still.ExecuteScalarAsync());
    }

    [Fact]
    public async Task With_UseEntraId_the_configured_data_source_asks_the_registered_credential()
    {
        var (admin, role, token) = await CreatePasswordRoleAsync();
        await using var _ = admin;
        var credential = new FakeTokenCredential { Token = token };
        var options = new PostgresOptions { ConnectionString = await RoleConnectionStringAsync(role), UseEntraId = true };

        await using var dataSource = PostgresDataSource.Create(options, credential: () => credential);

        Assert.Equal(role, await CurrentUserAsync(dataSource));
        Assert.All(credential.Scopes, scopes => Assert.Equal([PostgresEntraAuth.Scope], scopes));
    }

    [Fact]
    public async Task Without_UseEntraId_the_data_source_never_asks_for_a_token()
    {
        var asked = 0;
        var options = new PostgresOptions { ConnectionString = await TestPostgres.ServerConnectionStringAsync() };

        await using var dataSource = PostgresDataSource.Create(options, credential: () =>
        {
            asked++;
            return new FakeTokenCredential();
        });

        Assert.Equal("conveyor", await CurrentUserAsync(dataSource));
        Assert.Equal(0, asked);
    }

    [Fact]
    public async Task A_token_failure_is_logged_naming_the_scope_and_does_not_drop_an_open_connection()
    {
        var (admin, role, token) = await CreatePasswordRoleAsync();
        await using var _ = admin;
        var credential = new FakeTokenCredential { Token = token };
        var logs = new LogCapture();
        using var loggerFactory = LoggerFactory.Create(b => b.AddProvider(logs));
        var builder = new NpgsqlDataSourceBuilder(await RoleConnectionStringAsync(role));
        await using var working = PostgresEntraAuth.Configure(builder, credential, loggerFactory.CreateLogger("entra")).Build();
        await using var open = await working.OpenConnectionAsync();

        credential.Failure = new InvalidOperationException("identity endpoint unreachable");
        var failing = PostgresEntraAuth.Configure(new NpgsqlDataSourceBuilder(await RoleConnectionStringAsync(role)), credential, loggerFactory.CreateLogger("entra")).Build();
        await using (failing)
        {
            await Assert.ThrowsAnyAsync<Exception>(async () => await failing.OpenConnectionAsync());
        }

        await using var still = new NpgsqlCommand("SELECT current_user", open);
        Assert.Equal(role, (string?)await still.ExecuteScalarAsync());
        var error = Assert.Single(logs.AtLeast(LogLevel.Error));
        Assert.Contains(PostgresEntraAuth.Scope, error.Message, StringComparison.Ordinal);
        Assert.Contains("identity endpoint unreachable", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_connection_string_with_a_Password_is_refused_saying_so()
    {
        var builder = new NpgsqlDataSourceBuilder("Host=db.postgres.database.azure.com;Database=conveyor;Username=app-identity;Password=secret");

        var error = Assert.Throws<ArgumentException>(() => PostgresEntraAuth.Configure(builder, new FakeTokenCredential()));

        Assert.Contains("carries a Password", error.Message, StringComparison.Ordinal);
        Assert.Contains("Conveyor:Postgres:UseEntraId", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_connection_string_without_a_Username_is_refused_saying_so()
    {
        var builder = new NpgsqlDataSourceBuilder("Host=db.postgres.database.azure.com;Database=conveyor");

        var error = Assert.Throws<ArgumentException>(() => PostgresEntraAuth.Configure(builder, new FakeTokenCredential()));

        Assert.Contains("names no Username", error.Message, StringComparison.Ordinal);
    }

    /// <summary>A LOGIN role whose password is a fresh token, which the server checks (it trusts loopback otherwise).</summary>
    private static async Task<(NpgsqlDataSource Admin, string Role, string Token)> CreatePasswordRoleAsync()
    {
        var role = "entra_" + Guid.NewGuid().ToString("N");
        var token = "token-" + Guid.NewGuid().ToString("N");
        var admin = NpgsqlDataSource.Create(await TestPostgres.ServerConnectionStringAsync());
        await using (var create = admin.CreateCommand($"CREATE ROLE \"{role}\" LOGIN PASSWORD '{token}'"))
        {
            await create.ExecuteNonQueryAsync();
        }
        await RequirePasswordAsync(admin, role);
        return (admin, role, token);
    }

    private static async Task<string> RoleConnectionStringAsync(string role) =>
        new NpgsqlConnectionStringBuilder(await TestPostgres.ServerConnectionStringAsync()) { Username = role, Password = null, Pooling = false }.ConnectionString;

    private static async Task<string?> CurrentUserAsync(NpgsqlDataSource dataSource)
    {
        await using var whoami = dataSource.CreateCommand("SELECT current_user");
        return (string?)await whoami.ExecuteScalarAsync();
    }

    /// <summary>
    /// Puts a scram-sha-256 line for <paramref name="role"/> first in the server's pg_hba.conf and reloads, then
    /// proves it bites (a wrong password is refused). The test server runs on this machine under <c>./dev test</c>.
    /// </summary>
    private static async Task RequirePasswordAsync(NpgsqlDataSource admin, string role)
    {
        await using (var show = admin.CreateCommand("SHOW hba_file"))
        {
            var path = (string)(await show.ExecuteScalarAsync())!;
            var rules = await File.ReadAllTextAsync(path);
            await File.WriteAllTextAsync(path, $"host all \"{role}\" 127.0.0.1/32 scram-sha-256\n{rules}");
        }
        await using (var reload = admin.CreateCommand("SELECT pg_reload_conf()"))
        {
            await reload.ExecuteScalarAsync();
        }
        var wrong = new NpgsqlConnectionStringBuilder(await TestPostgres.ServerConnectionStringAsync()) { Username = role, Password = "wrong", Pooling = false }.ConnectionString;
        await Wait.UntilAsync(async () =>
        {
            try
            {
                await using var connection = new NpgsqlConnection(wrong);
                await connection.OpenAsync();
                return false;
            }
            catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.InvalidPassword)
            {
                return true;
            }
        }, $"PostgreSQL checks the password of {role}", seconds: 10);
    }
}
