using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;

namespace Conveyor.Tests.Infrastructure;

/// <summary>The runtime calls end-to-end tests make, on any host's client.</summary>
public static class RuntimesClient
{
    /// <summary>Registers a runtime (<paramref name="body"/> is the JSON request body) and returns its id and token.</summary>
    public static async Task<(string Id, string Token)> RegisterRuntimeAsync(this HttpClient client, string body)
    {
        var response = await client.PostAsync("/api/runtimes", SelfHostServer.Json(body));
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var registered = await response.Content.ReadFromJsonAsync<JsonElement>();
        return (registered.GetProperty("id").GetString()!, registered.GetProperty("token").GetString()!);
    }

    /// <summary>One heartbeat with the runtime's token.</summary>
    public static async Task<HttpResponseMessage> BeatAsync(this HttpClient client, string id, string token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"/api/runtimes/{id}/heartbeat");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return await client.SendAsync(request);
    }
}
