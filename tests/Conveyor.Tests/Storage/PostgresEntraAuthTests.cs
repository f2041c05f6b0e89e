using Conveyor.Storage;
using Conveyor.Tests.Infrastructure;
using Npgsql;

namespace Conveyor.Tests.Storage;

/// <summary>
/// <see cref="PostgresEntraAuth"/> against the real test PostgreSQL (<c>CONVEYOR_TEST_POSTGRES</c>, set by
/// <c>./dev test</c>): a role whose password is the fake token stands in for the Entra role.
/// </summary>
public sealed class PostgresEntraAuthTests
{
    [Fact]
    public async Task The_data_source_signs_in_with_a_token_for_the_PostgreSQL_scope_as_password()
    {
        var role = "entra_" + Guid.NewGuid().ToString("N");
        var token = "token-" + Guid.NewGuid().ToString("N");
        await using var admin = NpgsqlDataSource.Create(AdminConnectionString());
        await using (var create = admin.CreateCommand($"CREATE ROLE \"{role}\" LOGIN PASSWORD '{token}'"))
        {
            await create.ExecuteNonQueryAsync();
        }
        // The dev server trusts loopback: make it check this role's password, so only the token can open.
        await RequirePasswordAsync(admin, role);
        var credential = new FakeTokenCredential { Token = token };
        var builder = new NpgsqlDataSourceBuilder(new NpgsqlConnectionStringBuilder(AdminConnectionString()) { Username = role, Pooling = false }.ConnectionString);

        await using var dataSource = PostgresEntraAuth.Configure(builder, credential).Build();
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var whoami = new NpgsqlCommand("SELECT current_user", connection);

        Assert.Equal(role, (string?)await whoami.ExecuteScalarAsync());
        Assert.True(credential.Calls >= 1);
        Assert.All(credential.Scopes, scopes => Assert.Equal(["https://ossrdbms-aad.database.windows.net/.default"], scopes));
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

    private static string AdminConnectionString() =>
        Environment.GetEnvironmentVariable("CONVEYOR_TEST_POSTGRES") is { Length: > 0 } value
            ? value
            : throw new InvalidOperationException(
                "Conveyor's tests need a real PostgreSQL: run them with `./dev test`, or set CONVEYOR_TEST_POSTGRES (e.g. Host=127.0.0.1;Port=5432;Username=conveyor;Database=conveyor)");

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
        var wrong = new NpgsqlConnectionStringBuilder(AdminConnectionString()) { Username = role, Password = "wrong", Pooling = false }.ConnectionString;
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
