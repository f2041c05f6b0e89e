using System.Text.Json;
using System.Text.Json.Serialization;
using Conveyor.Queue;
using Conveyor.Storage;
using Npgsql;
using StackExchange.Redis;

namespace Conveyor.Presence;

/// <summary>Whether a runtime is beating.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<RuntimeStatus>))]
public enum RuntimeStatus
{
    /// <summary>Beat within the stale window.</summary>
    [JsonStringEnumMemberName("online")]
    Online,

    /// <summary>Never beat, or silent longer than the stale window.</summary>
    [JsonStringEnumMemberName("offline")]
    Offline,
}

/// <summary>A runtime as the registry sees it.</summary>
/// <param name="Id">Its id.</param>
/// <param name="Name">Its display name.</param>
/// <param name="Status">Online or offline, as PostgreSQL holds it.</param>
/// <param name="LastSeenAt">
/// Its latest beat (Redis time), exact: the newest of PostgreSQL's value (which trails by up to the write window) and
/// what Redis recorded (every beat of a runtime known online, and beats still buffered); null if it never beat.
/// </param>
/// <param name="CreatedAt">When it registered.</param>
/// <param name="Metadata">The JSON object given at registration.</param>
public sealed record RuntimeInfo(
    Guid Id, string Name, RuntimeStatus Status, DateTimeOffset? LastSeenAt, DateTimeOffset CreatedAt,
    [property: JsonConverter(typeof(RawJsonConverter))] string Metadata);

/// <summary>A runtime just registered. Its token is shown this once: only its SHA-256 hash is kept.</summary>
/// <param name="Id">Its id.</param>
/// <param name="Token">The secret its beats must present.</param>
/// <param name="Name">Its display name.</param>
/// <param name="CreatedAt">When it registered.</param>
public sealed record RegisteredRuntime(Guid Id, string Token, string Name, DateTimeOffset CreatedAt);

/// <summary>One page of runtimes in id order.</summary>
/// <param name="Items">The runtimes of this page.</param>
/// <param name="Next">Pass as <c>after</c> for the next page; null on the last page.</param>
public sealed record RuntimePage(IReadOnlyList<RuntimeInfo> Items, string? Next);

/// <summary>Registers, looks up, lists and deletes runtimes (PostgreSQL table <c>runtimes</c>).</summary>
public sealed class RuntimeRegistry(NpgsqlDataSource dataSource, RedisConnection redis)
{
    /// <summary>Longest runtime name, in characters.</summary>
    public const int MaxNameLength = 200;

    /// <summary>Largest metadata object, in bytes of UTF-8 JSON.</summary>
    public const int MaxMetadataBytes = 16 * 1024;

    /// <summary>Largest page of <see cref="ListAsync"/>.</summary>
    public const int MaxPageSize = 1000;

    private const string Columns = "id, name, status, last_seen_at, created_at, metadata::text";

    /// <summary>Registers a runtime, offline until its first beat. Metadata must be a JSON object (null means <c>{}</c>).</summary>
    public async Task<RegisteredRuntime> RegisterAsync(string name, string? metadata = null, CancellationToken cancellationToken = default)
    {
        name = ValidateName(name);
        metadata = ValidateMetadata(metadata);
        var id = Guid.CreateVersion7();
        var token = RuntimeCredentials.NewToken();
        await using var command = dataSource.CreateCommand(
            "INSERT INTO runtimes (id, name, metadata, token_hash) VALUES ($1, $2, $3::jsonb, $4) RETURNING created_at");
        command.Parameters.AddWithValue(id);
        command.Parameters.AddWithValue(name);
        command.Parameters.AddWithValue(metadata);
        command.Parameters.AddWithValue(RuntimeCredentials.Hash(token)!);
        DateTime createdAt;
        try
        {
            createdAt = (DateTime)(await command.ExecuteScalarAsync(cancellationToken))!;
        }
        catch (PostgresException ex) when (ex.SqlState.StartsWith("22", StringComparison.Ordinal))
        {
            // A data exception here can only come from the jsonb cast, for what the checks above do not foresee
            // (a number beyond numeric's range, 22003); the INSERT failed, so nothing was written.
            throw new ConveyorValidationException("metadata", $"PostgreSQL refuses it: {ex.MessageText}");
        }
        return new RegisteredRuntime(id, token, name, new DateTimeOffset(createdAt));
    }

    /// <summary>The runtime, or null when no runtime has that id.</summary>
    public async Task<RuntimeInfo?> GetAsync(string id, CancellationToken cancellationToken = default)
    {
        var runtimeId = RuntimeCredentials.ParseId(id);
        await using var command = dataSource.CreateCommand($"SELECT {Columns} FROM runtimes WHERE id = $1");
        command.Parameters.AddWithValue(runtimeId);
        var rows = await ReadAsync(command, cancellationToken);
        return rows.Count == 0 ? null : (await WithLatestBeatsAsync(rows))[0];
    }

    /// <summary>
    /// Runtimes in id order, optionally only those with <paramref name="status"/>, <paramref name="limit"/>
    /// (1 to <see cref="MaxPageSize"/>) at a time, starting after the id <paramref name="after"/>.
    /// </summary>
    public async Task<RuntimePage> ListAsync(RuntimeStatus? status = null, string? after = null, int limit = 100, CancellationToken cancellationToken = default)
    {
        if (limit is < 1 or > MaxPageSize)
        {
            throw new ConveyorValidationException("limit", $"must be between 1 and {MaxPageSize}");
        }
        var afterId = after is null ? (Guid?)null : RuntimeCredentials.ParseId(after, "after");
        var where = new List<string>();
        await using var command = dataSource.CreateCommand();
        if (status is { } wanted)
        {
            command.Parameters.AddWithValue(StatusText(wanted));
            where.Add($"status = ${command.Parameters.Count}");
        }
        if (afterId is { } cursor)
        {
            command.Parameters.AddWithValue(cursor);
            where.Add($"id > ${command.Parameters.Count}");
        }
        command.Parameters.AddWithValue(limit + 1);
        var filter = where.Count == 0 ? "" : "WHERE " + string.Join(" AND ", where);
        command.CommandText = $"SELECT {Columns} FROM runtimes {filter} ORDER BY id LIMIT ${command.Parameters.Count}";
        var rows = await ReadAsync(command, cancellationToken);
        var more = rows.Count > limit;
        if (more)
        {
            rows.RemoveAt(limit);
        }
        var items = await WithLatestBeatsAsync(rows);
        return new RuntimePage(items, more ? RuntimeCredentials.Canonical(items[^1].Id) : null);
    }

    /// <summary>Deletes the runtime and forgets its presence in Redis. False when no runtime had that id.</summary>
    public async Task<bool> DeleteAsync(string id, CancellationToken cancellationToken = default)
    {
        var runtimeId = RuntimeCredentials.ParseId(id);
        await using var command = dataSource.CreateCommand("DELETE FROM runtimes WHERE id = $1");
        command.Parameters.AddWithValue(runtimeId);
        var deleted = await command.ExecuteNonQueryAsync(cancellationToken) > 0;
        // After the row is gone: a beat racing this delete is either refused by the synchronous path,
        // or buffered and then dropped as raced by the next flush.
        var db = await redis.GetDatabaseAsync();
        var member = RuntimeCredentials.Canonical(runtimeId);
        await Task.WhenAll(
            db.HashDeleteAsync(PresenceKeys.Online, member),
            db.HashDeleteAsync(PresenceKeys.Seen, member),
            db.SortedSetRemoveAsync(PresenceKeys.Beats, member),
            db.SortedSetRemoveAsync(PresenceKeys.Flushing, member));
        return deleted;
    }

    /// <summary>
    /// The status of each of <paramref name="ids"/> that exists, as PostgreSQL holds it (one query per 10,000 ids); an
    /// id missing from the answer has no runtime (deleted, or never registered).
    /// </summary>
    public async Task<IReadOnlyDictionary<Guid, RuntimeStatus>> StatusesAsync(IReadOnlyCollection<Guid> ids, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var statuses = new Dictionary<Guid, RuntimeStatus>(ids.Count);
        foreach (var chunk in ids.Chunk(10_000))
        {
            await using var command = dataSource.CreateCommand("SELECT id, status FROM runtimes WHERE id = ANY($1)");
            command.Parameters.AddWithValue(chunk);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                statuses[reader.GetGuid(0)] = reader.GetString(1) == "online" ? RuntimeStatus.Online : RuntimeStatus.Offline;
            }
        }
        return statuses;
    }

    internal static string StatusText(RuntimeStatus status) => status == RuntimeStatus.Online ? "online" : "offline";

    private static string ValidateName(string? name)
    {
        var trimmed = name?.Trim();
        if (string.IsNullOrEmpty(trimmed) || trimmed.Length > MaxNameLength || trimmed.Any(char.IsControl) || !IsValidUtf16(trimmed))
        {
            throw new ConveyorValidationException("name", $"must be 1 to {MaxNameLength} characters without control characters");
        }
        return trimmed;
    }

    /// <summary>
    /// A JSON object PostgreSQL's <c>jsonb</c> takes as it is: valid UTF-16 text, at most <see cref="MaxMetadataBytes"/>,
    /// no duplicate keys (jsonb would keep the last one silently), and no string or key that jsonb refuses:
    /// <c>\u0000</c> (SQLSTATE 22P05) or an unpaired surrogate escape such as <c>\ud800</c> (22P02).
    /// </summary>
    private static string ValidateMetadata(string? metadata)
    {
        if (metadata is null)
        {
            return "{}";
        }
        if (!IsValidUtf16(metadata))
        {
            throw new ConveyorValidationException("metadata", "is not valid text: it holds a lone UTF-16 surrogate");
        }
        var utf8 = System.Text.Encoding.UTF8.GetBytes(metadata);
        if (utf8.Length > MaxMetadataBytes)
        {
            throw new ConveyorValidationException("metadata", $"must be at most {MaxMetadataBytes} bytes");
        }
        try
        {
            using var document = JsonDocument.Parse(utf8, new JsonDocumentOptions { AllowDuplicateProperties = false });
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new ConveyorValidationException("metadata", "must be a JSON object");
            }
        }
        catch (JsonException ex)
        {
            throw new ConveyorValidationException("metadata", $"must be a JSON object: {ex.Message}");
        }
        var reader = new Utf8JsonReader(utf8);
        while (reader.Read())
        {
            if (reader.TokenType is not (JsonTokenType.String or JsonTokenType.PropertyName) || !reader.ValueIsEscaped)
            {
                continue;
            }
            string text;
            try
            {
                text = reader.GetString()!;
            }
            catch (InvalidOperationException)
            {
                throw new ConveyorValidationException("metadata", "must not hold an unpaired surrogate escape such as \\ud800 (PostgreSQL refuses it)");
            }
            if (text.Contains('\0', StringComparison.Ordinal))
            {
                throw new ConveyorValidationException("metadata", "must not hold \\u0000 (PostgreSQL refuses it)");
            }
        }
        return metadata;
    }

    /// <summary>False for a lone surrogate, which Npgsql cannot encode as UTF-8.</summary>
    private static bool IsValidUtf16(string text)
    {
        for (var i = 0; i < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
            }
            else if (char.IsSurrogate(text[i]))
            {
                return false;
            }
        }
        return true;
    }

    private static async Task<List<RuntimeInfo>> ReadAsync(NpgsqlCommand command, CancellationToken cancellationToken)
    {
        var rows = new List<RuntimeInfo>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            rows.Add(new RuntimeInfo(
                reader.GetGuid(0),
                reader.GetString(1),
                reader.GetString(2) == "online" ? RuntimeStatus.Online : RuntimeStatus.Offline,
                reader.IsDBNull(3) ? null : new DateTimeOffset(reader.GetDateTime(3)),
                new DateTimeOffset(reader.GetDateTime(4)),
                reader.GetString(5)));
        }
        return rows;
    }

    /// <summary>A beat Redis recorded (seen, or buffered live or frozen) newer than what PostgreSQL holds: show it.</summary>
    private async Task<List<RuntimeInfo>> WithLatestBeatsAsync(List<RuntimeInfo> rows)
    {
        if (rows.Count == 0)
        {
            return rows;
        }
        var db = await redis.GetDatabaseAsync();
        var beats = await PresenceKeys.LatestBeatsAsync(db, [.. rows.Select(r => (RedisValue)RuntimeCredentials.Canonical(r.Id))]);
        for (var i = 0; i < rows.Count; i++)
        {
            if (beats[i] is { } ms)
            {
                var buffered = new DateTimeOffset(RedisTime.ToUtc((long)ms));
                if (rows[i].LastSeenAt is not { } stored || buffered > stored)
                {
                    rows[i] = rows[i] with { LastSeenAt = buffered };
                }
            }
        }
        return rows;
    }
}
