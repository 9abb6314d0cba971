// The core's Linux parts are what these tests exercise; they run on Linux only.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
