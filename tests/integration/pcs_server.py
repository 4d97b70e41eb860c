#!/usr/bin/env python3
"""pcs_server.py - a loopback Intel PCS v4 / PCCS stand-in for the collateral fetcher tests.

Serves one collateral file in dcap-qvl QuoteCollateralV3 layout (read in place) as the
real PCS response shapes, so the bytes a client gets are exactly the signed originals:

  GET /sgx/certification/v4/pckcrl?ca=platform|processor[&encoding=der]
      body: CRL (DER with encoding=der, else PEM); SGX-PCK-CRL-Issuer-Chain: %-encoded PEM
  GET /{tdx|sgx}/certification/v4/tcb?fmspc=HEX
      body: {"tcbInfo":<tcb_info text>,"signature":"<hex>"}; TCB-Info-Issuer-Chain
      (--legacy-tcb-header: SGX-TCB-Info-Issuer-Chain)
  GET /{tdx|sgx}/certification/v4/qe/identity[?update=standard|early]
      body: {"enclaveIdentity":<qe_identity text>,"signature":"<hex>"};
      SGX-Enclave-Identity-Issuer-Chain
  GET /sgx/certification/v4/rootcacrl   root CA CRL as hex text (PCCS), DER or PEM
  GET /root.crl                         root CA CRL, DER (a stand-in distribution point)

Control (not counted): GET /__stats -> {"total": n, "paths": {path: n}}; GET /__reset;
GET /__fail?status=503&count=1&path=/tdx/...&retry_after=7&error_code=X&mode=M adds a fault
rule; M is status (default), garbage (200 + non-JSON), big (200 + 5 MiB with
Content-Length), bignolen (same, streamed without a length), hang (accept, never answer),
nochain (200 without the issuer-chain header). Only the TEE the file's tcbInfo belongs to
is served; the PCK CRL only for the CA that issued it (--any-ca: for either); unknown
FMSPC -> 404 as PCS does.

Prints "PORT <n>" on stdout once listening. Exits on SIGTERM or, with --watch-stdin, when
stdin reaches EOF (so a test that dies never leaves the server behind). Test-only: binds
127.0.0.1 and trusts nothing it is sent beyond what it needs to route.
"""
import argparse
import base64
import binascii
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BIG = 5 * 1024 * 1024


def crl_pem(der):
    b64 = base64.b64encode(der).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return ("-----BEGIN X509 CRL-----\n" + "\n".join(lines) + "\n-----END X509 CRL-----\n").encode()


class Fixture:
    def __init__(self, path):
        with open(path, "rb") as f:
            c = json.loads(f.read().decode("utf-8"))
        self.c = c
        tcb = json.loads(c["tcb_info"])
        qe = json.loads(c["qe_identity"])
        self.tee = "tdx" if tcb.get("id") == "TDX" else "sgx"
        self.fmspc = tcb["fmspc"].upper()
        self.pck_crl = binascii.unhexlify(c["pck_crl"])
        self.root_crl = binascii.unhexlify(c["root_ca_crl"])
        if b"PCK Platform CA" in self.pck_crl:
            self.ca = "platform"
        elif b"PCK Processor CA" in self.pck_crl:
            self.ca = "processor"
        else:
            self.ca = None
        # exact bytes, never re-serialised: the signature covers them
        self.tcb_body = ('{"tcbInfo":' + c["tcb_info"] + ',"signature":"' +
                         c["tcb_info_signature"] + '"}').encode()
        self.qe_body = ('{"enclaveIdentity":' + c["qe_identity"] + ',"signature":"' +
                        c["qe_identity_signature"] + '"}').encode()
        self.qe_id = qe.get("id")


def enc(pem):
    return urllib.parse.quote(pem, safe="")


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.total = 0
        self.rules = []
        self.stop = threading.Event()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pcs-stand-in/1"

    def log_message(self, fmt, *args):
        if self.server.opts.verbose:
            sys.stderr.write("pcs_server: " + (fmt % args) + "\n")

    def send(self, status, body=b"", headers=None, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Request-ID", "%032x" % self.server.state.total)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def error(self, status, code, msg, extra=None):
        h = {"Error-Code": code, "Error-Message": msg}
        h.update(extra or {})
        self.send(status, b"", h)

    def control(self, path, q):
        st = self.server.state
        if path == "/__stats":
            with st.lock:
                body = json.dumps({"total": st.total, "paths": st.counts}).encode()
            return self.send(200, body)
        if path == "/__reset":
            with st.lock:
                st.counts.clear()
                st.total = 0
                st.rules.clear()
            return self.send(200, b'{"ok":true}')
        if path == "/__fail":
            rule = {
                "status": int(q.get("status", ["503"])[0]),
                "count": int(q.get("count", ["1"])[0]),
                "path": q.get("path", [None])[0],
                "retry_after": q.get("retry_after", [None])[0],
                "error_code": q.get("error_code", [None])[0],
                "mode": q.get("mode", ["status"])[0],
            }
            with st.lock:
                st.rules.append(rule)
            return self.send(200, b'{"ok":true}')
        return self.send(404, b'{"error":"unknown control path"}')

    def take_rule(self, path):
        st = self.server.state
        with st.lock:
            for r in st.rules:
                if r["count"] != 0 and (r["path"] is None or path.startswith(r["path"])):
                    if r["count"] > 0:
                        r["count"] -= 1
                    return dict(r)
        return None

    def fault(self, rule, ok_headers):
        mode = rule["mode"]
        if mode == "hang":
            self.server.state.stop.wait(30)
            self.close_connection = True
            return
        if mode == "garbage":
            return self.send(200, b"<html>this is not the PCS</html> {", ok_headers)
        if mode == "nochain":
            return self.send(200, self.server.fx.tcb_body, {})
        if mode in ("big", "bignolen"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            for k, v in ok_headers.items():
                self.send_header(k, v)
            if mode == "big":
                self.send_header("Content-Length", str(BIG))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(BIG // len(chunk)):
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        extra = {}
        if rule["retry_after"]:
            extra["Retry-After"] = rule["retry_after"]
        return self.error(rule["status"], rule["error_code"] or "InjectedFault", "injected", extra)

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        path, q = u.path, urllib.parse.parse_qs(u.query)
        if path.startswith("/__"):
            return self.control(path, q)
        st, fx, opts = self.server.state, self.server.fx, self.server.opts
        with st.lock:
            st.total += 1
            st.counts[path] = st.counts.get(path, 0) + 1
        if opts.api_key is not None and self.headers.get("Ocp-Apim-Subscription-Key") != opts.api_key:
            return self.error(401, "Unauthorized", "missing or wrong subscription key")

        c = fx.c
        tee_p = "/" + fx.tee + "/certification/v4/"
        if path == "/sgx/certification/v4/pckcrl":
            ca = q.get("ca", [""])[0].lower()
            if ca not in ("platform", "processor"):
                return self.error(400, "InvalidParameter", "ca")
            hdr = {"SGX-PCK-CRL-Issuer-Chain": enc(c["pck_crl_issuer_chain"])}
            rule = self.take_rule(path)
            if rule:
                return self.fault(rule, hdr)
            if fx.ca is not None and ca != fx.ca and not opts.any_ca:
                return self.error(404, "NotFound", "no CRL for this CA in the fixture")
            if q.get("encoding", ["pem"])[0] == "der":
                return self.send(200, fx.pck_crl, hdr, "application/pkix-crl")
            return self.send(200, crl_pem(fx.pck_crl), hdr, "application/x-pem-file")
        if path == tee_p + "tcb":
            name = "SGX-TCB-Info-Issuer-Chain" if opts.legacy_tcb_header else "TCB-Info-Issuer-Chain"
            hdr = {name: enc(c["tcb_info_issuer_chain"])}
            rule = self.take_rule(path)
            if rule:
                return self.fault(rule, hdr)
            fmspc = q.get("fmspc", [""])[0]
            if len(fmspc) != 12:
                return self.error(400, "InvalidParameter", "fmspc")
            if fmspc.upper() != fx.fmspc:
                return self.error(404, "NotFound", "no TCB info for this FMSPC")
            return self.send(200, fx.tcb_body, hdr)
        if path == tee_p + "qe/identity":
            hdr = {"SGX-Enclave-Identity-Issuer-Chain": enc(c["qe_identity_issuer_chain"])}
            rule = self.take_rule(path)
            if rule:
                return self.fault(rule, hdr)
            if q.get("update", ["standard"])[0] not in ("standard", "early"):
                return self.error(400, "InvalidParameter", "update")
            return self.send(200, fx.qe_body, hdr)
        if path in ("/sgx/certification/v4/rootcacrl", "/root.crl"):
            rule = self.take_rule(path)
            if rule:
                return self.fault(rule, {})
            fmt = "der" if path == "/root.crl" else opts.rootcacrl
            if fmt == "none":
                return self.error(404, "NotFound", "rootcacrl disabled")
            if fmt == "hex":
                return self.send(200, fx.root_crl.hex().encode(), {}, "text/plain")
            if fmt == "pem":
                return self.send(200, crl_pem(fx.root_crl), {}, "application/x-pem-file")
            return self.send(200, fx.root_crl, {}, "application/pkix-crl")
        return self.error(404, "NotFound", "no such endpoint")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collateral", required=True, help="collateral JSON (dcap-qvl layout)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--rootcacrl", choices=["hex", "der", "pem", "none"], default="hex")
    ap.add_argument("--legacy-tcb-header", action="store_true")
    ap.add_argument("--any-ca", action="store_true",
                    help="serve the fixture's PCK CRL for either ca= (dcap-qvl 0.3.9 always asks 'processor')")
    ap.add_argument("--api-key", default=None, help="require this Ocp-Apim-Subscription-Key")
    ap.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes")
    ap.add_argument("--verbose", action="store_true")
    opts = ap.parse_args()

    srv = ThreadingHTTPServer(("127.0.0.1", opts.port), Handler)
    srv.daemon_threads = True
    srv.fx = Fixture(opts.collateral)
    srv.state = State()
    srv.opts = opts

    def stop(*_):
        srv.state.stop.set()
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if opts.watch_stdin:
        def watch():
            while os.read(0, 4096):
                pass
            stop()
        threading.Thread(target=watch, daemon=True).start()

    sys.stdout.write("PORT %d\n" % srv.server_address[1])
    sys.stdout.flush()
    srv.serve_forever(poll_interval=0.2)
    srv.server_close()


if __name__ == "__main__":
    main()
