using System.Diagnostics;
using Npgsql;

namespace Conveyor.Faults.Infrastructure;

/// <summary>
/// A PostgreSQL cluster of the fault suite's own (initdb in a temp folder, a free loopback port), so that stopping
/// and freezing it never touches the server other tests use. Each scenario gets its own database in it. As root it
/// runs as user <c>postgres</c> (PostgreSQL refuses root). Every backend and auxiliary process of PostgreSQL leads a
/// process group of its own, so freezing it means SIGSTOP to the postmaster and to each of its children.
/// </summary>
internal sealed class PostgresCluster : IAsyncDisposable
{
    private readonly string _bin;
    private readonly string _root;
    private readonly bool _asRoot = Environment.UserName == "root";

    private PostgresCluster(string bin, string root)
    {
        _bin = bin;
        _root = root;
        Port = Ports.Free();
    }

    public int Port { get; }

    private string Data => Path.Combine(_root, "data");

    public static async Task<PostgresCluster> StartAsync()
    {
        var bin = Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin"))
                .Where(d => File.Exists(Path.Combine(d, "initdb"))).OrderBy(d => d, StringComparer.Ordinal).LastOrDefault()
            : null;
        if (bin is null)
        {
            throw new InvalidOperationException(
                "The fault suite needs PostgreSQL server binaries under /usr/lib/postgresql/*/bin (Debian/Ubuntu: apt-get install postgresql; ./dev test installs it)");
        }
        var cluster = new PostgresCluster(bin, Directory.CreateTempSubdirectory("conveyor-faults-pg-").FullName);
        if (cluster._asRoot)
        {
            await RunAsync("chown", ["-R", "postgres", cluster._root]);
        }
        await cluster.RunPgAsync("initdb", ["-D", cluster.Data, "-U", "conveyor", "--auth=trust", "-E", "UTF8"]);
        await cluster.StartAgainAsync();
        return cluster;
    }

    public string ConnectionString(string database) =>
        $"Host=127.0.0.1;Port={Port};Username=conveyor;Database={database};Timeout=5";

    /// <summary>A new empty database; the scenario's hosts apply the migrations at start-up.</summary>
    public async Task<string> CreateDatabaseAsync(string name)
    {
        await using (var admin = NpgsqlDataSource.Create(ConnectionString("postgres")))
        await using (var create = admin.CreateCommand($"CREATE DATABASE {name}"))
        {
            await create.ExecuteNonQueryAsync();
        }
        return ConnectionString(name);
    }

    /// <summary>
    /// SIGSTOP to the postmaster (first, so it forks nothing more) and to every process it started: every connection
    /// stays open and nothing answers.
    /// </summary>
    public void Freeze()
    {
        var postmaster = PostmasterPid();
        Signals.Send(postmaster, Signals.Stop);
        foreach (var child in ChildrenOf(postmaster))
        {
            Signals.TrySend(child, Signals.Stop);
        }
    }

    public void Thaw()
    {
        var postmaster = PostmasterPid();
        foreach (var child in ChildrenOf(postmaster))
        {
            Signals.TrySend(child, Signals.Continue);
        }
        Signals.TrySend(postmaster, Signals.Continue);
    }

    /// <summary>Pids whose parent is <paramref name="parent"/>, from /proc/&lt;pid&gt;/stat (the field after the state).</summary>
    private static List<int> ChildrenOf(int parent)
    {
        var children = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), System.Globalization.CultureInfo.InvariantCulture, out var pid))
            {
                continue;
            }
            string stat;
            try
            {
                stat = File.ReadAllText(Path.Combine(dir, "stat"));
            }
            catch (IOException)
            {
                continue; // gone meanwhile
            }
            // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so read after its last ')'.
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            if (fields.Length > 1 && int.TryParse(fields[1], System.Globalization.CultureInfo.InvariantCulture, out var ppid) && ppid == parent)
            {
                children.Add(pid);
            }
        }
        return children;
    }

    /// <summary>
    /// Stops the cluster; every connection is cut. <paramref name="crash"/>: immediate shutdown, no checkpoint (a crash,
    /// as far as clients can tell; the next start replays the WAL); otherwise a fast, clean shutdown.
    /// </summary>
    public Task StopAsync(bool crash) => RunPgAsync("pg_ctl", ["-D", Data, "-m", crash ? "immediate" : "fast", "-w", "stop"]);

    /// <summary>Starts the cluster (again) on the same port and data.</summary>
    public async Task StartAgainAsync()
    {
        await RunPgAsync("pg_ctl", [
            "-D", Data, "-l", Path.Combine(_root, "postgres.log"), "-w", "-t", "60",
            "-o", $"-p {Port} -k {_root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            "start"]);
        var pid = PostmasterPid();
        var pgCtl = PgCommand("pg_ctl");
        Watchdog.Guard(pid, $"kill -CONT {pid}; for c in $(ps -o pid= --ppid {pid}); do kill -CONT $c; done; {pgCtl} -D '{Data}' -m immediate stop; rm -rf '{_root}'");
    }

    private int PostmasterPid() => int.Parse(File.ReadLines(Path.Combine(Data, "postmaster.pid")).First(), System.Globalization.CultureInfo.InvariantCulture);

    private string PgCommand(string tool) => _asRoot ? $"runuser -u postgres -- {Path.Combine(_bin, tool)}" : Path.Combine(_bin, tool);

    private Task RunPgAsync(string tool, string[] args) =>
        _asRoot ? RunAsync("runuser", ["-u", "postgres", "--", Path.Combine(_bin, tool), .. args]) : RunAsync(Path.Combine(_bin, tool), args);

    private static async Task RunAsync(string file, string[] args)
    {
        var info = new ProcessStartInfo(file)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"{file} did not start");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed ({process.ExitCode}): {await error}{await output}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (File.Exists(Path.Combine(Data, "postmaster.pid")))
        {
            Thaw();
            await StopAsync(crash: true);
        }
        Directory.Delete(_root, recursive: true);
    }
}
