using System.Text;
using Azure.Core;
using Conveyor.Hosting;
using Conveyor.Storage;
using Conveyor.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using StackExchange.Redis;

namespace Conveyor.Tests.Storage;

/// <summary>
/// The Entra path of <see cref="RedisConnection"/> against a real redis-server of the test's own, whose ACL user
/// (the "object id") has the fake token as its password. TLS is off only because the local server has none.
/// </summary>
public sealed class EntraRedisTests
{
    private const string RedisScope = "https://redis.azure.com/.default";

    [Fact]
    public async Task Connects_as_the_principal_with_a_token_for_the_redis_scope()
    {
        await using var redis = await EntraRedis.StartAsync();

        var db = await redis.Connection.GetDatabaseAsync();

        Assert.Equal(redis.ObjectId, (string?)await db.ExecuteAsync("ACL", "WHOAMI"));
        Assert.Equal(1, redis.Credential.Calls);
        Assert.All(redis.Credential.Scopes, scopes => Assert.Equal([RedisScope], scopes));
        // One RESP3 connection carries commands and pub/sub, so one AUTH per server re-authenticates everything.
        var clients = ((string?)await redis.Admin.ExecuteAsync("CLIENT", "LIST"))!.Split('\n')
            .Where(c => c.Contains($"user={redis.ObjectId} ", StringComparison.Ordinal));
        Assert.Contains("resp=3", Assert.Single(clients), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Refresh_before_expiry_re_AUTHs_the_connection_and_reconnects_sign_in_with_the_new_token()
    {
        await using var redis = await EntraRedis.StartAsync();
        var db = await redis.Connection.GetDatabaseAsync();
        await db.StringSetAsync("k", "v");
        // From now on only token2 opens the door; connections already signed in stay signed in.
        await redis.Admin.ExecuteAsync("ACL", "SETUSER", redis.ObjectId, "resetpass", ">token2");
        await redis.Admin.ExecuteAsync("CONFIG", "RESETSTAT");
        redis.Credential.Token = "token2";

        // 56 of the token's 60 minutes: the 2-minute check fires and finds under 5 minutes left.
        redis.Time.Advance(TimeSpan.FromMinutes(56));
        await Wait.UntilAsync(() => redis.Logs.Entries.Any(e => e.Message.Contains("refreshed its Microsoft Entra token for Redis", StringComparison.Ordinal)),
            "the refresher reports a refresh");

        Assert.Equal(2, redis.Credential.Calls);
        Assert.Contains(redis.Logs.Entries, e => e.Message.Contains("AUTH sent to 1 connected server(s), 0 failed", StringComparison.Ordinal));
        var authStats = await redis.CommandStatsAsync("auth");
        Assert.Contains("calls=1,", authStats, StringComparison.Ordinal);
        Assert.Contains("failed_calls=0", authStats, StringComparison.Ordinal);

        // A reconnect must read the provider's current password: token1 would now be refused.
        var killed = (long)await redis.Admin.ExecuteAsync("CLIENT", "KILL", "USER", redis.ObjectId);
        Assert.True(killed >= 1);
        await Wait.UntilAsync(async () =>
        {
            try
            {
                return (string?)await db.StringGetAsync("k") == "v";
            }
            catch (RedisConnectionException)
            {
                return false;
            }
        }, "the multiplexer reconnects and reads again");
        Assert.Equal(redis.ObjectId, (string?)await db.ExecuteAsync("ACL", "WHOAMI"));
        Assert.Empty((RedisResult[])(await redis.Admin.ExecuteAsync("ACL", "LOG"))!);
        Assert.DoesNotContain(redis.Logs.AtLeast(LogLevel.Warning), e => e.Category.StartsWith("Conveyor", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_failed_refresh_is_logged_with_scope_error_and_expiry_retried_and_keeps_the_connection()
    {
        await using var redis = await EntraRedis.StartAsync();
        var db = await redis.Connection.GetDatabaseAsync();
        var expiry = redis.Time.GetUtcNow() + redis.Credential.Lifetime;
        redis.Credential.Failure = new InvalidOperationException("managed identity endpoint unavailable");

        redis.Time.Advance(TimeSpan.FromMinutes(56));
        await Wait.UntilAsync(() => redis.Logs.AtLeast(LogLevel.Error).Any(), "the failure is logged");

        var error = Assert.Single(redis.Logs.AtLeast(LogLevel.Error));
        Assert.Contains(RedisScope, error.Message, StringComparison.Ordinal);
        Assert.Contains("managed identity endpoint unavailable", error.Message, StringComparison.Ordinal);
        Assert.Contains(expiry.ToString("o", System.Globalization.CultureInfo.InvariantCulture), error.Message, StringComparison.Ordinal);
        Assert.Equal("still", await SetAndGetAsync(db, "still"));

        redis.Credential.Failure = null;
        redis.Time.Advance(RedisTokenRefresher.RetryInterval);
        await Wait.UntilAsync(() => redis.Logs.Entries.Any(e => e.Message.Contains("refreshed its Microsoft Entra token for Redis", StringComparison.Ordinal)),
            "the retry succeeds");
        Assert.Equal(3, redis.Credential.Calls);
        Assert.Equal("after", await SetAndGetAsync(db, "after"));
    }

    [Fact]
    public async Task Without_a_principal_id_the_user_is_the_tokens_oid_claim()
    {
        var objectId = Guid.NewGuid().ToString();
        var jwt = FakeJwt($$"""{"aud":"https://redis.azure.com","oid":"{{objectId}}"}""");
        await using var redis = await EntraRedis.StartAsync(objectId, principalId: null, token: jwt);

        var db = await redis.Connection.GetDatabaseAsync();

        Assert.Equal(objectId, (string?)await db.ExecuteAsync("ACL", "WHOAMI"));
    }

    [Fact]
    public async Task No_first_token_fails_the_connection_saying_which_scope_and_why()
    {
        var credential = new FakeTokenCredential { Failure = new InvalidOperationException("no identity here") };
        await using var services = BuildServices(EntraSettings("127.0.0.1:1", Guid.NewGuid().ToString()), credential, TimeProvider.System, new LogCapture());
        var connection = services.GetRequiredService<RedisConnection>();

        var error = await Assert.ThrowsAsync<EntraTokenException>(connection.GetMultiplexerAsync);

        Assert.Equal(RedisScope, error.Scope);
        Assert.Contains(RedisScope, error.Message, StringComparison.Ordinal);
        Assert.Contains("no identity here", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_connection_string_path_never_asks_for_a_token()
    {
        var credential = new FakeTokenCredential();
        var settings = new Dictionary<string, string?> { ["Conveyor:Redis:ConnectionString"] = await TestRedis.ConnectionStringAsync() };
        await using var services = BuildServices(settings, credential, TimeProvider.System, new LogCapture());
        var connection = services.GetRequiredService<RedisConnection>();

        await (await connection.GetDatabaseAsync()).PingAsync();

        Assert.Equal(0, credential.Calls);
        Assert.Null(connection.TokenRefresher);
    }

    [Fact]
    public async Task RefreshIfDue_asks_only_when_less_than_five_minutes_are_left()
    {
        var time = new FakeTimeProvider();
        var credential = new FakeTokenCredential(time);
        using var refresher = new RedisTokenRefresher(credential, Guid.NewGuid().ToString(), time, new LogCapture().CreateLogger("test"));
        await refresher.AcquireFirstAsync(CancellationToken.None);

        time.Advance(TimeSpan.FromMinutes(54));
        var early = await refresher.RefreshIfDueAsync(CancellationToken.None);
        time.Advance(TimeSpan.FromMinutes(1.5));
        var due = await refresher.RefreshIfDueAsync(CancellationToken.None);

        Assert.Equal(TokenRefreshOutcome.NotDue, early.Outcome);
        Assert.Equal(TokenRefreshOutcome.Refreshed, due.Outcome);
        Assert.Equal(2, credential.Calls);
        Assert.Equal(time.GetUtcNow() + credential.Lifetime, refresher.Provider.Current!.ExpiresOn);
    }

    [Fact]
    public void The_oid_claim_is_read_from_the_jwt_payload_and_a_non_jwt_asks_for_PrincipalId()
    {
        Assert.Equal("1b2c", EntraRedisToken.ObjectIdOf(FakeJwt("""{"oid":"1b2c","tid":"t"}""")));
        Assert.Contains("PrincipalId", Assert.Throws<FormatException>(() => EntraRedisToken.ObjectIdOf("opaque-token")).Message, StringComparison.Ordinal);
        Assert.Contains("no oid claim", Assert.Throws<FormatException>(() => EntraRedisToken.ObjectIdOf(FakeJwt("""{"sub":"x"}"""))).Message, StringComparison.Ordinal);
    }

    private static async Task<string?> SetAndGetAsync(IDatabase db, string value)
    {
        await db.StringSetAsync("probe", value);
        return await db.StringGetAsync("probe");
    }

    /// <summary>A JWT-shaped token: base64url header and payload, no real signature.</summary>
    private static string FakeJwt(string payloadJson) =>
        $"{Base64Url("""{"alg":"none","typ":"JWT"}""")}.{Base64Url(payloadJson)}.sig";

    private static string Base64Url(string json) => System.Buffers.Text.Base64Url.EncodeToString(Encoding.UTF8.GetBytes(json));

    private static Dictionary<string, string?> EntraSettings(string hostName, string? principalId) => new()
    {
        ["Conveyor:Redis:HostName"] = hostName,
        ["Conveyor:Redis:UseEntraId"] = "true",
        ["Conveyor:Redis:PrincipalId"] = principalId,
    };

    private static ServiceProvider BuildServices(Dictionary<string, string?> settings, TokenCredential credential, TimeProvider time, LogCapture logs)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        var services = new ServiceCollection();
        services.AddLogging(logging => logging.AddProvider(logs).SetMinimumLevel(LogLevel.Information));
        services.AddSingleton(credential);
        services.AddSingleton(time);
        services.AddConveyor(configuration);
        services.PostConfigure<RedisOptions>(options => options.EntraTls = false);
        return services.BuildServiceProvider(new ServiceProviderOptions { ValidateOnBuild = true, ValidateScopes = true });
    }

    /// <summary>A dedicated redis-server whose ACL user <see cref="ObjectId"/> signs in with the fake token, and Conveyor's Entra path pointed at it.</summary>
    private sealed record EntraRedis(
        string ObjectId, DedicatedRedis Server, ServiceProvider Services, ConnectionMultiplexer AdminConnection, FakeTokenCredential Credential, FakeTimeProvider Time,
        LogCapture Logs)
        : IAsyncDisposable
    {
        private const string AdminPassword = "admin-secret";

        public IDatabase Admin => AdminConnection.GetDatabase();
        public RedisConnection Connection => Services.GetRequiredService<RedisConnection>();

        public static async Task<EntraRedis> StartAsync(string? objectId = null, string? principalId = "", string token = "token1")
        {
            objectId ??= Guid.NewGuid().ToString();
            if (principalId == "")
            {
                principalId = objectId;
            }
            // The default user gets a password too, so nothing signs in without the token by falling back to it.
            var server = await TestRedis.StartDedicatedAsync($"--requirepass {AdminPassword} --user {objectId} on >{token} ~* &* +@all");
            var admin = await ConnectionMultiplexer.ConnectAsync($"{server.Endpoint},allowAdmin=true,password={AdminPassword}");
            var time = new FakeTimeProvider();
            var credential = new FakeTokenCredential(time) { Token = token };
            var logs = new LogCapture();
            var services = BuildServices(EntraSettings(server.Endpoint, principalId), credential, time, logs);
            return new EntraRedis(objectId, server, services, admin, credential, time, logs);
        }

        /// <summary>The <c>cmdstat_&lt;command&gt;</c> line of INFO commandstats, empty when the command never ran.</summary>
        public async Task<string> CommandStatsAsync(string command)
        {
            var info = (string?)await Admin.ExecuteAsync("INFO", "commandstats") ?? "";
            return info.Split('\n').FirstOrDefault(l => l.StartsWith($"cmdstat_{command}:", StringComparison.Ordinal)) ?? "";
        }

        public async ValueTask DisposeAsync()
        {
            await Services.DisposeAsync();
            await AdminConnection.DisposeAsync();
            Server.Dispose();
        }
    }
}
