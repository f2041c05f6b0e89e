// Stand-in for package Microsoft.Azure.Functions.Worker.Extensions.Timer 4.3.1.
// Mirrors Azure/azure-functions-dotnet-worker extensions/Worker.Extensions.Timer/src/TimerInfo.cs.
// Declarations only: see ../README.md.
namespace Microsoft.Azure.Functions.Worker;

public class TimerInfo
{
    public ScheduleStatus? ScheduleStatus { get; set; }

    public bool IsPastDue { get; set; }
}
