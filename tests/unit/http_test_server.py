#!/usr/bin/env python3
"""http_test_server.py - a loopback HTTP/1.1 server for tests/unit/test_http.c.

Each path shows one behaviour the client must handle (any method unless noted):

  /echo                 200, body = request body; X-Method, X-Body-Len, X-Body-Sha256,
                        X-Client-Port (keep-alive check), X-Host, X-Content-Type,
                        X-Seen-Headers (JSON of the request headers)
  /headers              200 with X-Custom, x-MiXeD, X-Dup twice, a padded and a folded value
  /many-headers?n=N     200 with N extra headers
  /big?n=N&len=0|1      200 with N bytes, with Content-Length (len=1) or close-delimited
  /close-mid-body       announces 100000 bytes, sends 1000, closes the connection
  /slow?ms=N            waits N ms, then 200 "late"
  /status?code=N&retry_after=V&retry_after_in=S&echo_auth=1&body=TEXT
                        status N; Retry-After V, or an HTTP-date S seconds ahead of the
                        Date header; the body is TEXT, or echoes the Authorization header
  /upload               multipart/form-data: 200 JSON {"parts": [{name, filename,
                        content_type, len, sha256}], "content_length": n}

Prints "PORT <n>" once listening; with --watch-stdin exits when stdin reaches EOF (so
a test that dies never leaves it behind). Test-only: binds 127.0.0.1.
"""
import argparse
import email.utils
import hashlib
import json
import os
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "http-test/1"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("http_test_server: " + (fmt % args) + "\n")

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(16)
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n) if n > 0 else b""

    def reply(self, status, body=b"", headers=None, ctype="application/octet-stream"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers or []:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def route(self):
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query)
        body = self.read_body()
        arg = lambda k, d=None: q.get(k, [d])[0]
        if u.path == "/echo":
            seen = json.dumps({k: v for k, v in self.headers.items()})
            return self.reply(200, body, [
                ("X-Method", self.command),
                ("X-Body-Len", str(len(body))),
                ("X-Body-Sha256", hashlib.sha256(body).hexdigest()),
                ("X-Client-Port", str(self.client_address[1])),
                ("X-Host", self.headers.get("Host", "")),
                ("X-Content-Type", self.headers.get("Content-Type", "")),
                ("X-Seen-Headers", seen),
            ])
        if u.path == "/headers":
            return self.reply(200, b"ok", [
                ("X-Custom", "hello"),
                ("x-MiXeD", "Case"),
                ("X-Dup", "one"),
                ("X-Dup", "two"),
                ("X-Padded", "   spaced out   "),
                ("X-Folded", "first\r\n   second"),
            ])
        if u.path == "/many-headers":
            n = int(arg("n", "10"))
            return self.reply(200, b"ok", [("X-H%d" % i, "v") for i in range(n)])
        if u.path == "/big":
            n = int(arg("n", "0"))
            chunk = b"x" * 65536
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if arg("len", "1") == "1":
                self.send_header("Content-Length", str(n))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            try:
                while n > 0:
                    k = min(n, len(chunk))
                    self.wfile.write(chunk[:k])
                    n -= k
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            return
        if u.path == "/close-mid-body":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"y" * 1000)
            self.wfile.flush()
            self.close_connection = True
            return
        if u.path == "/slow":
            end = time.monotonic() + int(arg("ms", "1000")) / 1000.0
            while time.monotonic() < end and not self.server.stopping:
                time.sleep(0.02)
            return self.reply(200, b"late")
        if u.path == "/status":
            hdrs = []
            if arg("retry_after") is not None:
                hdrs.append(("Retry-After", arg("retry_after")))
            if arg("retry_after_in") is not None:
                when = time.time() + int(arg("retry_after_in"))
                hdrs.append(("Retry-After", email.utils.formatdate(when, usegmt=True)))
            text = arg("body", "")
            if arg("echo_auth") == "1":
                text = "token %s is not valid\x01\x02" % self.headers.get("Authorization", "")
            return self.reply(int(arg("code", "500")), text.encode("utf-8"), hdrs, "text/plain")
        if u.path == "/upload":
            return self.upload(body)
        return self.reply(404, b"no such path")

    def upload(self, body):
        m = re.search(r'boundary="?([^";]+)"?', self.headers.get("Content-Type", ""))
        if not m:
            return self.reply(400, b"not multipart")
        parts = []
        for chunk in body.split(b"--" + m.group(1).encode())[1:]:
            if chunk.startswith(b"--"):
                break
            if chunk.startswith(b"\r\n"):
                chunk = chunk[2:]
            if chunk.endswith(b"\r\n"):
                chunk = chunk[:-2]
            head, _, data = chunk.partition(b"\r\n\r\n")
            info = {"name": None, "filename": None, "content_type": None}
            for line in head.decode("utf-8", "replace").split("\r\n"):
                k, _, v = line.partition(":")
                if k.lower() == "content-disposition":
                    for key in ("name", "filename"):
                        mm = re.search(r'[; ]%s="([^"]*)"' % key, v)
                        if mm:
                            info[key] = mm.group(1)
                elif k.lower() == "content-type":
                    info["content_type"] = v.strip()
            info["len"] = len(data)
            info["sha256"] = hashlib.sha256(data).hexdigest()
            parts.append(info)
        out = {"parts": parts, "content_length": len(body), "method": self.command}
        return self.reply(200, json.dumps(out).encode(), ctype="application/json")

    def do_GET(self):
        self.route()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    stopping = False
    verbose = False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--watch-stdin", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    srv = Server(("127.0.0.1", a.port), Handler)
    srv.verbose = a.verbose
    print("PORT %d" % srv.server_address[1], flush=True)
    if a.watch_stdin:
        def watch():
            while os.read(0, 4096):
                pass
            srv.stopping = True
            os._exit(0)
        threading.Thread(target=watch, daemon=True).start()
    try:
        srv.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
