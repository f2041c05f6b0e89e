using Conveyor.Storage;
using StackExchange.Redis;

namespace Conveyor.Tests.Storage;

/// <summary>Which failures the long-lived loops retry.</summary>
public sealed class TransientTests
{
    [Fact]
    public void A_cancelled_Redis_call_is_transient_for_callers_that_pass_no_token_and_nothing_else_widens()
    {
        // StackExchange.Redis cancels a command it abandons; a session's calls pass no token, so that is the connection.
        Assert.True(Transient.IsRedis(new TaskCanceledException()));
        Assert.False(Transient.Is(new TaskCanceledException()));
        Assert.True(Transient.IsRedis(new RedisTimeoutException("timed out", CommandStatus.Sent)));
        Assert.True(Transient.IsRedis(new RedisConnectionException(ConnectionFailureType.SocketClosed, "closed")));
        Assert.False(Transient.IsRedis(new RedisServerException("ERR unknown command")));
        Assert.False(Transient.IsRedis(new InvalidOperationException("a bug")));
    }
}
