using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace AgentSandbox.Guest
{
    /// <summary>Frame kinds of the guest agent's protocol (src/guest-agent/protocol.h, which must say the same).</summary>
    internal enum AgentFrameKind : byte
    {
        Hello = 0x01, Exec = 0x02, Stdin = 0x03, Signal = 0x04, Ping = 0x05, Configure = 0x06,
        Welcome = 0x81, Started = 0x82, Stdout = 0x83, Stderr = 0x84, Exited = 0x85, Failed = 0x86, Pong = 0x87,
    }

    /// <summary>One frame: its kind, the command it belongs to (0: the agent), its payload.</summary>
    internal sealed class AgentFrame
    {
        public const int MaxSize = 1 << 20;
        public const uint ProtocolVersion = 1;
        public const uint ExecWithStdin = 1;

        public AgentFrame(AgentFrameKind kind, uint id, byte[] payload) { Kind = kind; Id = id; Payload = payload; }

        public AgentFrameKind Kind { get; }
        public uint Id { get; }
        public byte[] Payload { get; }

        /// <summary>u32 length, u8 kind, u32 id, payload; little-endian.</summary>
        public byte[] ToBytes()
        {
            var bytes = new byte[9 + Payload.Length];
            WriteU32(bytes, 0, (uint)(5 + Payload.Length));
            bytes[4] = (byte)Kind;
            WriteU32(bytes, 5, Id);
            Payload.CopyTo(bytes, 9);
            return bytes;
        }

        /// <summary>The next frame, or null at the stream's end; a frame cut short or too long is an IOException.</summary>
        public static AgentFrame? Read(Stream stream)
        {
            var header = new byte[9];
            if (!ReadExactly(stream, header, allowEnd: true)) return null;
            var length = BitConverter.ToUInt32(header, 0);
            if (length < 5 || length > MaxSize) throw new IOException($"The guest agent sent a frame of {length} bytes: the stream is broken.");
            var payload = new byte[length - 5];
            ReadExactly(stream, payload, allowEnd: false);
            return new AgentFrame((AgentFrameKind)header[4], BitConverter.ToUInt32(header, 5), payload);
        }

        private static bool ReadExactly(Stream stream, byte[] buffer, bool allowEnd)
        {
            int at = 0;
            while (at < buffer.Length)
            {
                int n = stream.Read(buffer, at, buffer.Length - at);
                if (n == 0)
                {
                    if (at == 0 && allowEnd) return false;
                    throw new EndOfStreamException("The guest agent's stream ended inside a frame.");
                }
                at += n;
            }
            return true;
        }

        private static void WriteU32(byte[] buffer, int at, uint value)
        {
            buffer[at] = (byte)value; buffer[at + 1] = (byte)(value >> 8); buffer[at + 2] = (byte)(value >> 16); buffer[at + 3] = (byte)(value >> 24);
        }

        /// <summary>An exec frame: flags, user, groups, working directory, exact argv, exact environment.</summary>
        public static AgentFrame Exec(uint id, IReadOnlyList<string> argv, IReadOnlyList<string> environment, string workingDirectory,
            uint uid, uint gid, IReadOnlyList<uint> groups, bool stdin)
        {
            var p = new PayloadWriter();
            p.U32(stdin ? ExecWithStdin : 0).U32(uid).U32(gid).U32((uint)groups.Count);
            foreach (var g in groups) p.U32(g);
            p.Str(workingDirectory).U32((uint)argv.Count);
            foreach (var a in argv) p.Str(a);
            p.U32((uint)environment.Count);
            foreach (var e in environment) p.Str(e);
            return new AgentFrame(AgentFrameKind.Exec, id, p.ToArray());
        }

        public static AgentFrame Hello() => new AgentFrame(AgentFrameKind.Hello, 0, new PayloadWriter().U32(ProtocolVersion).ToArray());

        public static AgentFrame Signal(uint id, int signal) => new AgentFrame(AgentFrameKind.Signal, id, new PayloadWriter().U32((uint)signal).ToArray());

        public static AgentFrame Stdin(uint id, byte[] data) => new AgentFrame(AgentFrameKind.Stdin, id, data);

        /// <summary>A resumed guest made this one: host name, time, process limit ("max" or a number), entropy (at most 512 bytes).</summary>
        public static AgentFrame Configure(uint id, string hostname, long unixSeconds, string processLimit, byte[] entropy)
        {
            var p = new PayloadWriter().Str(hostname).U32((uint)unixSeconds).U32((uint)(unixSeconds >> 32)).Str(processLimit);
            var head = p.ToArray();
            var payload = new byte[head.Length + entropy.Length];
            Array.Copy(head, payload, head.Length);
            Array.Copy(entropy, 0, payload, head.Length, entropy.Length);
            return new AgentFrame(AgentFrameKind.Configure, id, payload);
        }

        public uint U32At(int offset) => BitConverter.ToUInt32(Payload, offset);

        /// <summary>A string at the offset (u32 length and its UTF-8 bytes).</summary>
        public string StrAt(int offset) => Encoding.UTF8.GetString(Payload, offset + 4, (int)U32At(offset));

        private sealed class PayloadWriter
        {
            private readonly MemoryStream _bytes = new MemoryStream();

            public PayloadWriter U32(uint v)
            {
                _bytes.WriteByte((byte)v); _bytes.WriteByte((byte)(v >> 8)); _bytes.WriteByte((byte)(v >> 16)); _bytes.WriteByte((byte)(v >> 24));
                return this;
            }

            public PayloadWriter Str(string s)
            {
                if (s.IndexOf('\0') >= 0) throw new ArgumentException("A string for the guest agent holds a NUL character.", nameof(s));
                var b = Encoding.UTF8.GetBytes(s);
                U32((uint)b.Length);
                _bytes.Write(b, 0, b.Length);
                return this;
            }

            public byte[] ToArray() => _bytes.ToArray();
        }
    }
}
