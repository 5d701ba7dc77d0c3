#!/usr/bin/env python3
"""A service that resolves request paths on its own, as many Python web
stacks do, for the path-confusion tests (testkit::normalising).

For each request it takes the raw request target exactly as it arrived on
the socket (nothing in between parses it), then resolves it the most
permissive common way: the query is cut off, the path is percent-decoded
once (urllib.parse.unquote), `;` parameters are removed from every segment,
repeated slashes are merged and dot segments removed (posixpath.normpath).
If the result is /secret or under /secret/ it answers with the marker
TOP-SECRET; otherwise it echoes the raw target. Case is significant.

It appends `<x-request-id>\t<raw target>` to the log file named on the
command line before it answers, and prints `listening <port>` once bound
to 127.0.0.1 on a free port. HTTP/1.1 with keep-alive; request bodies are
read and ignored.

Usage: normalising_upstream.py LOG_FILE
"""

import posixpath
import re
import socketserver
import sys
import threading
import urllib.parse

LOG_LOCK = threading.Lock()
SECRET = b"TOP-SECRET: the protected file\n"


def resolve(target):
    """The path this service serves for a raw request target."""
    path = target.split("?", 1)[0]
    path = urllib.parse.unquote(path, errors="surrogateescape")
    path = "/".join(seg.split(";", 1)[0] for seg in path.split("/"))
    path = re.sub("/+", "/", path)
    return posixpath.normpath(path) if path else "/"


def is_secret(path):
    return path == "/secret" or path.startswith("/secret/")


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        while self.one_request():
            pass

    def one_request(self):
        line = self.rfile.readline(65537)
        if not line:
            return False
        parts = line.rstrip(b"\r\n").split(b" ")
        if len(parts) != 3:
            self.answer(400, b"bad request line\n", close=True)
            return False
        target = parts[1].decode("latin-1")
        headers = {}
        while True:
            h = self.rfile.readline(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or "0")
        if length:
            self.rfile.read(length)
        with LOG_LOCK:
            with open(self.server.log_path, "a", encoding="latin-1") as log:
                log.write("%s\t%s\n" % (headers.get("x-request-id", "-"), target))
        resolved = resolve(target)
        if is_secret(resolved):
            body = SECRET
        else:
            body = ("served %s for %s\n" % (resolved, target)).encode("latin-1", "replace")
        close = headers.get("connection", "").lower() == "close"
        self.answer(200, body, close)
        return not close

    def answer(self, status, body, close):
        head = "HTTP/1.1 %d X\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n" % (
            status,
            len(body),
        )
        if close:
            head += "connection: close\r\n"
        self.wfile.write(head.encode() + b"\r\n" + body)
        self.wfile.flush()


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    server = Server(("127.0.0.1", 0), Handler)
    server.log_path = sys.argv[1]
    print("listening %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
