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
  switchproxy PORTFILE DSTFILE CUTFILE
                              TCP proxy to 127.0.0.1:<port read from DSTFILE at each
                              new connection>; when CUTFILE appears, every open
                              connection is closed and CUTFILE removed (a network
                              fault; the next connection may reach another sshd).
  ptyresize BIN LEASE         runs `BIN ssh LEASE` (an interactive shell) on a pty of
                              80x24, asks the box's shell for `stty size`, resizes the
                              pty to 132x40 (the kernel sends SIGWINCH) and asks again;
                              prints the two sizes seen in the box ("24 80" "40 132").
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


def switchproxy(portfile, dstfile, cutfile):
    s = listen()
    with open(portfile, "w") as f:
        f.write(str(s.getsockname()[1]))
    live = []
    lock = threading.Lock()

    def pump(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cutter():
        while True:
            if os.path.exists(cutfile):
                with lock:
                    for x in live:
                        try:
                            x.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                    live.clear()
                os.unlink(cutfile)
            threading.Event().wait(0.05)

    threading.Thread(target=cutter, daemon=True).start()
    while True:
        c, _ = s.accept()
        with open(dstfile) as f:
            dst = int(f.read().strip())
        u = socket.create_connection(("127.0.0.1", dst))
        with lock:
            live.extend([c, u])
        threading.Thread(target=pump, args=(c, u), daemon=True).start()
        threading.Thread(target=pump, args=(u, c), daemon=True).start()


def ptyresize(binary, lease):
    import fcntl
    import pty
    import re
    import select
    import struct
    import termios
    import time

    def setsize(fd, rows, cols):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    pid, fd = pty.fork()
    if pid == 0:
        setsize(0, 24, 80)
        os.environ["TERM"] = "dumb"
        os.execv(binary, [binary, "ssh", lease])
    buf = b""

    def wait_for(pat, secs):
        nonlocal buf
        end = time.monotonic() + secs
        while time.monotonic() < end:
            m = re.search(pat, buf)
            if m:
                buf = buf[m.end():]
                return m
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    d = os.read(fd, 4096)
                except OSError:
                    break
                if not d:
                    break
                buf += d
        return None

    seen = []
    os.write(fd, b"echo SIZE=$(stty size)=\n")
    m = wait_for(rb"SIZE=(\d+ \d+)=", 20)
    seen.append(m.group(1).decode() if m else "none")
    setsize(fd, 40, 132)  # the kernel sends SIGWINCH to the foreground group: tdx-runner
    time.sleep(0.3)
    os.write(fd, b"echo SIZE=$(stty size)=\n")
    m = wait_for(rb"SIZE=(\d+ \d+)=", 20)
    seen.append(m.group(1).decode() if m else "none")
    os.write(fd, b"exit\n")
    wait_for(rb"\Z\n?", 1)
    _, status = os.waitpid(pid, 0)
    print(" ".join('"%s"' % x for x in seen), os.waitstatus_to_exitcode(status))


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
    elif cmd == "switchproxy":
        switchproxy(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "ptyresize":
        ptyresize(sys.argv[2], sys.argv[3])
    elif cmd == "freeport":
        s = listen()
        print(s.getsockname()[1])
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
