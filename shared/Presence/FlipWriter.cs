using Conveyor.Storage;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;

namespace Conveyor.Presence;

/// <summary>
/// Writes synchronous beats (offline→online flips, and beats of runtimes Redis does not know online) to PostgreSQL in
/// groups: the beats that arrive within <see cref="PresenceOptions.FlipGroupWindow"/> of a group's first, up to
/// <see cref="PresenceOptions.FlipGroupSize"/>, go in one statement, and each caller is answered once that statement
/// has committed and Redis knows its runtime online. Up to <see cref="ConcurrentGroups"/> statements run at once; beats
/// that arrive while they do gather into the next group, so groups grow with the load instead of queueing one by one.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage(
    "Reliability", "CA1001", Justification = "SemaphoreSlim holds nothing to dispose unless its AvailableWaitHandle is used, and groups may still run while the container is disposed")]
internal sealed class FlipWriter(NpgsqlDataSource dataSource, RedisConnection redis, IOptions<PresenceOptions> options)
{
    /// <summary>Group statements in flight at once, each on its own pooled connection.</summary>
    internal const int ConcurrentGroups = 4;

    // One statement for the whole group: lock the rows in id order (as the flush and the sweep do, so none of them can
    // deadlock another), bump each row whose stored token hash one of the group's beats presented, and report what
    // every row was, so unknown id, wrong token and offline→online are told apart per beat without another round trip.
    // GREATEST: a beat never moves last_seen_at backwards.
    private const string WriteGroup = """
        WITH given AS (
            SELECT * FROM unnest($1::uuid[], $2::text[]) AS g(id, hash)
        ), locked AS (
            SELECT id, status, token_hash FROM runtimes
            WHERE id = ANY($1::uuid[])
            ORDER BY id
            FOR NO KEY UPDATE
        ), bumped AS (
            UPDATE runtimes r SET status = 'online', last_seen_at = GREATEST(r.last_seen_at, $3)
            FROM locked l
            WHERE r.id = l.id AND EXISTS (SELECT 1 FROM given g WHERE g.id = l.id AND g.hash = l.token_hash)
            RETURNING r.id
        )
        SELECT l.id, l.status, l.token_hash, b.id IS NOT NULL FROM locked l LEFT JOIN bumped b ON b.id = l.id
        """;

    private readonly object _gate = new();
    private readonly SemaphoreSlim _writers = new(ConcurrentGroups);
    private List<Flip> _forming = [];
    private TaskCompletionSource? _full;
    private bool _collecting;

    /// <summary>Test seam: awaited by a group after it is taken and before its statement is sent. Null in production.</summary>
    internal Func<IReadOnlyList<Guid>, Task>? BeforeWrite { get; set; }

    /// <summary>
    /// Writes the beat of runtime <paramref name="id"/> presenting token hash <paramref name="hash"/> with the next group;
    /// completes once that group's statement has committed (or failed: then with its exception). A beat cancelled before
    /// its group is sent is not written.
    /// </summary>
    public Task<BeatResult> WriteAsync(Guid id, string hash, CancellationToken cancellationToken)
    {
        var flip = new Flip(id, hash, cancellationToken);
        bool collect;
        lock (_gate)
        {
            _forming.Add(flip);
            collect = !_collecting;
            _collecting = true;
            if (_forming.Count >= options.Value.FlipGroupSize)
            {
                _full?.TrySetResult();
            }
        }
        if (collect)
        {
            _ = CollectAsync();
        }
        return flip.Answer.Task.WaitAsync(cancellationToken);
    }

    /// <summary>Waits out the group window (or until the group is full) and a free writer, then takes the group and writes it.</summary>
    private async Task CollectAsync()
    {
        var settings = options.Value;
        var full = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            _full = full;
            if (_forming.Count >= settings.FlipGroupSize)
            {
                full.TrySetResult();
            }
        }
        if (settings.FlipGroupWindow > TimeSpan.Zero)
        {
            await Task.WhenAny(Task.Delay(settings.FlipGroupWindow), full.Task);
        }
        await _writers.WaitAsync();
        List<Flip> group;
        bool more;
        lock (_gate)
        {
            if (_forming.Count <= settings.FlipGroupSize)
            {
                group = _forming;
                _forming = [];
            }
            else
            {
                group = _forming[..settings.FlipGroupSize];
                _forming = _forming[settings.FlipGroupSize..];
            }
            more = _forming.Count > 0;
            _collecting = more;
        }
        if (more)
        {
            _ = CollectAsync();
        }
        try
        {
            await WriteGroupAsync(group);
        }
        finally
        {
            _writers.Release();
        }
    }

    private async Task WriteGroupAsync(List<Flip> group)
    {
        var live = new List<Flip>(group.Count);
        foreach (var flip in group)
        {
            if (flip.CancellationToken.IsCancellationRequested)
            {
                flip.Answer.TrySetCanceled(flip.CancellationToken);
            }
            else
            {
                live.Add(flip);
            }
        }
        if (live.Count == 0)
        {
            return;
        }
        try
        {
            var ids = new Guid[live.Count];
            var hashes = new string[live.Count];
            for (var i = 0; i < live.Count; i++)
            {
                (ids[i], hashes[i]) = (live[i].Id, live[i].Hash);
            }
            if (BeforeWrite is { } before)
            {
                await before(ids);
            }
            var db = await redis.GetDatabaseAsync();
            var nowMs = await RedisTime.NowMsAsync(db);
            var now = RedisTime.ToUtc(nowMs);
            var rows = await ExecuteAsync(ids, hashes, now);
            var results = new BeatResult[live.Count];
            var flipped = new HashSet<Guid>();
            var known = new List<StackExchange.Redis.RedisValue> { nowMs };
            for (var i = 0; i < live.Count; i++)
            {
                var flip = live[i];
                if (!rows.TryGetValue(flip.Id, out var row))
                {
                    results[i] = BeatResult.NotFound;
                }
                else if (!RuntimeCredentials.HashesMatch(row.TokenHash, flip.Hash) || !row.Bumped)
                {
                    results[i] = BeatResult.Unauthorized;
                }
                else
                {
                    // Two beats of one runtime in a group: the flip is the first one's.
                    var first = flipped.Add(flip.Id);
                    results[i] = new BeatResult(BeatOutcome.Synchronous, FlippedOnline: !row.WasOnline && first, SeenAt: new DateTimeOffset(now));
                    if (first)
                    {
                        known.Add(RuntimeCredentials.Canonical(flip.Id));
                        known.Add(flip.Hash);
                    }
                }
            }
            if (options.Value.Mode == PresenceMode.Batched && known.Count > 1)
            {
                // After the commit: from now on their beats are recorded in Redis. If the sweeper or a flush removes one
                // again in between, its next beat simply comes back here.
                await PresenceScripts.Online.RunAsync(db, [PresenceKeys.Online], [.. known]);
            }
            for (var i = 0; i < live.Count; i++)
            {
                live[i].Answer.TrySetResult(results[i]);
            }
        }
#pragma warning disable CA1031 // Every caller of the group gets the group's failure; nothing here is swallowed.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            foreach (var flip in live)
            {
                flip.Answer.TrySetException(ex);
            }
        }
    }

    private async Task<Dictionary<Guid, Row>> ExecuteAsync(Guid[] ids, string[] hashes, DateTime now)
    {
        await using var command = dataSource.CreateCommand(WriteGroup);
        command.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Uuid, Value = ids });
        command.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = hashes });
        command.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.TimestampTz, Value = now });
        var rows = new Dictionary<Guid, Row>(ids.Length);
        // Not the callers' tokens: the statement is theirs together, and one caller giving up must not fail the others.
        await using var reader = await command.ExecuteReaderAsync(CancellationToken.None);
        while (await reader.ReadAsync(CancellationToken.None))
        {
            rows[reader.GetGuid(0)] = new Row(reader.GetString(1) == "online", reader.GetString(2), reader.GetBoolean(3));
        }
        return rows;
    }

    /// <summary>A row as the group found it: online before, its stored token hash, and whether the group bumped it.</summary>
    private readonly record struct Row(bool WasOnline, string TokenHash, bool Bumped);

    /// <summary>One caller's beat, waiting for its group.</summary>
    private sealed class Flip(Guid id, string hash, CancellationToken cancellationToken)
    {
        public Guid Id { get; } = id;

        public string Hash { get; } = hash;

        public CancellationToken CancellationToken { get; } = cancellationToken;

        public TaskCompletionSource<BeatResult> Answer { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
