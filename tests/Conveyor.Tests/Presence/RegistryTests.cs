using System.Security.Cryptography;
using System.Text;
using Conveyor.Presence;
using Conveyor.Storage;
using Conveyor.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;

namespace Conveyor.Tests.Presence;

[Collection(PresenceCollection.Name)]
public sealed class RegistryTests(PresenceDatabase fixture) : IClassFixture<PresenceDatabase>
{
    [Fact]
    public async Task Register_returns_a_token_once_and_stores_only_its_sha256()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);

        var runtime = await host.Registry.RegisterAsync("  build-agent-7 ", """{"os":"linux","cores":2}""");

        Assert.Equal("build-agent-7", runtime.Name);
        Assert.Equal(32, Convert.FromBase64String(runtime.Token.Replace('-', '+').Replace('_', '/') + "=").Length);
        var stored = await host.Database.ScalarAsync<string>("SELECT token_hash FROM runtimes WHERE id = $1", runtime.Id);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(runtime.Token))), stored);
        Assert.Equal(0L, await host.Database.ScalarAsync<long>(
            "SELECT count(*) FROM runtimes WHERE position($1 in concat_ws(' ', name, metadata::text, token_hash)) > 0", runtime.Token));
        var info = await host.Registry.GetAsync(runtime.Id.ToString());
        Assert.Equal(new RuntimeInfo(runtime.Id, "build-agent-7", RuntimeStatus.Offline, null, runtime.CreatedAt, info!.Metadata), info);
        Assert.Equal("linux", System.Text.Json.JsonDocument.Parse(info.Metadata).RootElement.GetProperty("os").GetString());
        Assert.NotEqual(runtime.Token, (await host.Registry.RegisterAsync("other")).Token);
    }

    [Fact]
    public async Task Get_shows_a_buffered_beat_newer_than_postgres()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        var runtime = await host.OnlineRuntimeAsync();
        await Task.Delay(5);
        var beat = await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token);

        var info = await host.Registry.GetAsync(runtime.Id.ToString());

        Assert.Equal(RuntimeStatus.Online, info!.Status);
        Assert.Equal(beat.SeenAt, info.LastSeenAt);
        Assert.True(info.LastSeenAt > await host.LastSeenAtAsync(runtime.Id));
        Assert.Null(await host.Registry.GetAsync(Guid.NewGuid().ToString()));
    }

    [Fact]
    public async Task List_filters_by_status_and_pages_in_id_order()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        var online = await host.OnlineRuntimesAsync(3);
        var offline = new List<RegisteredRuntime>();
        for (var i = 0; i < 2; i++)
        {
            offline.Add(await host.Registry.RegisterAsync($"idle-{i}"));
        }

        var pages = new List<RuntimePage>();
        string? after = null;
        do
        {
            pages.Add(await host.Registry.ListAsync(after: after, limit: 2));
            after = pages[^1].Next;
        }
        while (after is not null);
        var onlineOnly = await host.Registry.ListAsync(RuntimeStatus.Online);
        var offlineOnly = await host.Registry.ListAsync(RuntimeStatus.Offline);

        Assert.Equal([2, 2, 1], pages.Select(p => p.Items.Count));
        var all = pages.SelectMany(p => p.Items).Select(r => r.Id).ToList();
        Assert.Equal(online.Concat(offline).Select(r => r.Id).Order(), all.Order());
        Assert.Equal(all.Select(id => id.ToString()).Order(StringComparer.Ordinal), all.Select(id => id.ToString()));
        Assert.Equal(online.Select(r => r.Id).Order(), onlineOnly.Items.Select(r => r.Id).Order());
        Assert.All(onlineOnly.Items, r => Assert.Equal(RuntimeStatus.Online, r.Status));
        Assert.Equal(offline.Select(r => r.Id).Order(), offlineOnly.Items.Select(r => r.Id).Order());
        Assert.Null(onlineOnly.Next);
    }

    [Fact]
    public async Task Delete_removes_the_row_and_its_presence_in_redis()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);
        var runtime = await host.OnlineRuntimeAsync();
        await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token);

        Assert.True(await host.Registry.DeleteAsync(runtime.Id.ToString()));

        Assert.Null(await host.Registry.GetAsync(runtime.Id.ToString()));
        Assert.False(await host.KnownOnlineAsync(runtime.Id));
        Assert.Null(await host.BufferedAsync(runtime.Id));
        Assert.Equal(BeatOutcome.NotFound, (await host.Heartbeats.BeatAsync(runtime.Id.ToString(), runtime.Token)).Outcome);
        Assert.False(await host.Registry.DeleteAsync(runtime.Id.ToString()));
    }

    public static TheoryData<string, string?, string> BadRegistrations => new()
    {
        { "", null, "name" },
        { "   ", null, "name" },
        { new string('n', 201), null, "name" },
        { "tab\there", null, "name" },
        { "ok", "[1,2]", "metadata" },
        { "ok", "{not json", "metadata" },
        { "ok", "\"text\"", "metadata" },
        { "ok", "{\"x\":\"" + new string('m', 17 * 1024) + "\"}", "metadata" },
    };

    [Theory]
    [MemberData(nameof(BadRegistrations))]
    public async Task Invalid_registration_throws_naming_the_field_and_writes_nothing(string name, string? metadata, string field)
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);

        var error = await Assert.ThrowsAsync<ConveyorValidationException>(() => host.Registry.RegisterAsync(name, metadata));

        Assert.Equal(field, error.Field);
        Assert.Equal(0L, await host.Database.ScalarAsync<long>("SELECT count(*) FROM runtimes"));
    }

    [Fact]
    public async Task Malformed_ids_and_page_sizes_throw_naming_the_field()
    {
        await using var host = await PresenceHost.StartAsync(fixture.Database);

        Assert.Equal("id", (await Assert.ThrowsAsync<ConveyorValidationException>(() => host.Registry.GetAsync("nope"))).Field);
        Assert.Equal("id", (await Assert.ThrowsAsync<ConveyorValidationException>(() => host.Registry.DeleteAsync("nope"))).Field);
        Assert.Equal("after", (await Assert.ThrowsAsync<ConveyorValidationException>(() => host.Registry.ListAsync(after: "nope"))).Field);
        Assert.Equal("limit", (await Assert.ThrowsAsync<ConveyorValidationException>(() => host.Registry.ListAsync(limit: 0))).Field);
        Assert.Equal("limit", (await Assert.ThrowsAsync<ConveyorValidationException>(() => host.Registry.ListAsync(limit: 1001))).Field);
    }

    [Fact]
    public async Task Migrations_are_versioned_idempotent_and_keep_last_seen_at_out_of_every_index()
    {
        var migrator = new SchemaMigrator(fixture.Database.DataSource, NullLogger<SchemaMigrator>.Instance);

        Assert.Empty(await migrator.MigrateAsync());
        var status = await migrator.CheckAsync();

        Assert.True(status.Matches);
        Assert.Equal(1L, await fixture.Database.ScalarAsync<long>("SELECT count(*) FROM schema_versions WHERE scriptname LIKE '%0001_runtimes.sql'"));
        Assert.Contains("fillfactor=70", await fixture.Database.ScalarAsync<string[]>("SELECT reloptions FROM pg_class WHERE relname = 'runtimes'"));
        // HOT: an update that changes no indexed column (key, expression or predicate) needs no index entry.
        Assert.Equal(0L, await fixture.Database.ScalarAsync<long>("""
            SELECT count(*) FROM pg_indexes
            WHERE tablename = 'runtimes' AND indexdef ILIKE '%last_seen_at%'
            """));
        var check = await Assert.ThrowsAsync<Npgsql.PostgresException>(() =>
            fixture.Database.ExecuteAsync("INSERT INTO runtimes (id, name, status, token_hash) VALUES (gen_random_uuid(), 'x', 'away', repeat('a', 64))"));
        Assert.Equal("runtimes_status_check", check.ConstraintName);
        // The flush re-evaluates every table CHECK on every row it writes; status's is the only one left.
        Assert.Equal(["runtimes_status_check"], await fixture.Database.ScalarAsync<string[]>(
            "SELECT array_agg(conname::text) FROM pg_constraint WHERE conrelid = 'runtimes'::regclass AND contype = 'c'"));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(201)]
    public async Task The_name_domain_rejects_an_empty_or_overlong_name_also_on_update(int length)
    {
        var id = Guid.NewGuid();
        await fixture.Database.ExecuteAsync("INSERT INTO runtimes (id, name, token_hash) VALUES ($1, $2, repeat('a', 64))", id, new string('n', 200));

        var insert = await Assert.ThrowsAsync<Npgsql.PostgresException>(() =>
            fixture.Database.ExecuteAsync("INSERT INTO runtimes (id, name, token_hash) VALUES (gen_random_uuid(), $1, repeat('a', 64))", new string('n', length)));
        var update = await Assert.ThrowsAsync<Npgsql.PostgresException>(() =>
            fixture.Database.ExecuteAsync("UPDATE runtimes SET name = $2 WHERE id = $1", id, new string('n', length)));

        Assert.Equal("runtime_name_length", insert.ConstraintName);
        Assert.Equal("runtime_name_length", update.ConstraintName);
        Assert.Equal(new string('n', 200), await fixture.Database.ScalarAsync<string>("SELECT name FROM runtimes WHERE id = $1", id));
    }

    [Theory]
    [InlineData(63, 'a')]
    [InlineData(65, 'a')]
    [InlineData(64, 'A')] // uppercase hex is not what RuntimeCredentials writes
    [InlineData(64, 'g')]
    public async Task The_token_hash_check_accepts_only_64_lowercase_hex_characters(int length, char character)
    {
        await fixture.Database.ExecuteAsync("INSERT INTO runtimes (id, name, token_hash) VALUES (gen_random_uuid(), 'ok', $1)", new string('0', 63) + "f");

        var check = await Assert.ThrowsAsync<Npgsql.PostgresException>(() =>
            fixture.Database.ExecuteAsync("INSERT INTO runtimes (id, name, token_hash) VALUES (gen_random_uuid(), 'x', $1)", new string(character, length)));

        Assert.Equal("sha256_hex_format", check.ConstraintName);
    }
}
