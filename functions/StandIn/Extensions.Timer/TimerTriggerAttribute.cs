// Stand-in for package Microsoft.Azure.Functions.Worker.Extensions.Timer 4.3.1.
// Mirrors Azure/azure-functions-dotnet-worker extensions/Worker.Extensions.Timer/src/TimerTriggerAttribute.cs.
// The real type also carries [BindingCapabilities], [InputConverter] and [ConverterFallbackBehavior], which only the
// worker runtime reads; they are left out. Declarations only: see ../README.md.
using Microsoft.Azure.Functions.Worker.Extensions.Abstractions;

namespace Microsoft.Azure.Functions.Worker;

public sealed class TimerTriggerAttribute : TriggerBindingAttribute
{
    public TimerTriggerAttribute(string schedule)
    {
        Schedule = schedule;
        UseMonitor = true;
    }

    public string Schedule { get; private set; }

    public bool UseMonitor { get; set; }

    public bool RunOnStartup { get; set; }
}
