namespace Conveyor.Queue;

/// <summary>Exponential backoff with full jitter: uniform in [0, min(max, base · 2^(attempt−1))).</summary>
internal static class Backoff
{
    public static TimeSpan Cap(int attempt, TimeSpan baseDelay, TimeSpan max)
    {
        var exponent = Math.Clamp(attempt - 1, 0, 62);
        var cap = baseDelay.TotalMilliseconds * Math.Pow(2, exponent);
        return TimeSpan.FromMilliseconds(Math.Min(cap, max.TotalMilliseconds));
    }

    public static TimeSpan Delay(int attempt, TimeSpan baseDelay, TimeSpan max) =>
        TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * Cap(attempt, baseDelay, max).TotalMilliseconds);
}
