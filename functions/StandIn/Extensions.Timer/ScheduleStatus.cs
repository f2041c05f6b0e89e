// Stand-in for package Microsoft.Azure.Functions.Worker.Extensions.Timer 4.3.1.
// Mirrors Azure/azure-functions-dotnet-worker extensions/Worker.Extensions.Timer/src/ScheduleStatus.cs.
// Declarations only: see ../README.md.
namespace Microsoft.Azure.Functions.Worker;

public class ScheduleStatus
{
    public DateTime Last { get; set; }

    public DateTime Next { get; set; }

    public DateTime LastUpdated { get; set; }
}
