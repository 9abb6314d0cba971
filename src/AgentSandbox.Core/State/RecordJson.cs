using System.IO;
using System.Runtime.Serialization;
using System.Runtime.Serialization.Json;
using System.Text;

namespace AgentSandbox.State
{
    /// <summary>The one JSON form of a sandbox record, on disk and in container labels alike.</summary>
    internal static class RecordJson
    {
        private static readonly DataContractJsonSerializerSettings Settings = new DataContractJsonSerializerSettings
        {
            UseSimpleDictionaryFormat = true,
            DateTimeFormat = new DateTimeFormat("yyyy-MM-ddTHH:mm:ss.fffffffZ"),
        };

        private static DataContractJsonSerializer Serializer => new DataContractJsonSerializer(typeof(Sandbox), Settings);

        public static void Write(Stream stream, Sandbox sandbox) => Serializer.WriteObject(stream, sandbox);

        public static Sandbox? Read(Stream stream) => (Sandbox?)Serializer.ReadObject(stream);

        public static string ToText(Sandbox sandbox)
        {
            using var ms = new MemoryStream();
            Write(ms, sandbox);
            return Encoding.UTF8.GetString(ms.ToArray());
        }

        public static Sandbox? FromText(string text)
        {
            using var ms = new MemoryStream(Encoding.UTF8.GetBytes(text));
            return Read(ms);
        }
    }
}
