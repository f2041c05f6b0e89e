using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using StackExchange.Redis;

namespace Conveyor.Queue;

/// <summary>
/// A stored job, read from its two parts so that no transition ever touches payload bytes:
/// <list type="bullet">
/// <item>the record in <c>conveyor:{q}:jobs</c>, written once at enqueue: the header JSON (type, maxAttempts,
/// traceParent, enqueuedAt), a newline, then the payload as raw JSON. A header holds no raw newline, so the first one
/// ends it; a process of an earlier layout fails to parse the record (trailing data after the header) and kills the job
/// visibly instead of running it without its payload;</item>
/// <item>the state in <c>conveyor:{q}:state</c>: <c>attempt|maxAttempts|dueAt|lastError</c>, the only part retry,
/// kill and recovery rewrite (plain text: the scripts format it without a JSON codec). Enqueue writes none: until a
/// transition does, a job is on its first attempt, due at the header's <c>dueAt</c> (given only for a scheduled job) or
/// when it was enqueued, so a job that succeeds first time costs Redis one entry. A claim writes the state of a record
/// over 1 KiB, so that no transition reads one (<c>_lib.lua</c>).</item>
/// </list>
/// Two earlier layouts may still be stored, and are read too: the first (one JSON record holding everything, the payload
/// as an escaped string, no state) and the second (header JSON without the newline, the payload raw in
/// <c>conveyor:{q}:payloads</c>). The scripts rewrite either in the current layout the first time they claim it
/// (<c>_lib.lua</c>).
/// </summary>
internal sealed record JobRecord(
    string Type, string Payload, int Attempt, int MaxAttempts, string? TraceParent, long EnqueuedAt, long DueAt, string? LastError)
{
    /// <summary>
    /// Reads a job from its record and state (null before a first transition, and for the first layout), and the payload
    /// of a record of the second layout when read apart.
    /// </summary>
    /// <exception cref="InvalidDataException">The parts are not a job record.</exception>
    public static JobRecord Read(RedisValue record, RedisValue state, RedisValue secondLayoutPayload = default)
    {
        var bytes = ((ReadOnlyMemory<byte>)record).Span;
        var newline = bytes.IndexOf((byte)'\n');
        if (state.IsNull && newline < 0)
        {
            // First layout: everything in one JSON record.
            var all = ParseHeader(bytes);
            return new JobRecord(all.Type, all.Payload ?? "null", all.Attempt, all.MaxAttempts, all.TraceParent, all.EnqueuedAt, all.DueAt, all.LastError);
        }
        var header = ParseHeader(newline < 0 ? bytes : bytes[..newline]);
        var payload = newline >= 0
            ? Encoding.UTF8.GetString(bytes[(newline + 1)..])
            : secondLayoutPayload.IsNull ? "null" : (string)secondLayoutPayload!;
        if (state.IsNull)
        {
            // No transition yet: the first attempt, due when enqueued unless the header says otherwise.
            return new JobRecord(
                header.Type, payload, 0, header.MaxAttempts, header.TraceParent, header.EnqueuedAt,
                header.DueAt > 0 ? header.DueAt : header.EnqueuedAt, null);
        }
        var (attempt, maxAttempts, dueAt, lastError) = ParseState(state!);
        return new JobRecord(header.Type, payload, attempt, maxAttempts, header.TraceParent, header.EnqueuedAt, dueAt, lastError);
    }

    private static Header ParseHeader(ReadOnlySpan<byte> json)
    {
        try
        {
            return JsonSerializer.Deserialize(json, JobRecordJson.Default.Header) ?? throw new InvalidDataException("A job header is null");
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"A job header is not JSON: {ex.Message}", ex);
        }
    }

    /// <summary>The header as the enqueue script wants it: JSON with the closing brace left off, so the script appends <c>enqueuedAt</c>.</summary>
    public static string OpenHeader(string type, int maxAttempts, string? traceParent)
    {
        var buffer = new ArrayBufferWriter<byte>(160);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("type", type);
            writer.WriteNumber("maxAttempts", maxAttempts);
            if (traceParent is not null)
            {
                writer.WriteString("traceParent", traceParent);
            }
            writer.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan[..^1]);
    }

    /// <summary>Parses a state <c>attempt|maxAttempts|dueAt|lastError</c>.</summary>
    /// <exception cref="InvalidDataException">It is not one.</exception>
    internal static (int Attempt, int MaxAttempts, long DueAt, string? LastError) ParseState(string state)
    {
        var first = state.IndexOf('|', StringComparison.Ordinal);
        var second = first < 0 ? -1 : state.IndexOf('|', first + 1);
        var third = second < 0 ? -1 : state.IndexOf('|', second + 1);
        if (third < 0
            || !int.TryParse(state.AsSpan(0, first), NumberStyles.None, CultureInfo.InvariantCulture, out var attempt)
            || !int.TryParse(state.AsSpan(first + 1, second - first - 1), NumberStyles.None, CultureInfo.InvariantCulture, out var maxAttempts)
            || !long.TryParse(state.AsSpan(second + 1, third - second - 1), NumberStyles.None, CultureInfo.InvariantCulture, out var dueAt))
        {
            throw new InvalidDataException($"A job state is not attempt|maxAttempts|dueAt|lastError: '{state[..Math.Min(state.Length, 64)]}'");
        }
        return (attempt, maxAttempts, dueAt, third + 1 == state.Length ? null : state[(third + 1)..]);
    }

    /// <summary>The header JSON: <see cref="DueAt"/> is set for a scheduled job; payload, attempt and lastError only in records of the first layout.</summary>
    internal sealed class Header
    {
        [JsonPropertyName("type")] public string Type { get; set; } = "";
        [JsonPropertyName("maxAttempts")] public int MaxAttempts { get; set; } = 1;
        [JsonPropertyName("traceParent")] public string? TraceParent { get; set; }
        [JsonPropertyName("enqueuedAt")] public long EnqueuedAt { get; set; }
        /// <summary>The payload of a record of the first layout (a JSON string); null for the second layout's <c>{"in":"payloads"}</c>.</summary>
        [JsonPropertyName("payload")]
        [JsonConverter(typeof(PayloadInsideConverter))]
        public string? Payload { get; set; }
        [JsonPropertyName("attempt")] public int Attempt { get; set; }
        [JsonPropertyName("dueAt")] public long DueAt { get; set; }
        [JsonPropertyName("lastError")] public string? LastError { get; set; }
    }
}

/// <summary>
/// Reads a header's <c>payload</c>: the string of a first-layout record, or null for anything else, skipped without
/// building a document for it (a header is read for every job a processor runs).
/// </summary>
internal sealed class PayloadInsideConverter : JsonConverter<string?>
{
    public override string? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.String)
        {
            return reader.GetString();
        }
        reader.Skip();
        return null;
    }

    public override void Write(Utf8JsonWriter writer, string? value, JsonSerializerOptions options) =>
        throw new NotSupportedException("Job headers are written by JobRecord.OpenHeader");
}

[JsonSerializable(typeof(JobRecord.Header))]
internal sealed partial class JobRecordJson : JsonSerializerContext;
