using System.Text.Json;
using Conveyor.Api;
using Conveyor.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Conveyor.Tests.Functions;

/// <summary>
/// What the Functions worker middleware in Program.cs writes when a handler throws unexpectedly: the self-host's 500
/// problem, with the exception logged and kept out of the body. (Run against the real worker by the Functions test host.)
/// </summary>
public sealed class UnexpectedErrorTests
{
    [Fact]
    public async Task An_unexpected_exception_is_logged_and_answered_with_the_internal_problem()
    {
        var logs = new LogCapture();
        await using var services = new ServiceCollection().AddLogging(logging => logging.AddProvider(logs)).BuildServiceProvider();
        var context = new DefaultHttpContext { RequestServices = services };
        context.Request.Method = "GET";
        context.Request.Path = "/api/runtimes";
        context.Response.Body = new MemoryStream();
        var failure = new InvalidOperationException("secret connection detail");

        await Problems.WriteUnexpectedAsync(context, failure);

        Assert.Equal(500, context.Response.StatusCode);
        Assert.Equal("application/problem+json", context.Response.ContentType);
        context.Response.Body.Position = 0;
        var problem = (await JsonDocument.ParseAsync(context.Response.Body)).RootElement;
        Assert.Equal(Problems.Types.Internal, problem.GetProperty("type").GetString());
        Assert.Equal("GET /api/runtimes failed unexpectedly; the error is logged with this traceId", problem.GetProperty("detail").GetString());
        Assert.False(string.IsNullOrEmpty(problem.GetProperty("traceId").GetString()));
        Assert.DoesNotContain("secret", problem.GetRawText(), StringComparison.Ordinal);
        var logged = Assert.Single(logs.AtLeast(LogLevel.Error));
        Assert.Same(failure, logged.Exception);
    }
}
