using System.Text;
using Conveyor.Dashboard;
using Conveyor.Queue;
using Conveyor.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Conveyor.Tests.Dashboard;

/// <summary>The dashboard's reads on real Redis: pages by rank in the documented order, the payload cap.</summary>
public sealed class QueueBrowserTests
{
    [Fact]
    public async Task Ready_jobs_page_oldest_first_and_running_jobs_page_across_consumers()
    {
        await using var engine = await EngineHost.StartAsync(new() { ["Conveyor:Dashboard:PageSize"] = "5" });
        var browser = engine.Services.GetRequiredService<QueueBrowser>();
        var queue = TestRedis.UniqueQueue("browse");
        var ids = Enumerable.Range(0, 12).Select(i => $"r{i:00}").ToArray();
        await engine.Producer.EnqueueBatchAsync(queue, [.. ids.Select(id => new JobRequest("probe", "1") { Id = id })]);

        var first = await browser.QueueAsync(queue, new QueuePages(), CancellationToken.None);
        var last = await browser.QueueAsync(queue, new QueuePages(Ready: 3), CancellationToken.None);

        Assert.Equal(ids[..5], first.Ready.Rows.Select(r => r.Id));
        Assert.Equal(ids[10..], last.Ready.Rows.Select(r => r.Id));
        Assert.Equal((12, 3), (last.Ready.Total, last.Ready.Pages));
        Assert.All(first.Ready.Rows, r => Assert.Equal("probe", r.Type));

        var one = new FakeConsumer(engine.Db, queue);
        var two = new FakeConsumer(engine.Db, queue);
        await one.RegisterAsync();
        await two.RegisterAsync();
        var held = (await one.ClaimAsync(3)).Select(c => (c.Id, one.Id)).Concat((await two.ClaimAsync(4)).Select(c => (c.Id, two.Id))).ToHashSet();

        var runningFirst = await browser.QueueAsync(queue, new QueuePages(), CancellationToken.None);
        var runningSecond = await browser.QueueAsync(queue, new QueuePages(Running: 2), CancellationToken.None);

        Assert.Equal(7, runningFirst.Running.Total);
        Assert.Equal(5, runningFirst.Running.Rows.Count);
        Assert.Equal(2, runningSecond.Running.Rows.Count);
        Assert.Equal(held, runningFirst.Running.Rows.Concat(runningSecond.Running.Rows).Select(r => (r.Id, r.Consumer!)).ToHashSet());
        Assert.Equal(ids[7..12], runningFirst.Ready.Rows.Select(r => r.Id));
    }

    [Fact]
    public async Task The_job_page_shows_a_payload_up_to_the_cap_and_only_the_size_of_a_bigger_one()
    {
        await using var engine = await EngineHost.StartAsync(new() { ["Conveyor:Dashboard:MaxPayloadBytes"] = "1024" });
        var browser = engine.Services.GetRequiredService<QueueBrowser>();
        var queue = TestRedis.UniqueQueue("browse");
        var big = "{\"text\":\"" + new string('x', 2000) + "\"}";
        await engine.Producer.EnqueueBatchAsync(queue, [new JobRequest("probe", """{"a":[1,2]}""") { Id = "small" }, new JobRequest("probe", big) { Id = "big" }]);

        var small = await browser.JobAsync(queue, "small", CancellationToken.None);
        var large = await browser.JobAsync(queue, "big", CancellationToken.None);
        var missing = await browser.JobAsync(queue, "nope", CancellationToken.None);

        Assert.Equal(JobState.Ready, small!.Job.State);
        Assert.Equal("{\n  \"a\": [\n    1,\n    2\n  ]\n}", small.PrettyPayload!.ReplaceLineEndings("\n"));
        Assert.Null(large!.PrettyPayload);
        Assert.Equal(Encoding.UTF8.GetByteCount(big), large.PayloadBytes);
        Assert.Null(missing);
    }
}
