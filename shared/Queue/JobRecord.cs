using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Conveyor.Queue;

/// <summary>
/// The job record stored in <c>conveyor:{q}:jobs</c>. The payload is kept as a JSON string so the
/// scripts can decode and re-encode the record without touching the payload's bytes.
/// </summary>
internal sealed class JobRecord
{
    [JsonPropertyName("type")] public string Type { get; set; } = "";
    [JsonPropertyName("payload")] public string Payload { get; set; } = "null";
    [JsonPropertyName("attempt")] public int Attempt { get; set; }
    [JsonPropertyName("maxAttempts")] public int MaxAttempts { get; set; }
    [JsonPropertyName("traceParent")] public string? TraceParent { get; set; }
    [JsonPropertyName("enqueuedAt")] public long EnqueuedAt { get; set; }
    [JsonPropertyName("dueAt")] public long DueAt { get; set; }
    [JsonPropertyName("lastError")] public string? LastError { get; set; }
    [JsonPropertyName("diedAt")] public long? DiedAt { get; set; }

    public static JobRecord Parse(string json) =>
        JsonSerializer.Deserialize(json, JobRecordJson.Default.JobRecord)
        ?? throw new InvalidDataException("A job record is null");

    /// <summary>
    /// The record as the enqueue script wants it: JSON with the closing brace left off, so the script
    /// appends <c>enqueuedAt</c> and <c>dueAt</c> from Redis time without decoding anything.
    /// </summary>
    public static string OpenJson(string type, string payload, int maxAttempts, string? traceParent)
    {
        var buffer = new ArrayBufferWriter<byte>(payload.Length + 128);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("type", type);
            writer.WriteString("payload", payload);
            writer.WriteNumber("attempt", 0);
            writer.WriteNumber("maxAttempts", maxAttempts);
            if (traceParent is not null)
            {
                writer.WriteString("traceParent", traceParent);
            }
            writer.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan[..^1]);
    }
}

[JsonSerializable(typeof(JobRecord))]
internal sealed partial class JobRecordJson : JsonSerializerContext;
