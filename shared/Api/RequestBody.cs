using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using System.Text.Unicode;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Conveyor.Api;

/// <summary>Reads a JSON body with the checks every route shares: media type, size cap, UTF-8, strict JSON.</summary>
internal static class RequestBody
{
    public static async Task<(T? Value, ProblemHttpResult? Problem)> ReadAsync<T>(
        HttpRequest request, JsonTypeInfo<T> type, int maxBytes, CancellationToken cancellationToken)
        where T : class
    {
        if (!request.HasJsonContentType())
        {
            return (null, Problems.UnsupportedMediaType(request.ContentType));
        }
        if (request.ContentLength > maxBytes)
        {
            return (null, Problems.PayloadTooLarge(maxBytes));
        }
        // Content-Length may be absent (chunked): read at most one byte past the cap to know.
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, cancellationToken)) > 0)
        {
            if (buffer.Length + read > maxBytes)
            {
                return (null, Problems.PayloadTooLarge(maxBytes));
            }
            buffer.Write(chunk, 0, read);
        }
        var body = buffer.GetBuffer().AsSpan(0, (int)buffer.Length);
        // JSON text is UTF-8 (RFC 8259). The parser checks structure, not the bytes inside strings: a payload
        // with invalid bytes would parse, then fail to transcode far later.
        if (!Utf8.IsValid(body))
        {
            return (null, Problems.MalformedJson($"The body is not valid UTF-8 (first invalid byte at offset {FirstInvalidUtf8(body)})"));
        }
        try
        {
            var value = JsonSerializer.Deserialize(body, type);
            return value is null ? (null, Problems.MalformedJson("The body is null")) : (value, null);
        }
        catch (JsonException ex)
        {
            return (null, Problems.MalformedJson(ex.Message));
        }
    }

    private static int FirstInvalidUtf8(ReadOnlySpan<byte> text)
    {
        var offset = 0;
        while (Rune.DecodeFromUtf8(text[offset..], out _, out var consumed) == OperationStatus.Done)
        {
            offset += consumed;
        }
        return offset;
    }
}
