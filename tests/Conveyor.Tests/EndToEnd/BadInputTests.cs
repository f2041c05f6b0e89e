using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Conveyor.Tests.Infrastructure;

namespace Conveyor.Tests.EndToEnd;

/// <summary>Bad input on the self-host.</summary>
public sealed class BadInputOnSelfHost(SelfHostApp app) : BadInputTests(app), IClassFixture<SelfHostApp>;

#if !FUNCTIONS_STANDIN
/// <summary>Bad input on the real Functions worker.</summary>
public sealed class BadInputOnFunctions(FunctionsWorkerApp app) : BadInputTests(app), IClassFixture<FunctionsWorkerApp>;
#endif

/// <summary>
/// Input a hostile or careless client sends, on both hosts (a subclass per host above): each gets a 4xx problem and
/// changes nothing (no job, no queue, no row). Everything goes through the HttpClient; the "nothing changed" checks
/// read Redis and PostgreSQL directly.
/// </summary>
public abstract class BadInputTests(ConveyorApp app)
{
    private static readonly byte[] InvalidUtf8 = [0xC3, 0x28, 0xFF];

    /// <summary>A JSON body whose text is <paramref name="before"/>, three bytes that are not UTF-8, then <paramref name="after"/>.</summary>
    private static ByteArrayContent BodyWithInvalidUtf8(string before, string after)
    {
        var content = new ByteArrayContent([.. Encoding.UTF8.GetBytes(before), .. InvalidUtf8, .. Encoding.UTF8.GetBytes(after)]);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        return content;
    }

    internal static async Task<JsonElement> AssertProblemAsync(HttpResponseMessage response, HttpStatusCode status, string type, string what = "")
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"{what}: expected {(int)status}, got {(int)response.StatusCode} {text}");
        Assert.True(response.Content.Headers.ContentType?.MediaType == "application/problem+json", $"{what}: content type {response.Content.Headers.ContentType} body '{text}'");
        var problem = JsonDocument.Parse(text).RootElement;
        Assert.Equal($"urn:conveyor:problem:{type}", problem.GetProperty("type").GetString());
        Assert.Equal((int)status, problem.GetProperty("status").GetInt32());
        Assert.False(string.IsNullOrEmpty(problem.GetProperty("title").GetString()), what);
        return problem;
    }

    private static async Task AssertQueueUntouchedAsync(string queue, string what)
    {
        var db = (await TestRedis.GetAsync()).GetDatabase();
        Assert.False(await db.KeyExistsAsync($"conveyor:{{{queue}}}:jobs"), $"{what}: a job was stored");
        Assert.False(await db.SetContainsAsync("conveyor:queues", queue), $"{what}: the queue was registered");
    }

    private Task<long> RuntimeRowsAsync() => app.Database.ScalarAsync<long>("SELECT count(*) FROM runtimes");

    /// <summary>The tests of a class run one at a time, so no other request adds a row meanwhile.</summary>
    private async Task AssertNoRuntimeAddedAsync(long before, string what) =>
        Assert.True(await RuntimeRowsAsync() == before, $"{what}: a runtime row was written");

    public static TheoryData<string, string, string, string> InvalidUtf8Jobs => new()
    {
        { "inside a payload string", "jobs", """{"type":"probe","payload":{"note":"a""", """b"}}""" },
        { "inside a payload key", "jobs", """{"type":"probe","payload":{"ke""", """y":1}}""" },
        { "inside the second job of a batch", "jobs/batch", """{"jobs":[{"type":"probe","payload":1},{"type":"probe","payload":"x""", """y"}]}""" },
        { "inside the job type", "jobs", """{"type":"pro""", """be","payload":1}""" },
    };

    [Theory]
    [MemberData(nameof(InvalidUtf8Jobs))]
    public async Task A_job_body_that_is_not_UTF8_is_a_malformed_json_problem_and_stores_nothing(string what, string route, string before, string after)
    {
        var queue = TestRedis.UniqueQueue("bad");

        var response = await app.Client.PostAsync($"/api/queues/{queue}/{route}", BodyWithInvalidUtf8(before, after));

        var problem = await AssertProblemAsync(response, HttpStatusCode.BadRequest, "malformed-json", what);
        Assert.Contains("UTF-8", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        await AssertQueueUntouchedAsync(queue, what);
    }

    [Fact]
    public async Task Runtime_metadata_that_is_not_UTF8_is_a_malformed_json_problem_and_writes_no_row()
    {
        var before = await RuntimeRowsAsync();

        var inValue = await app.Client.PostAsync("/api/runtimes", BodyWithInvalidUtf8("""{"name":"agent","metadata":{"zone":"e""", """u"}}"""));
        var inKey = await app.Client.PostAsync("/api/runtimes", BodyWithInvalidUtf8("""{"name":"agent","metadata":{"z""", """one":1}}"""));

        await AssertProblemAsync(inValue, HttpStatusCode.BadRequest, "malformed-json", "in a value");
        await AssertProblemAsync(inKey, HttpStatusCode.BadRequest, "malformed-json", "in a key");
        await AssertNoRuntimeAddedAsync(before, "invalid UTF-8 metadata");
    }

    public static TheoryData<string, string> MetadataPostgresRefuses => new()
    {
        { "NUL in a value", """{"name":"agent","metadata":{"zone":"eu\u0000"}}""" },
        { "NUL in a key", """{"name":"agent","metadata":{"z\u0000":"eu"}}""" },
        { "lone high surrogate in a value", """{"name":"agent","metadata":{"zone":"\ud800"}}""" },
        { "lone low surrogate in a nested key", """{"name":"agent","metadata":{"a":[{"\udc00x":1}]}}""" },
        { "surrogates in the wrong order", """{"name":"agent","metadata":{"zone":"\udc00\ud800"}}""" },
        { "a duplicate key", """{"name":"agent","metadata":{"zone":"eu","zone":"us"}}""" },
        { "a number beyond numeric's range", """{"name":"agent","metadata":{"big":1e1000000}}""" },
        { "a number below numeric's scale", """{"name":"agent","metadata":{"small":1e-20000}}""" },
    };

    [Theory]
    [MemberData(nameof(MetadataPostgresRefuses))]
    public async Task Runtime_metadata_that_PostgreSQL_would_refuse_is_a_problem_and_writes_no_row(string what, string body)
    {
        var before = await RuntimeRowsAsync();

        var response = await app.Client.PostAsync("/api/runtimes", ConveyorApp.Json(body));

        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{what}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        await AssertNoRuntimeAddedAsync(before, what);
    }

    [Fact]
    public async Task Runtime_metadata_with_escaped_text_PostgreSQL_accepts_is_stored_as_sent()
    {
        var before = await RuntimeRowsAsync();

        var response = await app.Client.PostAsync("/api/runtimes",
            ConveyorApp.Json("""{"name":"agent","metadata":{"emoji":"\ud83d\ude00","tab":"a\tb","quote":"\"","e":"é"}}"""));

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var id = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString();
        var metadata = (await app.Client.GetFromJsonAsync<JsonElement>($"/api/runtimes/{id}")).GetProperty("metadata");
        Assert.Equal("\U0001F600", metadata.GetProperty("emoji").GetString());
        Assert.Equal("a\tb", metadata.GetProperty("tab").GetString());
        Assert.Equal("é", metadata.GetProperty("e").GetString());
        Assert.Equal(before + 1, await RuntimeRowsAsync());
    }

    public static TheoryData<string, string, string, string> NullJobs => new()
    {
        { "jobs is null", """{"jobs":null}""", "malformed-json", "" },
        { "a null job", """{"jobs":[null]}""", "validation", "jobs[0]" },
        { "a null job after a good one", """{"jobs":[{"type":"probe","payload":1},null]}""", "validation", "jobs[1]" },
        { "a job that is a number", """{"jobs":[5]}""", "malformed-json", "" },
    };

    [Theory]
    [MemberData(nameof(NullJobs))]
    public async Task A_batch_with_null_jobs_is_a_problem_and_stores_nothing(string what, string body, string type, string field)
    {
        var queue = TestRedis.UniqueQueue("bad");

        var response = await app.Client.PostAsync($"/api/queues/{queue}/jobs/batch", ConveyorApp.Json(body));

        var problem = await AssertProblemAsync(response, HttpStatusCode.BadRequest, type, what);
        if (field.Length > 0)
        {
            Assert.Equal(field, problem.GetProperty("field").GetString());
        }
        await AssertQueueUntouchedAsync(queue, what);
    }

    public static TheoryData<string, string, string> NotStrictJson => new()
    {
        { "PascalCase property", "jobs", """{"Type":"probe","payload":1}""" },
        { "upper-case property", "jobs", """{"type":"probe","PAYLOAD":1}""" },
        { "duplicate property", "jobs", """{"type":"probe","type":"other","payload":1}""" },
        { "duplicate property, same value", "jobs", """{"type":"probe","payload":1,"payload":1}""" },
        { "duplicate key inside the payload", "jobs", """{"type":"probe","payload":{"amount":1,"amount":1000}}""" },
        { "PascalCase property in a batch item", "jobs/batch", """{"jobs":[{"type":"probe","Payload":1}]}""" },
        { "duplicate jobs property", "jobs/batch", """{"jobs":[{"type":"probe","payload":1}],"jobs":[]}""" },
        { "PascalCase batch property", "jobs/batch", """{"Jobs":[{"type":"probe","payload":1}]}""" },
    };

    [Theory]
    [MemberData(nameof(NotStrictJson))]
    public async Task Job_json_must_use_exact_camelCase_names_once_each(string what, string route, string body)
    {
        var queue = TestRedis.UniqueQueue("bad");

        var response = await app.Client.PostAsync($"/api/queues/{queue}/{route}", ConveyorApp.Json(body));

        await AssertProblemAsync(response, HttpStatusCode.BadRequest, "malformed-json", what);
        await AssertQueueUntouchedAsync(queue, what);
    }

    [Theory]
    [InlineData("PascalCase name", """{"Name":"agent"}""")]
    [InlineData("duplicate name", """{"name":"agent","name":"other"}""")]
    [InlineData("PascalCase metadata", """{"name":"agent","Metadata":{}}""")]
    public async Task Runtime_json_must_use_exact_camelCase_names_once_each(string what, string body)
    {
        var before = await RuntimeRowsAsync();

        var response = await app.Client.PostAsync("/api/runtimes", ConveyorApp.Json(body));

        await AssertProblemAsync(response, HttpStatusCode.BadRequest, "malformed-json", what);
        await AssertNoRuntimeAddedAsync(before, what);
    }

    [Fact]
    public async Task A_heartbeat_without_a_usable_Authorization_header_says_what_is_wrong_and_changes_nothing()
    {
        var registered = await app.Client.PostAsync("/api/runtimes", ConveyorApp.Json("""{"name":"agent"}"""));
        var id = (await registered.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;

        async Task<string> DetailAsync(string? authorization, string what)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, $"/api/runtimes/{id}/heartbeat");
            if (authorization is not null)
            {
                request.Headers.TryAddWithoutValidation("Authorization", authorization);
            }
            var response = await app.Client.SendAsync(request);
            var problem = await AssertProblemAsync(response, HttpStatusCode.Unauthorized, "unauthorized", what);
            return problem.GetProperty("detail").GetString()!;
        }

        var missing = await DetailAsync(null, "no header");
        var basic = await DetailAsync("Basic dXNlcjpwYXNz", "another scheme");
        var empty = await DetailAsync("Bearer ", "no token after Bearer");
        var glued = await DetailAsync("Bearertoken", "no space after Bearer");
        var wrong = await DetailAsync("Bearer not-the-token", "a wrong token");

        Assert.Contains("no Authorization header", missing, StringComparison.Ordinal);
        Assert.All([basic, empty, glued], detail => Assert.Contains("Bearer <runtime token>", detail, StringComparison.Ordinal));
        Assert.Contains("not this runtime's token", wrong, StringComparison.Ordinal);
        Assert.Equal(3, new[] { missing, basic, wrong }.Distinct().Count());
        Assert.True(await app.Database.ScalarAsync<bool>("SELECT last_seen_at IS NULL AND status = 'offline' FROM runtimes WHERE id = $1", Guid.Parse(id)));
        var db = (await TestRedis.GetAsync()).GetDatabase();
        Assert.Null(await db.SortedSetScoreAsync("conveyor:{presence}:beats", id));
    }
}
