using System.Net;
using System.Text.Json;

namespace Conveyor.Client;

/// <summary>
/// The server answered with an error: its RFC 9457 problem details. <see cref="Type"/> is stable
/// (<c>urn:conveyor:problem:validation</c>, <c>…:not-found</c>, <c>…:unauthorized</c>, <c>…:runtime-offline</c>,
/// <c>…:unavailable</c>, …); see the server's README for the list.
/// </summary>
public sealed class ConveyorProblemException : Exception
{
    public ConveyorProblemException(HttpStatusCode status, string type, string? title, string? detail, JsonElement problem)
        : base($"{(int)status} {type}: {detail ?? title}")
    {
        Status = status;
        Type = type;
        Title = title;
        Detail = detail;
        Problem = problem;
    }

    /// <summary>The HTTP status.</summary>
    public HttpStatusCode Status { get; }

    /// <summary>The problem type, a stable URN (<c>about:blank</c> when the answer was not problem JSON).</summary>
    public string Type { get; }

    /// <summary>The problem's short title.</summary>
    public string? Title { get; }

    /// <summary>What went wrong, for people.</summary>
    public string? Detail { get; }

    /// <summary>The whole problem object, extensions included (<c>field</c>, <c>ids</c>, <c>traceId</c>).</summary>
    public JsonElement Problem { get; }

    /// <summary>For <c>validation</c>: the offending field (<c>jobs[3].payload</c>, <c>max</c>).</summary>
    public string? Field => Extension("field");

    /// <summary>For a 503 on enqueue: the id of every job of the request, in request order; retrying with them adds no job twice.</summary>
    public IReadOnlyList<string>? Ids =>
        Problem.ValueKind == JsonValueKind.Object && Problem.TryGetProperty("ids", out var ids) && ids.ValueKind == JsonValueKind.Array
            ? [.. ids.EnumerateArray().Select(i => i.GetString()!)]
            : null;

    private string? Extension(string name) =>
        Problem.ValueKind == JsonValueKind.Object && Problem.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : null;

    internal static async Task<ConveyorProblemException> ReadAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        JsonElement problem = default;
        try
        {
            problem = JsonDocument.Parse(text).RootElement.Clone();
        }
        catch (JsonException)
        {
            // Not JSON (a proxy's page, the Functions host's own answer): keep the text as the detail.
        }
        string? Text(string name) =>
            problem.ValueKind == JsonValueKind.Object && problem.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String
                ? value.GetString()
                : null;
        return new ConveyorProblemException(
            response.StatusCode, Text("type") ?? "about:blank", Text("title") ?? response.ReasonPhrase,
            Text("detail") ?? (problem.ValueKind == JsonValueKind.Undefined && text.Length > 0 ? text[..Math.Min(text.Length, 500)] : null), problem);
    }
}
