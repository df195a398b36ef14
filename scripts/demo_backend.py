#!/usr/bin/python3
"""A tiny HTTP/1.1 keep-alive demo backend that names itself in X-Backend and in its body."""
import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tandem-demo"

    def do_GET(self):
        body = f"Hello from backend {self.server.name} (you asked for {self.path})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", self.server.name)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, fmt, *args):
        pass


def main():
    name, port = sys.argv[1], int(sys.argv[2])
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.name = name
    srv.serve_forever()


if __name__ == "__main__":
    main()
