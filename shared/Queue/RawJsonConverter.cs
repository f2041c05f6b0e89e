using System.Text.Json;
using System.Text.Json.Serialization;

namespace Conveyor.Queue;

/// <summary>Writes a string that holds JSON text as that JSON value (a payload stays an object, not a quoted string).</summary>
internal sealed class RawJsonConverter : JsonConverter<string>
{
    public override string Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        using var document = JsonDocument.ParseValue(ref reader);
        return document.RootElement.GetRawText();
    }

    public override void Write(Utf8JsonWriter writer, string value, JsonSerializerOptions options) => writer.WriteRawValue(value);
}
