using System.Diagnostics;

namespace Conveyor.Tests.Infra;

/// <summary>What one run of a hook script did.</summary>
public sealed record HookResult(int ExitCode, string Stdout, string Stderr)
{
    public string Output => Stdout + Stderr;

    public override string ToString() => $"exit {ExitCode}\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";
}

/// <summary>
/// Runs <c>infra/hooks/*.sh</c> with <c>sh</c>, as azd does, with stand-ins for the two external CLIs first on PATH:
/// <c>az</c> answers from files in <see cref="Directory"/> (token, account kind and name, Graph look-ups) and logs
/// every call; <c>azd env set</c> appends KEY=VALUE lines to <c>azd-env</c>. Everything else the hooks use is real:
/// psql, dotnet, the PostgreSQL server.
/// </summary>
public sealed class HookRunner : IDisposable
{
    private const string AzStub = """
        #!/bin/sh
        # Stand-in for the Azure CLI: answers the calls the hooks and Azure.Identity's AzureCliCredential make.
        dir=$(dirname "$0")
        printf 'az %s\n' "$*" >> "$dir/az-calls"
        answer() { if [ -f "$dir/$1" ]; then cat "$dir/$1"; else echo "ERROR: stub az has no $1" >&2; exit 1; fi; }
        case "$*" in
          "account get-access-token --resource-type oss-rdbms --query accessToken -o tsv") answer token ;;
          "account get-access-token"*) printf '{"accessToken":"%s","expiresOn":"2099-01-01 00:00:00.000000","expires_on":4070908800,"tokenType":"Bearer"}\n' "$(cat "$dir/token")" ;;
          "account show --query user.type -o tsv") answer user-type ;;
          "account show --query user.name -o tsv") answer user-name ;;
          "ad signed-in-user show --query userPrincipalName -o tsv") answer signed-in-upn ;;
          "ad sp show --id "*" --query displayName -o tsv") answer sp-display-name ;;
          *) echo "stub az: unexpected call: $*" >&2; exit 2 ;;
        esac
        """;

    private const string AzdStub = """
        #!/bin/sh
        # Stand-in for the Azure Developer CLI: records `azd env set`.
        dir=$(dirname "$0")
        if [ "$1 $2" = "env set" ]; then printf '%s=%s\n' "$3" "$4" >> "$dir/azd-env"; exit 0; fi
        echo "stub azd: unexpected call: $*" >&2
        exit 2
        """;

    public HookRunner()
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("conveyor-hooks-").FullName;
        WorkingDirectory = System.IO.Directory.CreateDirectory(Path.Combine(Directory, "cwd")).FullName;
        WriteExecutable("az", AzStub);
        WriteExecutable("azd", AzdStub);
        Write("token", "not-a-real-token");
    }

    /// <summary>Holds the stubs and their answer files.</summary>
    public string Directory { get; }

    /// <summary>The hooks run here: empty, so the self-host finds no local.settings.json.</summary>
    public string WorkingDirectory { get; }

    /// <summary>Environment of the next runs (on top of this process's).</summary>
    public Dictionary<string, string> Environment { get; } = new(StringComparer.Ordinal);

    /// <summary>Sets what the stub <c>az</c> answers to one kind of call (file name as in the stub).</summary>
    public void Write(string answer, string content) => File.WriteAllText(Path.Combine(Directory, answer), content + "\n");

    public IReadOnlyList<string> AzCalls => Lines("az-calls");

    /// <summary>KEY=VALUE per <c>azd env set</c>, in order.</summary>
    public IReadOnlyList<string> AzdEnvSets => Lines("azd-env");

    public async Task<HookResult> RunAsync(string hook, TimeSpan? timeout = null)
    {
        var script = Path.Combine(CompiledTemplate.FindRepositoryRoot(), "infra", "hooks", hook);
        var start = new ProcessStartInfo("sh")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = WorkingDirectory,
        };
        start.ArgumentList.Add(script);
        start.Environment["PATH"] = Directory + Path.PathSeparator + System.Environment.GetEnvironmentVariable("PATH");
        // The machine's own settings must not leak into the hooks (a developer's AZURE_* or PG* variables).
        foreach (var name in start.Environment.Keys.Where(k => k.StartsWith("AZURE_", StringComparison.Ordinal)
            || k.StartsWith("PG", StringComparison.Ordinal) || k.StartsWith("CONVEYOR_", StringComparison.Ordinal)).ToList())
        {
            start.Environment.Remove(name);
        }
        foreach (var (name, value) in Environment)
        {
            start.Environment[name] = value;
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start sh");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        var limit = timeout ?? TimeSpan.FromMinutes(3);
        using var cancel = new CancellationTokenSource(limit);
        try
        {
            await process.WaitForExitAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{hook} did not finish within {limit}: {await stdout}{await stderr}");
        }
        return new HookResult(process.ExitCode, await stdout, await stderr);
    }

    public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);

    private void WriteExecutable(string name, string content)
    {
        var path = Path.Combine(Directory, name);
        File.WriteAllText(path, content.ReplaceLineEndings("\n") + "\n");
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
    }

    private string[] Lines(string file)
    {
        var path = Path.Combine(Directory, file);
        return File.Exists(path) ? File.ReadAllLines(path) : [];
    }
}
