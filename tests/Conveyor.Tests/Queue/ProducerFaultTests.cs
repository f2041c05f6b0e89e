using Conveyor.Queue;
using Conveyor.Storage;
using Conveyor.Tests.Infrastructure;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Conveyor.Tests.Queue;

/// <summary>The library's side of an unconfirmed enqueue: a typed exception with every job's id, generated ones included.</summary>
public sealed class ProducerFaultTests
{
    [Fact]
    public async Task An_enqueue_that_times_out_throws_EnqueueUnconfirmedException_with_every_id_and_a_retry_with_them_adds_nothing()
    {
        using var redis = await TestRedis.StartDedicatedAsync();
        await using var admin = await ConnectionMultiplexer.ConnectAsync($"{redis.Endpoint},allowAdmin=true");
        // A client timeout inside the 3 s pause, which is shorter than the silence after which the client reconnects.
        await using var connection = new RedisConnection(await ConnectionMultiplexer.ConnectAsync($"{redis.Endpoint},asyncTimeout=500"));
        var producer = new Producer(connection, Options.Create(new QueueOptions()), new QueueAdmin(connection));
        var queue = TestRedis.UniqueQueue("slow");
        await producer.EnqueueAsync(queue, new JobRequest("probe", "0") { Delay = TimeSpan.FromHours(1) });
        JobRequest[] jobs =
        [
            new("probe", "1") { Delay = TimeSpan.FromHours(1) },
            new("probe", "2") { Delay = TimeSpan.FromHours(1), Id = "mine-2" },
        ];

        await admin.GetServer(redis.Endpoint).ExecuteAsync("CLIENT", "PAUSE", "3000", "WRITE");
        var unconfirmed = await Assert.ThrowsAsync<EnqueueUnconfirmedException>(() => producer.EnqueueBatchAsync(queue, jobs));

        Assert.Equal(queue, unconfirmed.Queue);
        Assert.Equal(2, unconfirmed.Ids.Count);
        Assert.True(Guid.TryParse(unconfirmed.Ids[0], out var generated) && generated.Version == 7, "the generated id is reported");
        Assert.Equal("mine-2", unconfirmed.Ids[1]);
        Assert.IsType<RedisTimeoutException>(unconfirmed.InnerException);
        var scheduled = new RedisKey($"conveyor:{{{queue}}}:scheduled");
        await Wait.UntilAsync(async () => await admin.GetDatabase().SortedSetLengthAsync(scheduled) == 3, "the paused script ran after the pause");

        var retried = await producer.EnqueueBatchAsync(queue, [.. jobs.Select((job, i) => job with { Id = unconfirmed.Ids[i] })]);

        Assert.All(retried, result => Assert.True(result.Duplicate));
        Assert.Equal(3, await admin.GetDatabase().SortedSetLengthAsync(scheduled));
    }
}
