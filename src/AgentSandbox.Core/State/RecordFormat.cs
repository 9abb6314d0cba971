using System.IO;
using System.Runtime.Serialization;
using System.Runtime.Serialization.Json;

namespace AgentSandbox.State
{
    /// <summary>
    /// The version of the stored records' shape (sandbox and checkpoint records, on disk and in Docker
    /// labels), so that a record written by one version of the module is read right by the next, or
    /// refused, never misread: a reader ignores members it does not know, which would silently drop
    /// what a newer version meant by them. Records of the first release carry no Format: they are format 1.
    /// </summary>
    internal static class RecordFormat
    {
        /// <summary>The format this version writes. A change of shape raises it and adds the step from the previous one to Upgrades.</summary>
        public const int Current = 1;

        /// <summary>Upgrades[n - 1] turns a format-n record's JSON into format n+1's; reads apply them in turn.</summary>
        private static readonly System.Func<byte[], byte[]>[] Upgrades = new System.Func<byte[], byte[]>[Current - 1];

        [DataContract]
        private sealed class Probe
        {
            [DataMember(Name = "Format")] public int? Format { get; set; }
        }

        /// <summary>The record's format: its Format member, or 1 when it has none.</summary>
        public static int Of(byte[] json)
        {
            using var ms = new MemoryStream(json, writable: false);
            var probe = (Probe?)new DataContractJsonSerializer(typeof(Probe)).ReadObject(ms);
            var format = probe?.Format ?? 1;
            if (format < 1) throw new SerializationException($"its format {format} is not one any version writes");
            return format;
        }

        /// <summary>The record's JSON in the current format; refuses (StateFormatUnsupported) one of a newer format than this version reads.</summary>
        public static byte[] ToCurrent(byte[] json)
        {
            var format = Of(json);
            if (format > Current) throw TooNew(format);
            for (; format < Current; format++) json = Upgrades[format - 1](json);
            return json;
        }

        public static SandboxException TooNew(int format) => new SandboxException(ErrorIds.StateFormatUnsupported, SandboxErrorKind.NotAvailable,
            $"This record was written by a newer version of AgentSandbox (record format {format}; this version reads formats 1 to {Current}). " +
            "Use that version, or update the module (Update-PSResource AgentSandbox); this version leaves the sandbox as it is.", "");
    }
}
