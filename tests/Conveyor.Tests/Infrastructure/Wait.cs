namespace Conveyor.Tests.Infrastructure;

/// <summary>Waits on conditions, not clocks: polls until true or fails after a generous bound.</summary>
public static class Wait
{
    public static async Task UntilAsync(Func<Task<bool>> condition, string what, int seconds = 20)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"Timed out after {seconds} s waiting until {what}");
            }
            await Task.Delay(10);
        }
    }

    public static Task UntilAsync(Func<bool> condition, string what, int seconds = 20) =>
        UntilAsync(() => Task.FromResult(condition()), what, seconds);
}
