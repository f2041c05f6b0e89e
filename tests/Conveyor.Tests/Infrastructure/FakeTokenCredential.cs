using System.Collections.Concurrent;
using Azure.Core;

namespace Conveyor.Tests.Infrastructure;

/// <summary>
/// A <see cref="TokenCredential"/> that hands out <see cref="Token"/> valid for <see cref="Lifetime"/> on
/// <paramref name="time"/>'s clock, records every request's scopes, and throws <see cref="Failure"/> while it is set.
/// </summary>
public sealed class FakeTokenCredential(TimeProvider time) : TokenCredential
{
    private volatile string _token = "token1";
    private volatile Exception? _failure;
    private int _calls;

    public FakeTokenCredential()
        : this(TimeProvider.System)
    {
    }

    public string Token
    {
        get => _token;
        set => _token = value;
    }

    public TimeSpan Lifetime { get; set; } = TimeSpan.FromHours(1);

    public Exception? Failure
    {
        get => _failure;
        set => _failure = value;
    }

    public int Calls => Volatile.Read(ref _calls);

    public ConcurrentQueue<string[]> Scopes { get; } = new();

    public override AccessToken GetToken(TokenRequestContext requestContext, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _calls);
        Scopes.Enqueue(requestContext.Scopes);
        return _failure is { } failure ? throw failure : new AccessToken(_token, time.GetUtcNow() + Lifetime);
    }

    public override ValueTask<AccessToken> GetTokenAsync(TokenRequestContext requestContext, CancellationToken cancellationToken) =>
        ValueTask.FromResult(GetToken(requestContext, cancellationToken));
}
