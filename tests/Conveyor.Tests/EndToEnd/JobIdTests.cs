using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.EndToEnd;

/// <summary>Job ids on the self-host.</summary>
public sealed class JobIdsOnSelfHost(SelfHostApp app) : JobIdTests(app), IClassFixture<SelfHostApp>;

#if !FUNCTIONS_STANDIN
/// <summary>Job ids on the real Functions worker.</summary>
public sealed class JobIdsOnFunctions(FunctionsWorkerApp app) : JobIdTests(app), IClassFixture<FunctionsWorkerApp>;
#endif

/// <summary>
/// Job ids travel in URL path segments, so the id alphabet is the part of a segment that no client, proxy or host
/// encodes, decodes or normalises: letters, digits and <c>. _ ~ -</c>, starting and ending with a letter or digit.
/// On both hosts (a subclass per host above): the Functions host routes on the same path segments.
/// </summary>
public abstract class JobIdTests(ConveyorApp app)
{
    /// <summary>Every allowed character class, each at the start, inside and at the end where the rule allows.</summary>
    public static readonly string[] AllowedIds =
    [
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "abcdefghijklmnopqrstuvwxyz",
        "0123456789",
        "7",
        "a.b",
        "a..b",
        "a_b",
        "a~b",
        "a-b",
        "Z._~-9",
        "0190d4c2-7a1b-7cde-8f00-0123456789ab",
        new string('x', 128),
    ];

    [Fact]
    public async Task Every_allowed_id_round_trips_through_location_get_requeue_and_delete()
    {
        var queue = app.Queue; // the queue the app's processor serves; the fixture's own, so no other test's ids meet these

        foreach (var id in AllowedIds)
        {
            // The probe fails the job's first runs: it dies on its only attempt, and again after a requeue.
            var response = await app.Client.PostAsync($"/api/queues/{queue}/jobs",
                ConveyorApp.Json($$"""{"type":"probe","payload":{"failTimes":2},"id":"{{id}}","maxAttempts":1}"""));
            Assert.True(response.StatusCode == HttpStatusCode.Accepted, $"{id}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
            Assert.Equal($"/api/queues/{queue}/jobs/{id}", response.Headers.Location?.OriginalString);
            Assert.Equal(id, (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString());
        }
        await Wait.UntilAsync(async () => await DeadCountAsync(queue) == AllowedIds.Length, "every job died");

        foreach (var id in AllowedIds)
        {
            var job = await app.Client.GetFromJsonAsync<JsonElement>($"/api/queues/{queue}/jobs/{id}");
            Assert.Equal(id, job.GetProperty("id").GetString());
            Assert.Equal("dead", job.GetProperty("state").GetString());
            var requeue = await app.Client.PostAsync($"/api/queues/{queue}/dead/{id}/requeue", null);
            Assert.True(requeue.StatusCode == HttpStatusCode.OK, $"requeue {id}: {(int)requeue.StatusCode}");
        }
        await Wait.UntilAsync(async () => (await Task.WhenAll(AllowedIds.Select(id => app.ProbeRunsAsync(id)))).All(runs => runs.Count == 2), "every requeued job ran again");
        await Wait.UntilAsync(async () => await DeadCountAsync(queue) == AllowedIds.Length, "every job died again");

        foreach (var id in AllowedIds)
        {
            var delete = await app.Client.DeleteAsync($"/api/queues/{queue}/dead/{id}");
            Assert.True(delete.StatusCode == HttpStatusCode.NoContent, $"delete {id}: {(int)delete.StatusCode}");
            Assert.Equal(HttpStatusCode.NotFound, (await app.Client.GetAsync($"/api/queues/{queue}/jobs/{id}")).StatusCode);
        }
        Assert.Equal(0, await DeadCountAsync(queue));
    }

    public static TheoryData<string, string> RefusedIds => new()
    {
        { "slash", "a/b" },
        { "question mark", "a?b" },
        { "hash", "a#b" },
        { "percent", "a%b" },
        { "an encoded slash", "a%2Fb" },
        { "space", "a b" },
        { "colon", "a:b" },
        { "plus", "a+b" },
        { "ampersand", "a&b" },
        { "backslash", "a\\\\b" },
        { "non-ASCII letter", "é" },
        { "tab", "a\\tb" },
        { "dot segment", "." },
        { "dot-dot segment", ".." },
        { "leading dot", ".a" },
        { "trailing dot", "a." },
        { "leading hyphen", "-a" },
        { "trailing tilde", "a~" },
        { "leading underscore", "_a" },
        { "empty", "" },
        { "129 characters", new string('x', 129) },
    };

    [Theory]
    [MemberData(nameof(RefusedIds))]
    public async Task An_id_outside_the_alphabet_is_a_validation_problem_and_stores_nothing(string what, string id)
    {
        var queue = TestRedis.UniqueQueue("ids");

        var single = await app.Client.PostAsync($"/api/queues/{queue}/jobs",
            ConveyorApp.Json($$"""{"type":"probe","payload":1,"id":"{{id}}"}"""));
        var batch = await app.Client.PostAsync($"/api/queues/{queue}/jobs/batch",
            ConveyorApp.Json($$"""{"jobs":[{"type":"probe","payload":1,"id":"fine"},{"type":"probe","payload":1,"id":"{{id}}"}]}"""));

        var problem = await BadInputTests.AssertProblemAsync(single, HttpStatusCode.BadRequest, "validation", what);
        Assert.Equal("id", problem.GetProperty("field").GetString());
        var batchProblem = await BadInputTests.AssertProblemAsync(batch, HttpStatusCode.BadRequest, "validation", what);
        Assert.Equal("jobs[1].id", batchProblem.GetProperty("field").GetString());
        var db = (await TestRedis.GetAsync()).GetDatabase();
        Assert.False(await db.KeyExistsAsync($"conveyor:{{{queue}}}:jobs"), what);
        Assert.False(await db.SetContainsAsync("conveyor:queues", queue), what);
    }

    private async Task<long> DeadCountAsync(string queue) =>
        (await app.Client.GetFromJsonAsync<JsonElement>($"/api/queues/{queue}")).GetProperty("dead").GetInt64();
}
