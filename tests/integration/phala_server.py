#!/usr/bin/env python3
"""phala_server.py - a Phala Cloud REST API for tests (CONTRACTS.md section 1).

Serves /api/v1 on 127.0.0.1 (a free port, printed as "PORT n" on stdout):
auth check (X-API-Key must equal --api-key, X-Phala-Version must be present),
/auth/me, /cvms/provision, /cvms, /cvms/{id}, /cvms/{id}/state, /network,
/attestation, DELETE /cvms/{id}, /cvms/paginated. Without --boxes, CVMs are
records only. Error bodies use {"detail": string | {error_code, message}}.

--boxes DIR --tdxr BIN: every CVM is a real local box (box_backend.py: sshd, stunnel4,
`tdx-runner guest-agent`), booting after POST /cvms answered (the CVM
stays "starting" until its box answers) and killed by DELETE. Each app gets
its own X25519 env key (provision's app_env_encrypt_pubkey); the SSH key comes out of
encrypted_env (DSTACK_AUTHORIZED_KEYS) - a CVM whose env does not decrypt reports a
boot_error. The guest agent gets the app id, the compose text whose hash provision
returned, and the CVM's instance id. DIR/backend.json names the gateway address
(connect_to), its CA file and the PCCS URL for the tdx-runner config. Box mode
adds: /_control/set?box_fault=tamper-eventlog|replay-quote|wrong-app-id|none (CVMs
created after it), /_control/fault?...&after=1 (act, then answer the fault - with
hang: act, then stall), and /_control/stats lists each CVM's "work" (writes seen in
its /var/volatile since it booted, entries and bytes it held at delete), "boxes" (live
box count) and "box_procs" (processes of any box this server started still alive).

Control (no auth, GET, loopback only): /_control/fault?op=OP&status=N
[&count=N][&retry_after=S][&hang=S][&echo_key=1] queues faults for an op
(provision create get state network attestation delete list me); after=1 acts first;
/_control/clear drops queued faults;
/_control/set?starting_polls=N|stuck=1|boot_error=TEXT|app_pubkey=HEX;
/_control/add?name=N&app_id=A adds a CVM nobody here created;
/_control/stats returns call counts, CVMs (with encrypted_env) and the
number of requests whose key was wrong. --watch-stdin: exit when stdin closes.
"""
import argparse
import hashlib
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {
    "next_id": 1000,
    "cvms": {},        # id -> record
    "apps": {},        # app_id -> provision record
    "calls": {},       # op -> count (every request, faults included)
    "bad_auth": 0,
    "faults": {},      # op -> [fault, ...]
    "starting_polls": 1,
    "stuck": False,
    "boot_error": "",
    "app_pubkey": "11" * 32,
    "base_domain": "dstack-test.phala.local",
    "box_fault": None,
}
BACKEND = None     # box_backend.Backend in --boxes mode
box_backend = None  # the module, imported in --boxes mode (needs python3-cryptography)
API_KEY = ""
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{4,62}$")


def take_fault(op):
    q = STATE["faults"].get(op)
    if not q:
        return None
    f = q[0]
    f["count"] -= 1
    if f["count"] <= 0:
        q.pop(0)
    return f


def cvm_public(c):
    return {
        "id": c["id"], "name": c["name"], "app_id": c["app_id"], "status": c["status"],
        "vm_uuid": c["vm_uuid"], "instance_id": c.get("instance_id") or c["vm_uuid"].replace("-", "")[:40],
        "teepod_id": 1, "vcpu": 1, "memory": 2048, "disk_size": 20,
        "compose_hash": c["compose_hash"],
        "gateway": {"base_domain": STATE["base_domain"], "cname": "test.cname.local"},
        "endpoints": [{"app": "https://%s-8080.%s" % (c["app_id"], STATE["base_domain"]),
                       "instance": ""}],
        "os": {"name": "dstack-dev", "version": "0.5.3", "is_dev": True, "os_image_hash": "00" * 32},
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send_json(self, code, obj, headers=None):
        if getattr(self, "mute", False):
            return None
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n <= 0:
            return None
        raw = self.rfile.read(n)
        try:
            return json.loads(raw)
        except ValueError:
            return "invalid"

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")

    def control(self, path, q):
        with LOCK:
            if path == "/_control/fault":
                op = q.get("op", "")
                f = {"status": int(q.get("status", "500")), "count": int(q.get("count", "1")),
                     "retry_after": q.get("retry_after"), "hang": float(q.get("hang", "0")),
                     "echo_key": q.get("echo_key") == "1", "after": q.get("after") == "1"}
                STATE["faults"].setdefault(op, []).append(f)
                return self.send_json(200, {"ok": True})
            if path == "/_control/clear":
                STATE["faults"].clear()
                return self.send_json(200, {"ok": True})
            if path == "/_control/set":
                if "starting_polls" in q:
                    STATE["starting_polls"] = int(q["starting_polls"])
                if "stuck" in q:
                    STATE["stuck"] = q["stuck"] == "1"
                if "boot_error" in q:
                    STATE["boot_error"] = q["boot_error"]
                if "app_pubkey" in q:
                    STATE["app_pubkey"] = q["app_pubkey"]
                if "box_fault" in q:
                    STATE["box_fault"] = None if q["box_fault"] in ("", "none") else q["box_fault"]
                return self.send_json(200, {"ok": True})
            if path == "/_control/add":
                cid = STATE["next_id"]
                STATE["next_id"] += 1
                STATE["cvms"][cid] = {
                    "id": cid, "name": q.get("name", "someone-else"),
                    "app_id": q.get("app_id", "ab" * 20), "status": "running",
                    "vm_uuid": "00000000-0000-0000-0000-%012d" % cid, "compose_hash": "00" * 32,
                    "polls": 0, "encrypted_env": "", "env_keys": [], "deleted": False,
                }
                return self.send_json(200, {"id": cid})
            if path == "/_control/stats":
                return self.send_json(200, {
                    "calls": STATE["calls"], "bad_auth": STATE["bad_auth"],
                    "cvms": {str(k): {"name": v["name"], "app_id": v["app_id"],
                                      "deleted": v["deleted"], "encrypted_env": v["encrypted_env"],
                                      "env_keys": v["env_keys"], "status": v["status"],
                                      "work": BACKEND.work("p%d" % k) if BACKEND else None}
                             for k, v in STATE["cvms"].items()},
                    "live": sum(1 for v in STATE["cvms"].values() if not v["deleted"]),
                    "boxes": len(BACKEND.live()) if BACKEND else 0,
                    "box_procs": len(BACKEND.leftover_pids()) if BACKEND else 0,
                })
        return self.send_json(404, {"detail": "Not Found"})

    def route(self, method):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        path = u.path
        body = self.read_body() if method == "POST" else None
        if path.startswith("/_control/"):
            return self.control(path, q)
        if not path.startswith("/api/v1/"):
            return self.send_json(404, {"detail": "Not Found"})
        path = path[len("/api/v1"):]
        op, cid = self.classify(method, path)
        with LOCK:
            STATE["calls"][op] = STATE["calls"].get(op, 0) + 1
            key = self.headers.get("X-API-Key", "")
            if key != API_KEY:
                STATE["bad_auth"] += 1
                return self.send_json(401, {"detail": {"error_code": "AUTH_INVALID",
                                                       "message": "Invalid API key"}})
            if self.headers.get("X-Phala-Version") is None:
                return self.send_json(400, {"detail": "missing X-Phala-Version"})
            f = take_fault(op)
        if f is not None and f["after"]:
            # act (create the CVM, delete it, ...) and lose the answer: the client sees the fault
            self.mute = True
            try:
                with LOCK:
                    self.serve(op, cid, method, q, body)
            finally:
                self.mute = False
        if f is not None:
            if f["hang"] > 0:
                time.sleep(f["hang"])
            hdr = {}
            if f["retry_after"] is not None:
                hdr["Retry-After"] = f["retry_after"]
            msg = "injected fault"
            if f["echo_key"]:
                msg = "bad key %s for this request" % key
            return self.send_json(f["status"], {"detail": {"error_code": "INJECTED", "message": msg}}, hdr)
        with LOCK:
            return self.serve(op, cid, method, q, body)

    @staticmethod
    def box_start(c, app):
        """Boots the CVM's box: the SSH key from the sealed env, the compose whose hash provision
        returned, this CVM's instance id. A failure is the CVM's boot_error, as on the cloud."""
        c["instance_id"] = hashlib.sha256(c["vm_uuid"].encode()).hexdigest()[:40]
        try:
            env = box_backend.decrypt_env(app["env_priv"], c["encrypted_env"])
        except Exception as e:
            c["boot_error"] = "cannot decrypt encrypted_env: %s" % (e or type(e).__name__)
            c["status"] = "error"
            return
        keys = env.get("DSTACK_AUTHORIZED_KEYS", "")
        try:
            BACKEND.start("p%d" % c["id"], c["app_id"], c["instance_id"], app["compose_text"], keys,
                          STATE["box_fault"])
        except (box_backend.BoxError, OSError) as e:
            c["boot_error"] = str(e)
            c["status"] = "error"

    @staticmethod
    def classify(method, path):
        if path == "/auth/me":
            return "me", None
        if path == "/cvms/provision" and method == "POST":
            return "provision", None
        if path == "/cvms" and method == "POST":
            return "create", None
        if path == "/cvms/paginated" and method == "GET":
            return "list", None
        m = re.match(r"^/cvms/([^/]+)(/state|/network|/attestation)?$", path)
        if m:
            sub = {None: "get", "/state": "state", "/network": "network",
                   "/attestation": "attestation"}[m.group(2)]
            if method == "DELETE" and m.group(2) is None:
                sub = "delete"
            return sub, m.group(1)
        return "unknown", None

    def find(self, cid):
        try:
            c = STATE["cvms"].get(int(cid))
        except ValueError:
            c = next((v for v in STATE["cvms"].values()
                      if v["name"] == cid or "app_" + v["app_id"] == cid), None)
        if c is None or c["deleted"]:
            self.send_json(404, {"detail": {"error_code": "CVM_NOT_FOUND",
                                            "message": "CVM %s does not exist" % cid}})
            return None
        return c

    def serve(self, op, cid, method, q, body):
        if op == "me":
            return self.send_json(200, {"user": {"username": "test", "email": "t@example.invalid"},
                                        "workspace": {"id": "ws1", "name": "test"},
                                        "credits": {"balance": 1}})
        if op == "provision":
            if not isinstance(body, dict) or not NAME_RE.match(str(body.get("name", ""))):
                return self.send_json(422, {"detail": [{"loc": ["body", "name"], "msg": "invalid name"}]})
            cf = body.get("compose_file")
            if not isinstance(cf, dict) or not isinstance(cf.get("docker_compose_file"), str):
                return self.send_json(422, {"detail": "compose_file.docker_compose_file required"})
            compose = {"docker_compose_file": cf["docker_compose_file"],
                       "allowed_envs": cf.get("allowed_envs", []), "gateway_enabled": cf.get("gateway_enabled"),
                       "name": body["name"], "runner": "docker-compose", "manifest_version": 2}
            text = json.dumps(compose, sort_keys=True, indent=4).replace('": ', '":')
            ch = hashlib.sha256(text.encode()).hexdigest()
            app_id = hashlib.sha256((body["name"] + ch).encode()).hexdigest()[:40]
            STATE["apps"][app_id] = {"name": body["name"], "compose_hash": ch, "request": body,
                                     "compose_text": text}
            pub = STATE["app_pubkey"]
            if BACKEND is not None:
                # each app its own env key; the private half stays here (the "KMS")
                priv, pub = box_backend.new_env_key()
                STATE["apps"][app_id]["env_priv"] = priv
            return self.send_json(200, {"app_id": app_id, "app_env_encrypt_pubkey": pub,
                                        "compose_hash": ch, "fmspc": "B0C06F000000", "device_id": "00" * 32,
                                        "os_image_hash": "00" * 32, "instance_type": body.get("instance_type"),
                                        "node_id": 1, "kms_id": "kms", "kms_info": {}})
        if op == "create":
            if not isinstance(body, dict):
                return self.send_json(422, {"detail": "body required"})
            app = STATE["apps"].get(body.get("app_id"))
            if app is None or app["compose_hash"] != body.get("compose_hash"):
                return self.send_json(400, {"detail": {"error_code": "PROVISION_MISMATCH",
                                                       "message": "unknown app_id or compose_hash"}})
            if not re.match(r"^[0-9a-f]+$", str(body.get("encrypted_env", ""))):
                return self.send_json(422, {"detail": "encrypted_env must be hex"})
            cid = STATE["next_id"]
            STATE["next_id"] += 1
            c = {"id": cid, "name": app["name"], "app_id": body["app_id"], "status": "starting",
                 "vm_uuid": "00000000-0000-4000-8000-%012d" % cid, "compose_hash": app["compose_hash"],
                 "polls": 0, "encrypted_env": body["encrypted_env"], "env_keys": body.get("env_keys"),
                 "deleted": False}
            STATE["cvms"][cid] = c
            if BACKEND is not None:
                self.box_start(c, app)
            return self.send_json(200, cvm_public(c))
        if op == "list":
            page = int(q.get("page", "1"))
            size = int(q.get("page_size", "50"))
            items = [cvm_public(c) for c in STATE["cvms"].values() if not c["deleted"]]
            pages = max(1, (len(items) + size - 1) // size)
            return self.send_json(200, {"items": items[(page - 1) * size: page * size], "total": len(items),
                                        "page": page, "page_size": size, "pages": pages})
        if op == "unknown":
            return self.send_json(404, {"detail": "Not Found"})
        c = self.find(cid)
        if c is None:
            return None
        if op == "state":
            c["polls"] += 1
            booted = True
            if BACKEND is not None and c["status"] == "starting":
                bs, berr = BACKEND.status("p%d" % c["id"])
                booted = bs == "running"
                if bs == "failed":
                    c["boot_error"], c["status"] = berr, "error"
            boot_error = c.get("boot_error") or STATE["boot_error"]
            if booted and not STATE["stuck"] and not boot_error and c["polls"] > STATE["starting_polls"]:
                c["status"] = "running"
            return self.send_json(200, {"name": c["name"], "status": c["status"], "uptime": "1m",
                                        "exited_at": None, "boot_progress": "booting",
                                        "boot_error": boot_error or None, "shutdown_progress": None})
        if op == "get":
            return self.send_json(200, cvm_public(c))
        if op == "network":
            return self.send_json(200, {"is_online": c["status"] == "running", "is_public": True, "error": None,
                                        "internal_ip": "10.0.0.2", "latest_handshake": "",
                                        "public_urls": cvm_public(c)["endpoints"]})
        if op == "attestation":
            return self.send_json(200, {"name": c["name"], "is_online": True, "is_public": True, "error": None,
                                        "app_certificates": [], "tcb_info": {}, "compose_file": ""})
        if op == "delete":
            c["deleted"] = True
            if BACKEND is not None:
                c["work"] = BACKEND.delete("p%d" % c["id"])
            if getattr(self, "mute", False):
                return None
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return self.send_json(404, {"detail": "Not Found"})


def main():
    global API_KEY, BACKEND, box_backend
    ap = argparse.ArgumentParser()
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--watch-stdin", action="store_true")
    ap.add_argument("--boxes", help="back every CVM with a real local box under this directory")
    ap.add_argument("--tdxr", help="the tdx-runner binary (its guest-agent command), with --boxes")
    ap.add_argument("--base-domain", default=STATE["base_domain"])
    ap.add_argument("--starting-polls", type=int, default=STATE["starting_polls"])
    a = ap.parse_args()
    API_KEY = a.api_key
    STATE["base_domain"] = a.base_domain
    STATE["starting_polls"] = a.starting_polls

    def quit_(*_):
        if BACKEND is not None:
            with LOCK:
                BACKEND.shutdown()
        os._exit(0)

    if a.boxes:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import box_backend
        if not a.tdxr:
            ap.error("--boxes needs --tdxr")
        BACKEND = box_backend.Backend(a.boxes, a.tdxr, a.base_domain,
                                      log=lambda m: sys.stderr.write("phala_server: %s\n" % m))
    signal.signal(signal.SIGTERM, quit_)
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    print("PORT %d" % srv.server_address[1], flush=True)
    if a.watch_stdin:
        def watch():
            while os.read(0, 4096):
                pass
            quit_()
        threading.Thread(target=watch, daemon=True).start()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        quit_()
    return 0


if __name__ == "__main__":
    sys.exit(main())
