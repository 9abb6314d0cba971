"""The hosts a sandbox reaches in the egress proxy's tests: HTTP and HTTPS on the host's 127.0.0.1.

    servers.py HTTP_PORT HTTPS_PORT CERT KEY REQUEST_LOG

GET answers with the path and the Host, Proxy-Authorization and Connection fields the server saw;
POST with the size and SHA-256 of the body (Content-Length or chunked). Every request line is
appended to REQUEST_LOG, so a test can tell what reached the server.
"""
import hashlib
import http.server
import ssl
import sys
import threading

http_port, https_port, cert, key, request_log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: with Nagle, a TLS answer's second record waited out the client's delayed ACK (about
    # 40 ms a request), which would swamp what the proxy costs in bench/Measure-Egress.ps1.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def record(self):
        with lock, open(request_log, "a") as f:
            f.write(self.requestline + "\n")

    def reply(self, text):
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.record()
        h = self.headers
        self.reply(f"hello {self.path} host={h.get('Host')} proxy-authorization={h.get('Proxy-Authorization')} connection={h.get('Connection')}\n")

    def do_POST(self):
        self.record()
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.reply(f"got {len(body)} bytes sha256 {hashlib.sha256(body).hexdigest()}\n")


def serve(port, tls):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        # The handshake in the request's thread, so a client that never starts one holds up no other.
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    server.serve_forever()


threading.Thread(target=serve, args=(https_port, True), daemon=True).start()
serve(http_port, False)
