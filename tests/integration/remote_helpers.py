#!/usr/bin/env python3
"""remote_helpers.py - small servers for test_remote.sh (stdlib only).

  guest SOCKET INFO_FILE      dstack guest agent stand-in on a unix socket: POST /Info
                              answers INFO_FILE's bytes (read in place, unchanged);
                              POST /GetQuote answers {"report_data": <what was sent>}.
  silent PORTFILE             accepts TCP connections and never says a word (a slow
                              server: connect succeeds, handshakes must time out).
  cutproxy PORTFILE DST N     TCP proxy to 127.0.0.1:DST that closes both sides after
                              N bytes from the server (a server dying mid-stream).
  freezeproxy PORTFILE DST N  the same, but after N bytes it stops forwarding and keeps
                              both sockets open (a box that hangs mid-stream).
  freeport                    prints a free loopback port.
Each server writes its port (or "ready") to PORTFILE / stdout once listening.
"""
import http.server
import json
import os
import socket
import socketserver
import sys
import threading


def guest(sock_path, info_file):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            if self.path == "/Info":
                with open(info_file, "rb") as f:
                    out = f.read()
            elif self.path == "/GetQuote":
                out = json.dumps({"report_data": json.loads(body)["report_data"]}).encode()
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    class S(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

        def get_request(self):
            req, _ = self.socket.accept()
            return req, ("local", 0)

    if os.path.exists(sock_path):
        os.unlink(sock_path)
    srv = S(sock_path, H)
    print("ready", flush=True)
    srv.serve_forever()


def listen():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


def silent(portfile):
    s = listen()
    with open(portfile, "w") as f:
        f.write(str(s.getsockname()[1]))
    held = []
    while True:
        c, _ = s.accept()
        held.append(c)


def cutproxy(portfile, dst, limit, freeze=False):
    s = listen()
    with open(portfile, "w") as f:
        f.write(str(s.getsockname()[1]))

    def pump(a, b, count):
        sent = 0
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                if count:
                    d = d[: max(0, limit - sent)]
                b.sendall(d)
                sent += len(d)
                if count and sent >= limit:
                    if freeze:
                        threading.Event().wait()
                    break
        except OSError:
            pass
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            x.close()

    while True:
        c, _ = s.accept()
        u = socket.create_connection(("127.0.0.1", dst))
        threading.Thread(target=pump, args=(c, u, False), daemon=True).start()
        threading.Thread(target=pump, args=(u, c, True), daemon=True).start()


def main():
    cmd = sys.argv[1]
    if cmd == "guest":
        guest(sys.argv[2], sys.argv[3])
    elif cmd == "silent":
        silent(sys.argv[2])
    elif cmd == "cutproxy":
        cutproxy(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "freezeproxy":
        cutproxy(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), freeze=True)
    elif cmd == "freeport":
        s = listen()
        print(s.getsockname()[1])
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
