using System.Diagnostics;
using Npgsql;

namespace Conveyor.Bench;

/// <summary>
/// Counts the SQL statements this process sends, from Npgsql's own trace (one activity per command), so
/// "statements per flush" and "statements per beat" are what went over the wire, not what the code meant to send.
/// </summary>
internal sealed class StatementCounter : IDisposable
{
    private readonly ActivityListener _listener;
    private long _statements;
    private long _ticks;

    public StatementCounter()
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == "Npgsql",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllData,
            // Commands carry their SQL; connection opens (also traced) do not.
            ActivityStopped = activity =>
            {
                if (activity.GetTagItem("db.query.text") is not null)
                {
                    Interlocked.Increment(ref _statements);
                    Interlocked.Add(ref _ticks, activity.Duration.Ticks);
                }
            },
        };
        ActivitySource.AddActivityListener(_listener);
    }

    /// <summary>Statements completed since this counter started.</summary>
    public long Statements => Interlocked.Read(ref _statements);

    /// <summary>Time the completed statements took, summed (concurrent statements overlap).</summary>
    public TimeSpan Elapsed => TimeSpan.FromTicks(Interlocked.Read(ref _ticks));

    public void Dispose() => _listener.Dispose();
}

/// <summary>
/// The server's view of the bench database (<c>pg_stat_database</c>): committed transactions and rows updated,
/// as a cross-check of <see cref="StatementCounter"/>. Backends publish their counters when they exit, so a read
/// first closes the engine's idle pooled connections and waits for their backends to go.
/// </summary>
internal sealed class PostgresStats(string connectionString)
{
    private readonly string _connectionString = new NpgsqlConnectionStringBuilder(connectionString)
    {
        // A fresh backend per read: it publishes its own counters when it exits, before the next read looks.
        Pooling = false,
        ApplicationName = "conveyor-bench-stats",
    }.ConnectionString;

    // Transactions this reader committed itself since the last snapshot, subtracted from the next delta.
    private long _own;

    /// <summary>Counters after every listed data source's idle connections have closed.</summary>
    public async Task<Snapshot> ReadAsync(params NpgsqlDataSource[] pools)
    {
        foreach (var pool in pools)
        {
            pool.Clear();
        }
        await using var connection = new NpgsqlConnection(_connectionString);
        await connection.OpenAsync();
        var own = 0L;
        var waitUntil = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 5;
        while (true)
        {
            await using var others = new NpgsqlCommand(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                connection);
            own++;
            if ((long)(await others.ExecuteScalarAsync())! == 0 || Stopwatch.GetTimestamp() > waitUntil)
            {
                break;
            }
            await Task.Delay(20);
        }
        await using var command = new NpgsqlCommand(
            """
            SELECT xact_commit, tup_updated,
                   (SELECT coalesce(sum(n_tup_hot_upd), 0)::bigint FROM pg_stat_user_tables WHERE relname = 'runtimes')
            FROM pg_stat_database WHERE datname = current_database()
            """, connection);
        own++;
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        var snapshot = new Snapshot(reader.GetInt64(0) - _own, reader.GetInt64(1), reader.GetInt64(2));
        _own += own;
        return snapshot;
    }

    /// <summary>Committed transactions (less this reader's own), rows updated, and HOT updates of <c>runtimes</c>.</summary>
    internal readonly record struct Snapshot(long XactCommit, long TupUpdated, long HotUpdated)
    {
        public static Snapshot operator -(Snapshot a, Snapshot b) => new(a.XactCommit - b.XactCommit, a.TupUpdated - b.TupUpdated, a.HotUpdated - b.HotUpdated);

        public static Snapshot operator +(Snapshot a, Snapshot b) => new(a.XactCommit + b.XactCommit, a.TupUpdated + b.TupUpdated, a.HotUpdated + b.HotUpdated);
    }
}
