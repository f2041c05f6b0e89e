namespace Conveyor.Bench;

internal static class QueueBench
{
    public static Task<int> RunAsync(BenchArgs args)
    {
        _ = args;
        return Task.FromResult(1);
    }
}
