using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;

namespace Conveyor.Presence;

/// <summary>Runtime ids and tokens: parsing, minting and hashing.</summary>
internal static class RuntimeCredentials
{
    /// <summary>Longest token hashed; anything longer cannot be one of ours.</summary>
    private const int MaxTokenLength = 256;

    /// <summary>Parses a runtime id; throws <see cref="ConveyorValidationException"/> naming <paramref name="field"/>.</summary>
    public static Guid ParseId(string? id, string field = "id") =>
        Guid.TryParse(id, out var parsed)
            ? parsed
            : throw new ConveyorValidationException(field, "must be a UUID");

    /// <summary>The form ids take in Redis (and in PostgreSQL's text output): lower-case, hyphenated.</summary>
    public static string Canonical(Guid id) => id.ToString("D");

    /// <summary>A new secret: 32 random bytes, base64url.</summary>
    public static string NewToken() => Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(32));

    /// <summary>SHA-256 hex of the token, or null when the token cannot be valid.</summary>
    public static string? Hash(string? token) =>
        string.IsNullOrEmpty(token) || token.Length > MaxTokenLength
            ? null
            : Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token)));

    /// <summary>Compares two hashes in time independent of where they differ.</summary>
    public static bool HashesMatch(string stored, string presented) =>
        CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(stored), Encoding.ASCII.GetBytes(presented));
}
