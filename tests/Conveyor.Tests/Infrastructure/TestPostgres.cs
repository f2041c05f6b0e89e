using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Conveyor.Storage;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Conveyor.Tests.Infrastructure;

/// <summary>
/// The PostgreSQL the tests talk to: <c>CONVEYOR_TEST_POSTGRES</c> (an Npgsql connection string to a server
/// where the user may create databases) when set, otherwise a server this process initialises in a temp
/// folder from the installed binaries (<c>/usr/lib/postgresql/*/bin</c>) and starts on a free loopback port;
/// a watchdog stops and removes it once this process is gone. PostgreSQL refuses to run as root, so as root
/// it runs as user <c>postgres</c>. Never skipped: if neither works, tests fail saying how to get PostgreSQL.
/// </summary>
public static class TestPostgres
{
    private static readonly Lazy<Task<string>> Server = new(StartOrFindAsync);

    public const string HowToGetPostgres =
        "Conveyor's tests need a real PostgreSQL. Install it (Debian/Ubuntu: `sudo apt-get install postgresql`) so the tests can start " +
        "their own on a free loopback port, or point CONVEYOR_TEST_POSTGRES at a running one " +
        "(e.g. CONVEYOR_TEST_POSTGRES=\"Host=127.0.0.1;Port=5432;Username=conveyor;Database=conveyor\"). `./dev test` does all of this for you.";

    /// <summary>Connection string of the server (its maintenance database).</summary>
    public static Task<string> ServerConnectionStringAsync() => Server.Value;

    /// <summary>A new, migrated database no other test uses; dropped by <see cref="TestDatabase.DisposeAsync"/>.</summary>
    public static async Task<TestDatabase> CreateDatabaseAsync()
    {
        var server = await ServerConnectionStringAsync();
        var name = $"conveyor_test_{Guid.NewGuid():N}";
        await using (var admin = NpgsqlDataSource.Create(server))
        {
            await using var create = admin.CreateCommand($"CREATE DATABASE {name}");
            await create.ExecuteNonQueryAsync();
        }
        var connectionString = new NpgsqlConnectionStringBuilder(server) { Database = name, Pooling = true }.ConnectionString;
        var database = new TestDatabase(server, name, connectionString);
        await new SchemaMigrator(database.DataSource, NullLogger<SchemaMigrator>.Instance).MigrateAsync();
        return database;
    }

    private static async Task<string> StartOrFindAsync()
    {
        var configured = Environment.GetEnvironmentVariable("CONVEYOR_TEST_POSTGRES");
        var connectionString = string.IsNullOrWhiteSpace(configured) ? await StartServerAsync() : configured;
        try
        {
            await using var dataSource = NpgsqlDataSource.Create(connectionString);
            await using var probe = dataSource.CreateCommand("SELECT 1");
            await probe.ExecuteScalarAsync();
        }
        catch (Exception ex) when (ex is NpgsqlException or SocketException)
        {
            throw new InvalidOperationException($"Could not connect to PostgreSQL at \"{connectionString}\". {HowToGetPostgres}", ex);
        }
        return connectionString;
    }

    private static async Task<string> StartServerAsync()
    {
        var bin = Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin"))
                .Where(d => File.Exists(Path.Combine(d, "initdb"))).OrderBy(d => d, StringComparer.Ordinal).LastOrDefault()
            : null;
        if (bin is null)
        {
            throw new InvalidOperationException($"CONVEYOR_TEST_POSTGRES is not set and no PostgreSQL server binaries were found under /usr/lib/postgresql/*/bin. {HowToGetPostgres}");
        }
        var asRoot = Environment.UserName == "root";
        var dataRoot = Directory.CreateTempSubdirectory("conveyor-postgres-").FullName;
        var data = Path.Combine(dataRoot, "data");
        if (asRoot)
        {
            // The unprivileged user must own the folder it initialises and reach it through /tmp.
            await RunAsync("chown", ["-R", "postgres", dataRoot], "chown the temp folder to user postgres (does the user exist? the Debian package creates it)");
        }
        await RunAsync(Path.Combine(bin, "initdb"), ["-D", data, "-U", "conveyor", "--auth=trust", "-E", "UTF8"], "initdb", asRoot);
        var port = FreePort();
        // A watchdog shell owns the server: when this test process is gone (however it ended), it stops
        // PostgreSQL and removes the folder. It runs as the server's user, so it tests the parent via /proc.
        var watchdog =
            "\"$0\" \"$@\" & child=$!; " +
            $"while [ -d /proc/{Environment.ProcessId} ] && kill -0 $child 2>/dev/null; do sleep 0.5; done; " +
            $"kill -INT $child 2>/dev/null; wait $child; rm -rf '{dataRoot}'";
        var server = Start("sh",
            ["-c", watchdog, Path.Combine(bin, "postgres"), "-D", data, "-p", $"{port}", "-k", dataRoot,
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=300"],
            asRoot);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        var connectionString = $"Host=127.0.0.1;Port={port};Username=conveyor;Database=postgres";
        while (true)
        {
            try
            {
                await using var dataSource = NpgsqlDataSource.Create(connectionString);
                await using var probe = dataSource.CreateCommand("SELECT 1");
                await probe.ExecuteScalarAsync();
                return connectionString;
            }
            catch (Exception ex) when (ex is NpgsqlException or SocketException && DateTime.UtcNow < deadline && !server.HasExited)
            {
                await Task.Delay(100);
            }
        }
    }

    private static ProcessStartInfo Command(string file, IEnumerable<string> args, bool asPostgres)
    {
        var info = new ProcessStartInfo(asPostgres ? "runuser" : file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (asPostgres)
        {
            foreach (var arg in (string[])["-u", "postgres", "--", file])
            {
                info.ArgumentList.Add(arg);
            }
        }
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }
        return info;
    }

    private static async Task RunAsync(string file, IEnumerable<string> args, string what, bool asPostgres = false)
    {
        using var process = Process.Start(Command(file, args, asPostgres))
            ?? throw new InvalidOperationException($"{what} did not start. {HowToGetPostgres}");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{what} failed ({process.ExitCode}): {await error}{await output} {HowToGetPostgres}");
        }
    }

    private static Process Start(string file, IEnumerable<string> args, bool asPostgres)
    {
        var process = Process.Start(Command(file, args, asPostgres))
            ?? throw new InvalidOperationException($"postgres did not start. {HowToGetPostgres}");
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

/// <summary>One test class's own database, migrated to this build's schema.</summary>
public sealed class TestDatabase : IAsyncDisposable
{
    private readonly string _server;

    internal TestDatabase(string server, string name, string connectionString)
    {
        _server = server;
        Name = name;
        ConnectionString = connectionString;
        DataSource = NpgsqlDataSource.Create(connectionString);
    }

    public string Name { get; }
    public string ConnectionString { get; }

    /// <summary>For arranging and asserting rows directly.</summary>
    public NpgsqlDataSource DataSource { get; }

    public async Task<T> ScalarAsync<T>(string sql, params object[] args)
    {
        await using var command = DataSource.CreateCommand(sql);
        foreach (var arg in args)
        {
            command.Parameters.AddWithValue(arg);
        }
        return (T)(await command.ExecuteScalarAsync())!;
    }

    public async Task<int> ExecuteAsync(string sql, params object[] args)
    {
        await using var command = DataSource.CreateCommand(sql);
        foreach (var arg in args)
        {
            command.Parameters.AddWithValue(arg);
        }
        return await command.ExecuteNonQueryAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await DataSource.DisposeAsync();
        NpgsqlConnection.ClearAllPools();
        await using var admin = NpgsqlDataSource.Create(_server);
        await using var drop = admin.CreateCommand($"DROP DATABASE IF EXISTS {Name} WITH (FORCE)");
        await drop.ExecuteNonQueryAsync();
    }
}
