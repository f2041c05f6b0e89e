#if !FUNCTIONS_STANDIN
using Conveyor.Api;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.Contract;

/// <summary>
/// The self-host and the real Functions worker (a process of its own, which builds the document itself) answer
/// <c>GET /api/openapi.json</c> with the same bytes. That the Functions route is anonymous is checked where the worker
/// indexes its functions (WorkerIndexingTests): the test host, like the Functions host, is where keys would be checked.
/// </summary>
public sealed class BothHostsDocumentTests(SelfHostApp selfHost, FunctionsWorkerApp functions) : IClassFixture<SelfHostApp>, IClassFixture<FunctionsWorkerApp>
{
    [Fact]
    public async Task Both_hosts_serve_the_same_document()
    {
        var fromSelfHost = await ContractTools.ServedDocumentAsync(selfHost.Server.Anonymous);
        var fromFunctions = await ContractTools.ServedDocumentAsync(functions.Client);

        Assert.True(fromSelfHost.AsSpan().SequenceEqual(fromFunctions),
            $"the documents differ: self-host {fromSelfHost.Length} bytes, Functions worker {fromFunctions.Length} bytes, first difference at byte "
            + fromSelfHost.AsSpan().CommonPrefixLength(fromFunctions));
        Assert.Equal(fromSelfHost, await OpenApiContract.GetJsonAsync());
    }
}
#endif
