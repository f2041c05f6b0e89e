using System.Diagnostics;
using System.Diagnostics.Metrics;
using Conveyor.Queue;
using Microsoft.Extensions.Logging;

namespace Conveyor.Bench;

/// <summary>
/// The cold-start marks of one scale instance, printed as <c>mark NAME TIMESTAMP CPUMS</c> (<see cref="Stopwatch.GetTimestamp"/>:
/// the monotonic clock, the same in every process on the machine, so the bench places them on its own clock):
/// <c>main</c> (the instance's code starts), <c>host</c> (its services are built), then side by side <c>redis</c>
/// (connected) and <c>poll</c> (the wake queue's first receive answered), and per session, after its <c>start</c> line: <c>registered</c> (the
/// consumer's first beat recorded), <c>claim</c> (the first jobs claimed), <c>ack</c> (the first acks recorded). The
/// session's last ack goes on its <c>end</c> line. Claims and acks are read from the engine's own meter
/// (<c>conveyor.jobs.claimed</c>, <c>conveyor.jobs.acked</c>), registration from its log line: the engine is not changed
/// to be measured. Each mark also carries the CPU time (ms) the process has used since it started: the cold start's cost,
/// whatever the machine's load (<c>mark NAME TIMESTAMP CPUMS</c>).
/// </summary>
internal sealed class Marks : IDisposable
{
    private static Marks? _current;
    private readonly MeterListener _listener = new();
    private long _claimed, _acked, _lastAck;
    private int _registered;

    public Marks()
    {
        _current = this;
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == ConveyorTelemetry.Name && instrument.Name is "conveyor.jobs.claimed" or "conveyor.jobs.acked")
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, _, _) =>
        {
            if (value <= 0)
            {
                return;
            }
            if (instrument.Name == "conveyor.jobs.claimed")
            {
                if (Interlocked.Exchange(ref _claimed, 1) == 0)
                {
                    Mark("claim");
                }
                return;
            }
            Volatile.Write(ref _lastAck, Stopwatch.GetTimestamp());
            if (Interlocked.Exchange(ref _acked, 1) == 0)
            {
                Mark("ack");
            }
        });
        _listener.Start();
    }

    /// <summary>When the current session's last ack was recorded (0: none yet).</summary>
    public long LastAck => Volatile.Read(ref _lastAck);

    /// <summary>Prints mark <paramref name="name"/>: now, and the CPU time (ms) the process has used so far.</summary>
    public static void Mark(string name)
    {
        var now = Stopwatch.GetTimestamp();
        using var process = Process.GetCurrentProcess();
        Console.Out.WriteLine($"mark {name} {now} {(long)process.TotalProcessorTime.TotalMilliseconds}");
    }

    /// <summary>A session starts: its first registration, claim and ack will be marked.</summary>
    public void SessionStarts()
    {
        Volatile.Write(ref _registered, 0);
        Volatile.Write(ref _claimed, 0);
        Volatile.Write(ref _acked, 0);
        Volatile.Write(ref _lastAck, 0);
    }

    public void Dispose()
    {
        _listener.Dispose();
        _current = null;
    }

    private void Registered()
    {
        if (Interlocked.Exchange(ref _registered, 1) == 0)
        {
            Mark("registered");
        }
    }

    /// <summary>Marks <c>registered</c> when the processor logs that a consumer started (its first beat was recorded).</summary>
    internal sealed class SessionLog : ILoggerProvider, ILogger
    {
        public ILogger CreateLogger(string categoryName) => this;

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (state is IReadOnlyList<KeyValuePair<string, object?>> values
                && values.Count > 0 && values[^1] is { Key: "{OriginalFormat}", Value: "Consumer {Consumer} started on queue {Queue}" })
            {
                _current?.Registered();
            }
        }

        public void Dispose()
        {
        }
    }
}
