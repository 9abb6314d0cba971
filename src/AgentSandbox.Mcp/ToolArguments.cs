using System;
using System.Collections.Generic;
using System.Text.Json;

namespace AgentSandbox.Mcp
{
    /// <summary>
    /// A tool call's arguments, read with their types checked: the SDK does not check them against the
    /// input schema, and a wrong one must be an error the agent can act on, not a crash.
    /// </summary>
    internal sealed class ToolArguments
    {
        private readonly JsonElement _root;

        public ToolArguments(string json)
        {
            using var document = JsonDocument.Parse(string.IsNullOrWhiteSpace(json) ? "{}" : json);
            _root = document.RootElement.Clone();
            if (_root.ValueKind != JsonValueKind.Object) throw Invalid("(arguments)", "an object");
        }

        public string? String(string name, bool required = false)
        {
            if (!Get(name, required, out var v)) return null;
            return v.ValueKind == JsonValueKind.String ? v.GetString() : throw Invalid(name, "a string");
        }

        public string RequiredString(string name) => String(name, required: true)!;

        public long? Integer(string name, long min = long.MinValue, long max = long.MaxValue)
        {
            if (!Get(name, false, out var v)) return null;
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out var n)) throw Invalid(name, "an integer");
            if (n < min || n > max) throw Invalid(name, $"between {min} and {max}");
            return n;
        }

        public double? Number(string name)
        {
            if (!Get(name, false, out var v)) return null;
            return v.ValueKind == JsonValueKind.Number ? v.GetDouble() : throw Invalid(name, "a number");
        }

        public bool Bool(string name)
        {
            if (!Get(name, false, out var v)) return false;
            return v.ValueKind switch { JsonValueKind.True => true, JsonValueKind.False => false, _ => throw Invalid(name, "true or false") };
        }

        public List<string> StringList(string name)
        {
            var list = new List<string>();
            if (!Get(name, false, out var v)) return list;
            if (v.ValueKind != JsonValueKind.Array) throw Invalid(name, "an array of strings");
            foreach (var item in v.EnumerateArray())
                list.Add(item.ValueKind == JsonValueKind.String ? item.GetString()! : throw Invalid(name, "an array of strings"));
            return list;
        }

        public Dictionary<string, string> StringMap(string name)
        {
            var map = new Dictionary<string, string>(StringComparer.Ordinal);
            if (!Get(name, false, out var v)) return map;
            if (v.ValueKind != JsonValueKind.Object) throw Invalid(name, "an object of strings");
            foreach (var p in v.EnumerateObject())
                map[p.Name] = p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()! : throw Invalid(name + "." + p.Name, "a string");
            return map;
        }

        /// <summary>An array of objects, each read as arguments of its own.</summary>
        public List<ToolArguments> ObjectList(string name)
        {
            var list = new List<ToolArguments>();
            if (!Get(name, false, out var v)) return list;
            if (v.ValueKind != JsonValueKind.Array) throw Invalid(name, "an array of objects");
            foreach (var item in v.EnumerateArray())
                list.Add(item.ValueKind == JsonValueKind.Object ? new ToolArguments(item.GetRawText()) : throw Invalid(name, "an array of objects"));
            return list;
        }

        public T? Enum<T>(string name) where T : struct, System.Enum
        {
            var text = String(name);
            if (text == null) return null;
            return System.Enum.TryParse<T>(text, ignoreCase: true, out var value) && System.Enum.IsDefined(value)
                ? value
                : throw Invalid(name, "one of " + string.Join(", ", System.Enum.GetNames<T>()));
        }

        private bool Get(string name, bool required, out JsonElement value)
        {
            if (_root.TryGetProperty(name, out value) && value.ValueKind != JsonValueKind.Null) return true;
            if (required) throw new SandboxException(ToolErrors.InvalidToolArgument, SandboxErrorKind.InvalidArgument, $"The argument '{name}' is required.", name);
            return false;
        }

        private static SandboxException Invalid(string name, string what) =>
            new SandboxException(ToolErrors.InvalidToolArgument, SandboxErrorKind.InvalidArgument, $"The argument '{name}' must be {what}.", name);
    }

    /// <summary>The ErrorIds of the server's own: what only a tool call can get wrong.</summary>
    internal static class ToolErrors
    {
        public const string InvalidToolArgument = "InvalidToolArgument";
    }
}
