using System.Globalization;
using Microsoft.AspNetCore.Http;

namespace Conveyor.Api;

/// <summary><c>?page=</c> (from 1) and <c>?pageSize=</c> (1–1000, default 50).</summary>
internal static class Paging
{
    public const int DefaultPageSize = 50;
    public const int MaxPageSize = 1000;
    public const int MaxPage = 1_000_000;

    public static (int Page, int PageSize) Read(IQueryCollection query) =>
        (Number(query, "page", 1, 1, MaxPage), Number(query, "pageSize", DefaultPageSize, 1, MaxPageSize));

    private static int Number(IQueryCollection query, string name, int fallback, int min, int max)
    {
        if (!query.TryGetValue(name, out var values))
        {
            return fallback;
        }
        if (values.Count != 1 || !int.TryParse(values[0], NumberStyles.None, CultureInfo.InvariantCulture, out var value) || value < min || value > max)
        {
            throw new ConveyorValidationException(name, $"must be a whole number from {min} to {max}");
        }
        return value;
    }
}
