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

        private static DataContractJsonSerializer SerializerFor<T>() => new DataContractJsonSerializer(typeof(T), Settings);

        public static void Write(Stream stream, Sandbox sandbox) => Write<Sandbox>(stream, sandbox);

        public static Sandbox? Read(Stream stream) => Read<Sandbox>(stream);

        public static string ToText(Sandbox sandbox) => ToText<Sandbox>(sandbox);

        public static Sandbox? FromText(string text) => FromText<Sandbox>(text);

        public static void Write<T>(Stream stream, T record) where T : class => SerializerFor<T>().WriteObject(stream, record);

        /// <summary>
        /// Writes the record to a unique temporary file, flushes it to disk and renames it over
        /// <paramref name="path"/>: readers see the old record or the new one, never half of one.
        /// </summary>
        public static void WriteAtomically<T>(string path, T record, IStoreHost host) where T : class
        {
            var tmp = Path.Combine(Path.GetDirectoryName(path)!, $".{Path.GetFileName(path)}.{System.Environment.CurrentManagedThreadId}.{System.Guid.NewGuid():N}.tmp");
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write))
            {
                Write(fs, record);
                fs.Flush(true);
            }
            host.Replace(tmp, path);
        }

        /// <summary>
        /// The record, upgraded from an older format; a newer format than this version knows is refused
        /// (StateFormatUnsupported) before any of it is read.
        /// </summary>
        public static T? Read<T>(Stream stream) where T : class
        {
            using var all = new MemoryStream();
            stream.CopyTo(all);
            using var current = new MemoryStream(RecordFormat.ToCurrent(all.ToArray()), writable: false);
            return (T?)SerializerFor<T>().ReadObject(current);
        }

        public static string ToText<T>(T record) where T : class
        {
            using var ms = new MemoryStream();
            Write(ms, record);
            return Encoding.UTF8.GetString(ms.ToArray());
        }

        public static T? FromText<T>(string text) where T : class
        {
            using var ms = new MemoryStream(Encoding.UTF8.GetBytes(text));
            return Read<T>(ms);
        }
    }
}
