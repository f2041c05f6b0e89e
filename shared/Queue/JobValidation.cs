using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Conveyor.Queue;

/// <summary>Rules for names, ids and payloads. Every rule throws <see cref="ConveyorValidationException"/>.</summary>
public static partial class JobValidation
{
    /// <summary>Most jobs in one batch.</summary>
    public const int MaxBatchSize = 1000;

    /// <summary>Longest job id.</summary>
    public const int MaxIdLength = 128;

    /// <summary>Farthest ahead a job may be scheduled.</summary>
    public static readonly TimeSpan MaxScheduleAhead = TimeSpan.FromDays(365);

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", RegexOptions.CultureInvariant)]
    private static partial Regex NamePattern();

    /// <summary>Checks a queue name.</summary>
    public static void QueueName(string? queue, string field = "queue")
    {
        if (queue is null || !NamePattern().IsMatch(queue))
        {
            throw new ConveyorValidationException(field, "must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$");
        }
    }

    /// <summary>Checks a job id.</summary>
    public static void JobId(string? id, string field = "id")
    {
        if (string.IsNullOrEmpty(id) || id.Length > MaxIdLength)
        {
            throw new ConveyorValidationException(field, $"must be 1 to {MaxIdLength} characters");
        }
        foreach (var c in id)
        {
            if (c is < '!' or > '~')
            {
                throw new ConveyorValidationException(field, "must be printable ASCII without spaces");
            }
        }
    }

    internal static void Request(JobRequest? job, QueueOptions options, string prefix)
    {
        if (job is null)
        {
            throw new ConveyorValidationException(prefix.TrimEnd('.'), "is required");
        }
        if (job.Type is null || !NamePattern().IsMatch(job.Type))
        {
            throw new ConveyorValidationException(prefix + "type", "must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$");
        }
        if (job.Id is not null)
        {
            JobId(job.Id, prefix + "id");
        }
        if (job.MaxAttempts is < 1 or > 1000)
        {
            throw new ConveyorValidationException(prefix + "maxAttempts", "must be between 1 and 1000");
        }
        if (job.RunAt is not null && job.Delay is not null)
        {
            throw new ConveyorValidationException(prefix + "runAt", "give runAt or a delay, not both");
        }
        if (job.Delay is { } delay && (delay < TimeSpan.Zero || delay > MaxScheduleAhead))
        {
            throw new ConveyorValidationException(prefix + "delay", "must be between 0 and 365 days");
        }
        if (job.RunAt is { } runAt && runAt > DateTimeOffset.UtcNow + MaxScheduleAhead)
        {
            // The client clock only bounds how far ahead a job may be scheduled; due times come from Redis.
            throw new ConveyorValidationException(prefix + "runAt", "must be at most 365 days ahead");
        }
        Payload(job.Payload, options.MaxPayloadBytes, prefix + "payload");
    }

    private static void Payload(string? payload, int maxBytes, string field)
    {
        if (payload is null)
        {
            throw new ConveyorValidationException(field, "is required (JSON; use null for none)");
        }
        if (payload.Length > maxBytes || Encoding.UTF8.GetByteCount(payload) > maxBytes)
        {
            throw new ConveyorValidationException(field, $"is larger than {maxBytes} bytes");
        }
        var reader = new Utf8JsonReader(Encoding.UTF8.GetBytes(payload));
        try
        {
            while (reader.Read())
            {
            }
        }
        catch (JsonException ex)
        {
            throw new ConveyorValidationException(field, $"is not valid JSON: {ex.Message}");
        }
        if (reader.BytesConsumed == 0)
        {
            throw new ConveyorValidationException(field, "is not valid JSON: it is empty");
        }
    }
}
