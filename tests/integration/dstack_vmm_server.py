#!/usr/bin/env python3
"""dstack_vmm_server.py - a loopback dstack VMM stand-in for the dstack executor's tests.

Speaks the VMM's JSON-over-HTTP RPC (`POST /prpc/<Method>?json`, service Vmm in
Dstack-TEE/dstack dstack/vmm/rpc/proto/vmm_rpc.proto): CreateVm, StartVm, StopVm,
ShutdownVm, RemoveVm, Status (keyword, brief, 1-based page/page_size), GetInfo ->
{found, info}, GetComposeHash -> {hash}, GetAppEnvEncryptPubKey -> {public_key},
ListImages, Version, GetMeta. Errors are HTTP 400 {"error": "..."} as ra-rpc sends.
bytes fields travel as hex, as vmm-cli.py sends them. App id = sha256(compose)[:40]
unless the request names one.

A created VM is "running" with boot_progress "booting"; after --boot-polls GetInfo
calls it reports "done". RemoveVm marks it "removing"; after --remove-polls GetInfo
calls it is gone. The env-encryption public key is --env-pubkey (the test holds the
private key and decrypts what it recorded).

Control (GET, not counted): /__vms -> {id: vm record incl. encrypted_env}; /__calls ->
{method: n}; /__reset; /__fail?method=M&status=500&count=1[&mode=M] adds a fault:
mode status (default: answer `status` without acting), after (act, then answer
`status`), hang (never answer), afterhang (act, then never answer);
/__clear_faults drops queued faults; /__stuck?on=1 keeps new VMs booting forever;
/__boot_error?msg=X makes new VMs report boot_error X; /__put?name=N&owner=O adds a
foreign VM (not created through CreateVm).

--boxes DIR --tdxr BIN: every VM is a real local box (box_backend.py: sshd, stunnel4,
`tdx-runner guest-agent`), booting after CreateVm answered (boot_progress stays
"booting" until the box answers) and killed by RemoveVm (or at exit).
GetAppEnvEncryptPubKey hands out a per-app X25519 key whose private half stays here;
CreateVm decrypts encrypted_env with it for the box's DSTACK_AUTHORIZED_KEYS (a VM
whose env does not decrypt gets a boot_error, as one whose box fails to start). The
guest agent gets the app id, the compose_file text verbatim and a fresh instance id.
DIR/backend.json names the gateway address (connect_to), its CA file and the PCCS URL.
Box mode adds /__box_fault?f=tamper-eventlog|replay-quote|wrong-app-id|none (VMs
created after it) and /__boxes -> {live: [vm ids], work: {vm id: {writes, entries,
bytes}}, box_procs: n} (writes seen in each box's /var/volatile since it booted and what it
held at removal, or holds now; how many processes of any box this server started are alive).

Prints "PORT <n>" once listening; exits on SIGTERM or, with --watch-stdin, at stdin EOF.
Test-only: binds 127.0.0.1 and trusts nothing beyond routing.
"""
import argparse
import hashlib
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 4 * 1024 * 1024
BACKEND = None      # box_backend.Backend in --boxes mode
box_backend = None  # the module, imported in --boxes mode (needs python3-cryptography)


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.vms = {}
        self.calls = {}
        self.faults = []
        self.stuck = False
        self.boot_error = ""
        self.created = 0
        self.box_fault = None
        self.env_keys = {}  # app id -> X25519 private key (box mode)
        self.work = {}      # vm id -> box record at removal

    def take_fault(self, method):
        for f in self.faults:
            if f["method"] in (method, "*") and f["count"] > 0:
                f["count"] -= 1
                return f
        return None


class VmmError(Exception):
    pass


def app_id_of(compose):
    return hashlib.sha256(compose.encode("utf-8")).hexdigest()[:40]


def vm_info(vm, brief):
    info = {k: vm[k] for k in ("id", "name", "status", "app_id", "boot_progress", "boot_error",
                               "shutdown_progress", "image_version")}
    info["uptime"] = "1m"
    info["events"] = []
    info["interfaces"] = []
    if not brief:
        info["configuration"] = vm["configuration"]
    return info


def rpc(st, method, req):
    a = st.args
    if method in ("CreateVm", "GetComposeHash"):
        for k in ("name", "image", "compose_file"):
            if not isinstance(req.get(k), str) or not req[k]:
                raise VmmError("missing %s" % k)
        try:
            json.loads(req["compose_file"])
        except ValueError:
            raise VmmError("invalid app compose")
        if method == "GetComposeHash":
            return {"hash": hashlib.sha256(req["compose_file"].encode("utf-8")).hexdigest()}
        app_id = req.get("app_id") or app_id_of(req["compose_file"])
        env = req.get("encrypted_env", "")
        if env:
            bytes.fromhex(env)  # bytes travel as hex; raises ValueError on junk
        vid = str(uuid.uuid4())
        st.created += 1
        st.vms[vid] = {
            "id": vid, "name": req["name"], "app_id": app_id, "status": "running",
            "boot_progress": "booting", "boot_error": st.boot_error, "shutdown_progress": "",
            "image_version": "0.5.0", "configuration": req, "encrypted_env": env,
            "stuck": st.stuck, "polls": 0, "remove_polls": 0,
        }
        if BACKEND is not None:
            box_start(st, st.vms[vid])
        return {"id": vid}
    if method in ("StartVm", "StopVm", "ShutdownVm", "RemoveVm", "GetInfo"):
        vid = req.get("id")
        vm = st.vms.get(vid)
        if method == "GetInfo":
            if vm is None:
                return {"found": False}
            if vm["status"] == "removing":
                vm["remove_polls"] += 1
                if vm["remove_polls"] > a.remove_polls:
                    del st.vms[vid]
                    return {"found": False}
            elif vm["status"] == "running" and vm["boot_progress"] == "booting" and not vm["stuck"]:
                vm["polls"] += 1
                booted = True
                if BACKEND is not None:
                    bs, berr = BACKEND.status(box_id(vid))
                    booted = bs == "running"
                    if bs == "failed" and not vm["boot_error"]:
                        vm["boot_error"] = berr
                if vm["polls"] >= a.boot_polls and booted:
                    vm["boot_progress"] = "done"
            return {"found": True, "info": vm_info(vm, False)}
        if vm is None:
            raise VmmError("Failed to %s: VM not found" % method)
        if method == "StartVm":
            vm["status"] = "running"
        elif method in ("StopVm", "ShutdownVm"):
            if vm["status"] != "removing":
                vm["status"] = "stopped"
        else:
            vm["status"] = "removing"
            if BACKEND is not None and vid not in st.work:
                st.work[vid] = BACKEND.delete(box_id(vid))
        return {}
    if method == "Status":
        kw = req.get("keyword", "")
        brief = bool(req.get("brief", False))
        vms = [v for v in st.vms.values()
               if not kw or kw in v["name"] or kw in v["id"] or kw in v["app_id"]]
        page, size = int(req.get("page", 0) or 0), int(req.get("page_size", 0) or 0)
        sel = vms if page == 0 or size == 0 else vms[(page - 1) * size:(page - 1) * size + size]
        return {"vms": [vm_info(v, brief) for v in sel], "port_mapping_enabled": False,
                "total": len(vms)}
    if method == "GetAppEnvEncryptPubKey":
        if not req.get("app_id"):
            raise VmmError("missing app_id")
        pub = a.env_pubkey
        if BACKEND is not None:
            # each app its own env key; the private half stays here (the "KMS")
            priv, pub = box_backend.new_env_key()
            st.env_keys[req["app_id"]] = priv
        return {"public_key": pub, "signature": "", "timestamp": int(time.time()),
                "signature_v1": ""}
    if method == "ListImages":
        return {"images": [{"name": "dstack-dev-0.5.0", "description": "{}", "version": "0.5.0",
                            "is_dev": True}]}
    if method == "Version":
        return {"version": "0.5.0-test", "rev": "test"}
    if method == "GetMeta":
        return {"kms": {"url": "", "urls": []},
                "gateway": {"url": "", "base_domain": a.base_domain, "port": 443, "agent_port": 8090,
                            "urls": []},
                "resources": {"max_cvm_number": 100, "max_allocable_vcpu": 64,
                              "max_allocable_memory_in_mb": 262144}}
    raise VmmError("method not found: %s" % method)


def box_id(vid):
    return "d" + vid.replace("-", "")[:12]


def box_start(st, vm):
    """Boots the VM's box: the SSH key from the sealed env, the compose text as sent, a fresh
    instance id. A failure is the VM's boot_error, as the VMM reports a failed boot."""
    cfg = vm["configuration"]
    priv = st.env_keys.get(vm["app_id"])
    try:
        if priv is None:
            raise ValueError("no env key was issued for app %s" % vm["app_id"])
        env = box_backend.decrypt_env(priv, vm["encrypted_env"])
    except Exception as e:
        vm["boot_error"] = "cannot decrypt encrypted_env: %s" % (e or type(e).__name__)
        return
    vm["instance_id"] = os.urandom(20).hex()
    try:
        BACKEND.start(box_id(vm["id"]), vm["app_id"], vm["instance_id"], cfg["compose_file"],
                      env.get("DSTACK_AUTHORIZED_KEYS", ""), st.box_fault)
    except (box_backend.BoxError, OSError) as e:
        vm["boot_error"] = str(e)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        st = self.server.state
        u = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        with st.lock:
            if u.path == "/__vms":
                out = {k: {kk: vv for kk, vv in v.items()} for k, v in st.vms.items()}
                return self.reply(200, out)
            if u.path == "/__calls":
                return self.reply(200, dict(st.calls, __created=st.created))
            if u.path == "/__reset":
                st.reset()
                return self.reply(200, {})
            if u.path == "/__fail":
                st.faults.append({"method": q.get("method", "*"), "status": int(q.get("status", "500")),
                                  "count": int(q.get("count", "1")), "mode": q.get("mode", "status")})
                return self.reply(200, {})
            if u.path == "/__stuck":
                st.stuck = q.get("on", "1") == "1"
                return self.reply(200, {})
            if u.path == "/__clear_faults":
                st.faults = []
                return self.reply(200, {})
            if u.path == "/__box_fault":
                f = q.get("f", "")
                st.box_fault = None if f in ("", "none") else f
                return self.reply(200, {})
            if u.path == "/__boxes":
                live = BACKEND.live() if BACKEND else []
                work = dict(st.work)
                for vid in st.vms:
                    if vid not in work and BACKEND is not None:
                        work[vid] = BACKEND.work(box_id(vid))
                procs = len(BACKEND.leftover_pids()) if BACKEND else 0
                return self.reply(200, {"live": live, "work": work, "box_procs": procs})
            if u.path == "/__boot_error":
                st.boot_error = q.get("msg", "")
                return self.reply(200, {})
            if u.path == "/__put":
                vid = str(uuid.uuid4())
                uc = json.dumps({"tdx_runner": {"owner_host": q.get("owner", ""), "lease_id": "",
                                                "job_id": ""}})
                st.vms[vid] = {
                    "id": vid, "name": q.get("name", "other"), "app_id": "00" * 20,
                    "status": "running", "boot_progress": "done", "boot_error": "",
                    "shutdown_progress": "", "image_version": "0.5.0",
                    "configuration": {"name": q.get("name", "other"), "user_config": uc},
                    "encrypted_env": "", "stuck": False, "polls": 0, "remove_polls": 0,
                }
                return self.reply(200, {"id": vid})
        self.reply(404, {"error": "not found"})

    def do_POST(self):
        st = self.server.state
        u = urllib.parse.urlparse(self.path)
        n = int(self.headers.get("Content-Length", "0") or "0")
        if n > MAX_BODY:
            return self.reply(413, {"error": "too big"})
        raw = self.rfile.read(n) if n else b""
        if not u.path.startswith("/prpc/") or u.query != "json":
            return self.reply(404, {"error": "no such route"})
        method = u.path[len("/prpc/"):]
        try:
            req = json.loads(raw.decode("utf-8")) if raw else {}
            if not isinstance(req, dict):
                raise ValueError("not an object")
        except ValueError as e:
            return self.reply(400, {"error": "invalid json: %s" % e})
        with st.lock:
            st.calls[method] = st.calls.get(method, 0) + 1
            f = st.take_fault(method)
            if f is not None and f["mode"] == "status":
                return self.reply(f["status"], {"error": "injected fault"})
            if f is not None and f["mode"] == "hang":
                pass
            elif f is not None and f["mode"] == "afterhang":
                try:
                    rpc(st, method, req)
                except (VmmError, ValueError):
                    pass
            else:
                try:
                    out = rpc(st, method, req)
                    code = 200
                except (VmmError, ValueError) as e:
                    out, code = {"error": str(e)}, 400
                if f is not None:  # mode "after": acted, but answers the fault
                    out, code = {"error": "injected fault after acting"}, f["status"]
        if f is not None and f["mode"] in ("hang", "afterhang"):
            time.sleep(3600)
            return
        self.reply(code, out)


def main():
    global BACKEND, box_backend
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--watch-stdin", action="store_true")
    ap.add_argument("--boot-polls", type=int, default=2)
    ap.add_argument("--remove-polls", type=int, default=1)
    ap.add_argument("--base-domain", default="dstack.test")
    ap.add_argument("--env-pubkey", default="00" * 32)
    ap.add_argument("--boxes", help="back every VM with a real local box under this directory")
    ap.add_argument("--tdxr", help="the tdx-runner binary (its guest-agent command), with --boxes")
    args = ap.parse_args()
    if args.boxes:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import box_backend
        if not args.tdxr:
            ap.error("--boxes needs --tdxr")
        BACKEND = box_backend.Backend(args.boxes, args.tdxr, args.base_domain,
                                      log=lambda m: sys.stderr.write("dstack_vmm_server: %s\n" % m))
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    srv.state = State(args)

    def quit_(*_):
        if BACKEND is not None:
            with srv.state.lock:
                BACKEND.shutdown()
        os._exit(0)

    signal.signal(signal.SIGTERM, quit_)
    if args.watch_stdin:
        def watch():
            while sys.stdin.buffer.read(1):
                pass
            quit_()
        threading.Thread(target=watch, daemon=True).start()
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
