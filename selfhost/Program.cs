using Conveyor.Hosting;
using Conveyor.SelfHost;

// dotnet run --project selfhost            serve the API, run the timers and the processor
// dotnet run --project selfhost -- migrate apply the PostgreSQL schema migrations and exit
var app = SelfHost.Build(args, conveyor => conveyor.AddJobHandler<EchoJobHandler>("echo"));
if (args is ["migrate", ..])
{
    return await SelfHost.MigrateAsync(app);
}
await app.RunAsync();
return 0;
