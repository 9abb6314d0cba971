using System;
using System.IO;
using System.Net;
using System.Net.Http;
using System.Net.Sockets;
using Docker.DotNet;

namespace AgentSandbox.Backends.Docker
{
    /// <summary>Turns the client library's exceptions into messages that say what happened and what to do.</summary>
    internal static class DockerErrors
    {
        public static string Describe(Exception e)
        {
            var inner = e;
            while (inner.InnerException != null && (inner is HttpRequestException || inner is AggregateException)) inner = inner.InnerException;
            return inner switch
            {
                DockerApiException api => $"the daemon answered {(int)api.StatusCode}: {Message(api)}",
                SocketException s => s.Message,
                IOException io => io.Message,
                TimeoutException _ => "no answer within 5 s",
                OperationCanceledException _ => "no answer within 5 s",
                _ => inner.Message,
            };
        }

        /// <summary>The daemon's own message from its JSON error body.</summary>
        public static string Message(DockerApiException e)
        {
            var body = e.ResponseBody ?? "";
            try { return Newtonsoft.Json.Linq.JObject.Parse(body).Value<string>("message") ?? body.Trim(); }
            catch (Newtonsoft.Json.JsonException) { return body.Trim(); }
        }

        public static bool IsNotFound(Exception e) =>
            e is DockerContainerNotFoundException || e is DockerImageNotFoundException ||
            (e is DockerApiException api && api.StatusCode == HttpStatusCode.NotFound);

        public static bool IsConflict(Exception e) => e is DockerApiException api && api.StatusCode == HttpStatusCode.Conflict;

        /// <summary>Wraps any failure of the daemon or the connection as a SandboxException.</summary>
        public static SandboxException Wrap(Exception e, string errorId, string what, string? target)
        {
            if (e is SandboxException se) return se;
            if (e is AggregateException ae && ae.InnerException is SandboxException inner) return inner;
            var kind = e is DockerApiException ? SandboxErrorKind.Failed : SandboxErrorKind.NotAvailable;
            var id = kind == SandboxErrorKind.NotAvailable ? ErrorIds.BackendUnavailable : errorId;
            return new SandboxException(id, kind, $"{what}: {Describe(e)}.", target, e);
        }
    }
}
