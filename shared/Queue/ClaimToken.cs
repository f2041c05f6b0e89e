using System.Globalization;

namespace Conveyor.Queue;

/// <summary>
/// What a runtime hands back to ack, fail or extend a claim: <c>{queue}:{token}:{job id}</c>. The queue name has no
/// <c>:</c> and the token is digits, so the rest is the job id whatever it holds. The token is the one the claim script
/// stored in the runtime's inflight set; an ack presenting another (the job was given back and claimed again) changes
/// nothing. Runtimes treat the whole string as opaque.
/// </summary>
/// <remarks>
/// claim.lua issues a queue's tokens as <c>max(counter + 1, Redis time ms × 1000)</c>: they only grow (the fence of
/// watch_runtimes.lua holds, across a queue's drop too), and <c>token / 1000</c> is the claim's Redis time in ms while a
/// queue makes fewer than 1,000 claims per ms (<see cref="ClaimedAt"/>; the dashboard shows it as "running since").
/// </remarks>
internal readonly record struct ClaimToken(string Queue, long Token, string JobId)
{
    /// <summary>When a claim with this token was made (Redis time): its token / 1000 in ms.</summary>
    public static DateTimeOffset ClaimedAt(long token) => DateTimeOffset.FromUnixTimeMilliseconds(token / 1000);

    public override string ToString() => $"{Queue}:{Token.ToString(CultureInfo.InvariantCulture)}:{JobId}";

    /// <summary>Parses a claim token; throws <see cref="ConveyorValidationException"/> naming <paramref name="field"/>.</summary>
    public static ClaimToken Parse(string? text, string field)
    {
        var first = text?.IndexOf(':', StringComparison.Ordinal) ?? -1;
        var second = first < 0 ? -1 : text!.IndexOf(':', first + 1);
        if (second < 0
            || !long.TryParse(text.AsSpan(first + 1, second - first - 1), NumberStyles.None, CultureInfo.InvariantCulture, out var token)
            || token < 1)
        {
            throw new ConveyorValidationException(field, "is not a claim token (queue:token:job id, as the claim answered)");
        }
        var queue = text![..first];
        var id = text[(second + 1)..];
        try
        {
            JobValidation.QueueName(queue, field);
            JobValidation.JobId(id, field);
        }
        catch (ConveyorValidationException ex)
        {
            throw new ConveyorValidationException(field, $"is not a claim token (queue:token:job id): {ex.Reason}");
        }
        return new ClaimToken(queue, token, id);
    }
}
