#if FUNCTIONS_STANDIN
namespace Conveyor.Tests.Functions;

/// <summary>Stands for the suites that run the real Functions worker when functions/ was built against its stand-in.</summary>
public sealed class FunctionsWorkerMode
{
    [Fact(Skip = "functions/build-mode said standin (the Worker packages do not restore here), so functions/ was built against its stand-in, which cannot run: the suites on the real Functions worker were not compiled; the self-host suites ran")]
    public void The_Functions_worker_suites_run_only_against_a_real_worker_build()
    {
    }
}
#endif
