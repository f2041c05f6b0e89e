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

    /// <summary>What queue names and job types match.</summary>
    public const string NamePatternText = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$";

    [GeneratedRegex(NamePatternText, RegexOptions.CultureInvariant)]
    private static partial Regex NamePattern();

    [GeneratedRegex("^[A-Za-z0-9](?:[A-Za-z0-9._~-]{0,126}[A-Za-z0-9])?$", RegexOptions.CultureInvariant)]
    private static partial Regex IdPattern();

    // Throws on a lone surrogate instead of writing U+FFFD: the payload stored must be the payload given.
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private static readonly JsonDocumentOptions StrictJson = new() { AllowDuplicateProperties = false };

    /// <summary>Checks a queue name.</summary>
    public static void QueueName(string? queue, string field = "queue")
    {
        if (queue is null || !NamePattern().IsMatch(queue))
        {
            throw new ConveyorValidationException(field, "must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$");
        }
    }

    /// <summary>
    /// Checks the id of a new job. Ids travel in URL path segments (<c>/api/queues/{queue}/jobs/{id}</c>), so the
    /// alphabet is what every client, proxy and host passes through unchanged, never encoded, decoded or normalised:
    /// 1 to 128 of <c>A–Z a–z 0–9 . _ ~ -</c> (RFC 3986 unreserved characters), starting and ending with a letter or a
    /// digit (so never <c>.</c> or <c>..</c>, and no trailing dot, which IIS drops). Azure Functions decodes
    /// <c>%2F</c> before it routes, so an escaped slash could never be read back there.
    /// </summary>
    public static void NewJobId(string? id, string field = "id")
    {
        if (id is null || !IdPattern().IsMatch(id))
        {
            throw new ConveyorValidationException(field,
                $"must be 1 to {MaxIdLength} of A-Z a-z 0-9 . _ ~ -, starting and ending with a letter or digit");
        }
    }

    /// <summary>
    /// Checks an id a lookup names: any id a job may have been stored with, so jobs enqueued before
    /// <see cref="NewJobId"/> narrowed the alphabet (1 to 128 printable ASCII characters) can still be read and managed.
    /// </summary>
    public static void JobId(string? id, string field = "id")
    {
        if (string.IsNullOrEmpty(id) || id.Length > MaxIdLength || id.Any(c => c is < '!' or > '~'))
        {
            throw new ConveyorValidationException(field, $"must be 1 to {MaxIdLength} printable ASCII characters without spaces");
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
            NewJobId(job.Id, prefix + "id");
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
        if (payload.Length > maxBytes)
        {
            throw new ConveyorValidationException(field, $"is larger than {maxBytes} bytes");
        }
        byte[] utf8;
        try
        {
            utf8 = StrictUtf8.GetBytes(payload);
        }
        catch (EncoderFallbackException)
        {
            throw new ConveyorValidationException(field, "is not valid text: it holds a lone UTF-16 surrogate");
        }
        if (utf8.Length > maxBytes)
        {
            throw new ConveyorValidationException(field, $"is larger than {maxBytes} bytes");
        }
        try
        {
            // The same strictness as the HTTP body: one value, no duplicate property names at any depth.
            using var document = JsonDocument.Parse(utf8, StrictJson);
        }
        catch (JsonException ex)
        {
            throw new ConveyorValidationException(field, $"is not valid JSON: {ex.Message}");
        }
    }
}
