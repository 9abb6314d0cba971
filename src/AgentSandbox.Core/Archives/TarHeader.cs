using System;

namespace AgentSandbox.Archives
{
    /// <summary>
    /// One entry as a host's file system gives it: names as bytes (a Linux name need not be UTF-8) and
    /// the kinds only a host tree has (devices, FIFOs). TarWriter writes TarEntry through one of these.
    /// </summary>
    internal sealed class TarHeader
    {
        /// <summary>The path inside the archive, '/'-separated; a directory's ends with '/'.</summary>
        public byte[] Name { get; set; } = new byte[0];
        /// <summary>The ustar type flag: '0' file, '1' hard link, '2' symbolic link, '3' and '4' devices, '5' directory, '6' FIFO.</summary>
        public char Type { get; set; }
        public int Mode { get; set; }
        public long Uid { get; set; }
        public long Gid { get; set; }
        /// <summary>Seconds from 1970.</summary>
        public long Mtime { get; set; }
        /// <summary>Bytes of content; files only.</summary>
        public long Size { get; set; }
        public byte[] LinkName { get; set; } = new byte[0];
        public int DeviceMajor { get; set; }
        public int DeviceMinor { get; set; }

        public bool IsLink => Type == '1' || Type == '2';
        public bool IsDevice => Type == '3' || Type == '4';

        /// <summary>Seconds from 1970 of a time, rounded down.</summary>
        public static long Seconds(DateTime utc) => (long)Math.Floor((utc.ToUniversalTime() - TarFormat.Epoch).TotalSeconds);
    }
}
