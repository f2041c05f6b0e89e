using Conveyor.Bench;

// dotnet run -c Release --project bench/Conveyor.Bench -- <queue|heartbeats|runtimes|scale|dashboard> --redis host:port [...]
// Prints one JSON line of figures on stdout; progress goes to stderr.
if (args.Length == 0)
{
    Console.Error.WriteLine("usage: Conveyor.Bench queue --redis host:port --jobs N --concurrency C [--prefetch P]");
    Console.Error.WriteLine("       Conveyor.Bench heartbeats --redis host:port --postgres \"<connection string>\" --runtimes R");
    Console.Error.WriteLine("       Conveyor.Bench runtimes --redis host:port --postgres \"<connection string>\" --jobs N --agents R [--in-flight F]");
    Console.Error.WriteLine("       Conveyor.Bench scale --redis host:port [--azurite \"<connection string>\"] [--jobs 20000] [--max-instances 1,2,4]");
    Console.Error.WriteLine("       Conveyor.Bench dashboard --redis host:port --postgres \"<connection string>\" --jobs N [--small 10] [--requests 200]");
    return 2;
}
var options = new BenchArgs(args[1..]);
return args[0] switch
{
    "queue" => await QueueBench.RunAsync(options),
    "heartbeats" => await HeartbeatBench.RunAsync(options),
    "runtimes" => await RuntimeBench.RunAsync(options),
    "scale" => await ScaleBench.RunAsync(options),
    "scale-instance" => await ScaleInstance.RunAsync(options), // a process the scale mode starts
    "dashboard" => await DashboardBench.RunAsync(options),
    _ => throw new ArgumentException($"unknown mode '{args[0]}'"),
};
