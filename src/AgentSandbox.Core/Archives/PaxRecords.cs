using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Text;

namespace AgentSandbox.Archives
{
    /// <summary>Pax extended header records: "LENGTH KEY=VALUE\n", where LENGTH counts the whole record in bytes.</summary>
    internal static class PaxRecords
    {
        /// <summary>
        /// Adds one header's records to those read before it: a later record wins, and an empty value
        /// removes the key (POSIX). Values stay bytes, so a name is decoded only once it is chosen.
        /// Returns what is wrong with the body, or null.
        /// </summary>
        public static string? Parse(byte[] body, Dictionary<string, byte[]> into)
        {
            int pos = 0;
            while (pos < body.Length)
            {
                int digits = pos;
                long length = 0;
                while (digits < body.Length && body[digits] >= '0' && body[digits] <= '9')
                {
                    if (length > (int.MaxValue - 9) / 10) return "a pax record claims an impossible length";
                    length = length * 10 + (body[digits] - '0');
                    digits++;
                }
                if (digits == pos || digits >= body.Length || body[digits] != ' ')
                    return "a pax record does not start with its length and a space";
                // The shortest record is "5 k=\n".
                if (length < 5 || length > body.Length - pos)
                    return $"a pax record claims {length} bytes where {body.Length - pos} remain";
                int end = pos + (int)length;
                if (body[end - 1] != '\n') return "a pax record does not end with a newline";
                int keyStart = digits + 1;
                int eq = Array.IndexOf(body, (byte)'=', keyStart, end - 1 - keyStart);
                if (eq < 0) return "a pax record has no '='";
                if (eq == keyStart) return "a pax record has an empty key";
                if (Array.IndexOf(body, (byte)0, keyStart, eq - keyStart) >= 0) return "a pax key holds a NUL byte";
                var key = Encoding.UTF8.GetString(body, keyStart, eq - keyStart);
                var value = new byte[end - 1 - (eq + 1)];
                Array.Copy(body, eq + 1, value, 0, value.Length);
                if (value.Length == 0) into.Remove(key);
                else into[key] = value;
                pos = end;
            }
            return null;
        }

        /// <summary>The body of a pax header holding these records; values are bytes, written as they are.</summary>
        public static byte[] Format(IEnumerable<KeyValuePair<string, byte[]>> records)
        {
            var all = new MemoryStream();
            foreach (var kv in records)
            {
                var key = Encoding.ASCII.GetBytes(" " + kv.Key + "=");
                var rest = new byte[key.Length + kv.Value.Length + 1];
                key.CopyTo(rest, 0);
                kv.Value.CopyTo(rest, key.Length);
                rest[rest.Length - 1] = (byte)'\n';
                // The length counts its own digits: grow it until it agrees with itself.
                int length = rest.Length + 1;
                while (length.ToString(CultureInfo.InvariantCulture).Length + rest.Length != length) length++;
                var prefix = Encoding.ASCII.GetBytes(length.ToString(CultureInfo.InvariantCulture));
                all.Write(prefix, 0, prefix.Length);
                all.Write(rest, 0, rest.Length);
            }
            return all.ToArray();
        }
    }
}
