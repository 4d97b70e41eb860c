#!/usr/bin/env python3
"""box_backend.py - real local boxes behind the contract test servers (phala_server.py,
dstack_vmm_server.py with --boxes): every CVM they create is backed by processes on
this machine, so `tdx-runner run --executor phala|dstack` runs the whole pipeline.

A box (ROOT/b/<id>/), all on 127.0.0.1, all started at create and killed at delete:
  - sshd in its own mount namespace (`unshare -m`), where /var/volatile is a bind
    mount of ROOT/b/<id>/volatile - the CVM's writable tmpfs: the executors' work
    roots (/var/volatile/tdx-runner, /var/volatile/tdxr-work) land there, and a
    session's `pwd` shows what it would in a CVM. Only the SSH key the executor
    sealed into encrypted_env (DSTACK_AUTHORIZED_KEYS, decrypted here with the
    app's X25519 key) is authorised; login is root, as on a dstack dev image.
  - stunnel4, the box's TLS front door, with a certificate for exactly
    <app_id>-22.<gateway domain> from this backend's test CA (ROOT/gateway-ca.pem).
  - `tdx-runner guest-agent` on ROOT/b/<id>/guest.sock (sessions get it as
    DSTACK_SIMULATOR_ENDPOINT): simulated quotes over the requested REPORTDATA with
    the server-assigned app id, the hash of the compose the executor sent and the
    instance id.

Shared by every box of a backend:
  - one SNI router on 127.0.0.1:<gateway port> (the config's executor.gateway.
    connect_to): it reads the TLS ClientHello's server name, without terminating
    TLS, and splices the connection to that box's stunnel. One address for every
    box, like the real gateway's :443, while each box keeps its own stunnel and
    certificate (started and killed with the box, so a delete never disturbs
    another box - a shared stunnel would have to re-read its configuration).
  - one simulator PKI: every guest agent runs with the same --sim-seed/--sim-time,
    so its quotes chain to one simulated root whose collateral pcs_server.py serves
    as the PCCS (policy.collateral.pccs_url): the gate fetches it and verifies for
    real (policy.allow_simulated must be true - the root is not Intel's).

Records: every write into the box's /var/volatile from its creation on (inotify on that
directory, armed before any box process starts: "writes", and the names written), and at
delete what it holds ("entries", "bytes") - the "no source byte reaches a box whose gate
failed" check reads both. box_pids() counts the
processes of every box this backend ever started: those in a box's mount namespace
(the backend holds an fd on each namespace for its lifetime, so a namespace's inode is
never reused by someone else's while it counts) and those naming ROOT/b/ in their
command line or environment (what a process that left the namespace still carries).

CLI (for test scripts, e.g. after the server is gone): `box_backend.py procs ROOT`
prints how many processes name ROOT/b/ in their command line or environment;
`box_backend.py kill ROOT` kills them (a test's cleanup trap).

Test-only: needs root (sshd logs in root; mount namespaces), python3-cryptography,
stunnel4, sshd, unshare. Binds 127.0.0.1 only.
"""
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


class BoxError(Exception):
    pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def tcp_up(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def unix_up(path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.settimeout(0.5)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def which(*names):
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    return None


def write(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ------------------------------------------------------------------ env decryption

def decrypt_env(priv, hex_env):
    """executors/common/envcrypt.c in reverse: hex(eph_pub[32] || iv[12] || ct || tag[16]),
    AES-256-GCM keyed with the raw X25519 shared secret. Returns {key: value}."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    b = bytes.fromhex(hex_env)
    if len(b) < 60:
        raise BoxError("encrypted_env is too short")
    shared = priv.exchange(X25519PublicKey.from_public_bytes(b[:32]))
    plain = AESGCM(shared).decrypt(b[32:44], b[44:], None)
    doc = json.loads(plain)
    return {e["key"]: e["value"] for e in doc["env"]}


def new_env_key():
    """An app's env-encryption key pair: (private key, public hex)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives import serialization
    k = X25519PrivateKey.generate()
    pub = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return k, pub.hex()


# ------------------------------------------------------------------ test CA

class CA:
    def __init__(self, path):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        self.x509, self.hashes, self.ser, self.ec, self.oid = x509, hashes, serialization, ec, NameOID
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tdx-runner test gateway CA")])
        self.name = name
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(hours=1))
                     .not_valid_after(now + datetime.timedelta(days=2))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                    critical=True)
                     .sign(self.key, hashes.SHA256()))
        write(path, self.cert.public_bytes(serialization.Encoding.PEM))

    def leaf(self, dns, crt_path, key_path):
        x509, NameOID = self.x509, self.oid
        key = self.ec.generate_private_key(self.ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns)]))
                .issuer_name(self.name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .sign(self.key, self.hashes.SHA256()))
        write(key_path, key.private_bytes(self.ser.Encoding.PEM, self.ser.PrivateFormat.PKCS8,
                                          self.ser.NoEncryption()), 0o600)
        write(crt_path, cert.public_bytes(self.ser.Encoding.PEM))


# ------------------------------------------------------------------ SNI router

def client_hello_sni(rec):
    """The server name of a TLS ClientHello record, lower-cased; None if absent or malformed.
    Raises IndexError/ValueError on truncated input (the caller reads more, up to a cap)."""
    if rec[0] != 0x16:
        return None
    n = int.from_bytes(rec[3:5], "big")
    hs = rec[5:5 + n]
    if len(hs) < n:
        raise IndexError("short record")
    if hs[0] != 1:
        return None
    p = 4 + 2 + 32
    p += 1 + hs[p]
    p += 2 + int.from_bytes(hs[p:p + 2], "big")
    p += 1 + hs[p]
    end = p + 2 + int.from_bytes(hs[p:p + 2], "big")
    p += 2
    while p + 4 <= end:
        t = int.from_bytes(hs[p:p + 2], "big")
        ln = int.from_bytes(hs[p + 2:p + 4], "big")
        p += 4
        if t == 0:
            d = hs[p:p + ln]
            q = 2
            while q + 3 <= len(d):
                nl = int.from_bytes(d[q + 1:q + 3], "big")
                if d[q] == 0:
                    return d[q + 3:q + 3 + nl].decode("ascii", "replace").lower()
                q += 3 + nl
            return None
        p += ln
    return None


class Router:
    def __init__(self, lookup):
        self.lookup = lookup
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.routed = 0
        self.refused = 0
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        buf = b""
        name = None
        c.settimeout(10)
        try:
            while len(buf) < 16384 + 5:
                d = c.recv(4096)
                if not d:
                    break
                buf += d
                try:
                    name = client_hello_sni(buf)
                    break
                except (IndexError, ValueError):
                    continue
            port = self.lookup(name) if name else None
            if port is None:
                self.refused += 1
                c.close()
                return
            u = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            self.refused += 1
            c.close()
            return
        self.routed += 1
        c.settimeout(None)
        u.settimeout(None)
        u.sendall(buf)
        done = [0]
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
            try:
                b.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            with lock:
                done[0] += 1
                last = done[0] == 2
            if last:
                a.close()
                b.close()

        threading.Thread(target=pump, args=(u, c), daemon=True).start()
        pump(c, u)


# ------------------------------------------------------------------ processes

def proc_ns(pid):
    try:
        return os.readlink("/proc/%d/ns/mnt" % pid)
    except OSError:
        return None


def proc_mentions(pid, needle):
    for f in ("cmdline", "environ"):
        try:
            with open("/proc/%d/%s" % (pid, f), "rb") as fh:
                if needle in fh.read():
                    return True
        except OSError:
            pass
    return False


def box_pids(root, namespaces=(), needle=None):
    """Processes in one of the mount namespaces, or naming root/b/ (or needle) in their
    command line or environment."""
    if needle is None:
        needle = (os.path.join(root, "b") + "/").encode()
    me = os.getpid()
    out = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        pid = int(e)
        if pid == me:
            continue
        if proc_ns(pid) in namespaces or proc_mentions(pid, needle):
            out.append(pid)
    return out


def kill_all(pids_fn, popens=(), grace=2.0):
    """SIGTERM, then SIGKILL after grace, whatever pids_fn() still returns."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 3.0)):
        for p in popens:
            if p.poll() is None:
                try:
                    p.send_signal(sig)
                except OSError:
                    pass
        for pid in pids_fn():
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        end = time.time() + wait
        while time.time() < end:
            for p in popens:
                p.poll()
            if all(p.returncode is not None for p in popens) and not pids_fn():
                return True
            time.sleep(0.02)
    return not pids_fn()


class Watch:
    """inotify on a box's /var/volatile, armed before any process of the box exists: whatever is
    written into the box's work root must first create (or change) an entry of that directory,
    so `events` > 0 iff anything at all was written - even if it was deleted again before the
    box was. Drained at delete (the kernel queues the events; an overflow counts as written)."""
    IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE, IN_Q_OVERFLOW = (
        0x2, 0x4, 0x8, 0x80, 0x100, 0x4000)

    def __init__(self, path):
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise BoxError("inotify_init1: %s" % os.strerror(ctypes.get_errno()))
        mask = self.IN_MODIFY | self.IN_ATTRIB | self.IN_CLOSE_WRITE | self.IN_MOVED_TO | self.IN_CREATE
        if libc.inotify_add_watch(self.fd, path.encode(), mask) < 0:
            os.close(self.fd)
            raise BoxError("inotify_add_watch %s: %s" % (path, os.strerror(ctypes.get_errno())))
        self.events = 0
        self.names = []

    def drain(self):
        while True:
            try:
                b = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                break
            off = 0
            while off + 16 <= len(b):
                mask = int.from_bytes(b[off + 4:off + 8], "little")
                ln = int.from_bytes(b[off + 12:off + 16], "little")
                name = b[off + 16:off + 16 + ln].rstrip(b"\0").decode("utf-8", "replace")
                off += 16 + ln
                self.events += 1
                if mask & self.IN_Q_OVERFLOW:
                    name = "(event queue overflow)"
                if len(self.names) < 10 and name not in self.names:
                    self.names.append(name)
        return self.events

    def close(self):
        self.drain()
        os.close(self.fd)


def tree_size(top):
    entries = nbytes = 0
    names = []
    for d, dirs, files in os.walk(top):
        for n in dirs + files:
            entries += 1
            p = os.path.join(d, n)
            if len(names) < 20:
                names.append(os.path.relpath(p, top))
            try:
                st = os.lstat(p)
                if not os.path.isdir(p):
                    nbytes += st.st_size
            except OSError:
                pass
    return {"entries": entries, "bytes": nbytes, "names": names}


# ------------------------------------------------------------------ the backend

class Backend:
    def __init__(self, root, tdxr, domain, seed=None, log=None):
        self.root = os.path.abspath(root)
        self.tdxr = tdxr
        self.domain = domain
        self.seed = seed if seed is not None else int.from_bytes(os.urandom(7), "big")
        self.sim_time = int(time.time())
        self.log = log or (lambda m: None)
        self.lock = threading.Lock()
        self.boxes = {}
        self.names = {}
        self.records = {}
        self.ns_fds = {}  # every box namespace ever made -> an fd that pins it (no inode reuse)
        self.sshd = os.environ.get("TDXR_SSHD", "/usr/sbin/sshd")
        self.stunnel = which("stunnel4", "stunnel")
        self.unshare = which("unshare")
        for what, p in (("sshd", self.sshd), ("stunnel4", self.stunnel), ("unshare", self.unshare)):
            if not p or not os.access(p, os.X_OK):
                raise BoxError("%s is not installed" % what)
        if os.geteuid() != 0:
            raise BoxError("boxes need root (sshd logs in root, mount namespaces)")
        self.host_ns = proc_ns(os.getpid())
        os.makedirs(os.path.join(self.root, "b"), exist_ok=True)
        # the mount point of every box's /var/volatile (an empty directory on the host)
        os.makedirs("/var/volatile", exist_ok=True)
        os.makedirs("/run/sshd", exist_ok=True)
        self.ca_file = os.path.join(self.root, "gateway-ca.pem")
        self.ca = CA(self.ca_file)
        self.pccs = None
        self.collateral = self._shared_pki()
        self._start_pccs()
        self.router = Router(self.lookup)
        info = {"gateway_port": self.router.port, "connect_to": "127.0.0.1:%d" % self.router.port,
                "ca_file": self.ca_file, "pccs_url": self.pccs_url, "domain": self.domain,
                "sim_seed": self.seed, "sim_time": self.sim_time}
        write(os.path.join(self.root, "backend.json"), json.dumps(info, indent=1))
        self.info = info

    # -- shared parts

    def _shared_pki(self):
        """Runs one guest agent with the shared seed to get the collateral every box's quotes
        chain to (deterministic: the same seed and time give the same certificates)."""
        d = os.path.join(self.root, "pki")
        os.makedirs(d, exist_ok=True)
        sock = os.path.join(d, "ga.sock")
        with open(os.path.join(d, "ga.log"), "ab") as lf:
            p = subprocess.Popen([self.tdxr, "guest-agent", "--socket", sock, "--box-dir", d,
                                  "--sim-seed", str(self.seed), "--sim-time", str(self.sim_time)],
                                 stdin=subprocess.DEVNULL, stdout=lf, stderr=lf)
        end = time.time() + 30
        while not unix_up(sock):
            if p.poll() is not None or time.time() > end:
                p.kill()
                raise BoxError("the shared-PKI guest agent did not start (see %s/ga.log)" % d)
            time.sleep(0.02)
        p.terminate()
        p.wait()
        return os.path.join(d, "collateral.json")

    def _start_pccs(self):
        self.pccs = subprocess.Popen([sys.executable, os.path.join(HERE, "pcs_server.py"),
                                      "--collateral", self.collateral, "--watch-stdin"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.pccs.stdout.readline().decode()
        if not line.startswith("PORT "):
            raise BoxError("pcs_server.py did not start")
        self.pccs_url = "http://127.0.0.1:%d" % int(line.split()[1])

    def lookup(self, name):
        with self.lock:
            return self.names.get(name)

    def server_name(self, app_id):
        return "%s-22.%s" % (app_id, self.domain)

    # -- boxes

    def start(self, box_id, app_id, instance_id, compose_text, authorized_keys, fault=None):
        """Boots a box in the background (a CVM boots after the API answered); status() says
        when its sshd, TLS front door and guest agent all answer. fault: None,
        "tamper-eventlog", "replay-quote" (guest-agent test faults) or "wrong-app-id" (its
        guest agent claims another app id)."""
        d = os.path.join(self.root, "b", box_id)
        os.makedirs(os.path.join(d, "volatile"), mode=0o755)
        box = {"id": box_id, "dir": d, "app_id": app_id, "popens": [], "ns": None,
               "name": self.server_name(app_id), "state": "booting", "error": None,
               "watch": Watch(os.path.join(d, "volatile"))}
        with self.lock:
            self.boxes[box_id] = box
        box["thread"] = threading.Thread(target=self._boot, daemon=True,
                                         args=(box, instance_id, compose_text, authorized_keys, fault))
        box["thread"].start()

    def _boot(self, box, instance_id, compose_text, authorized_keys, fault):
        try:
            self._start(box, instance_id, compose_text, authorized_keys, fault)
        except Exception as e:
            self.log("box %s: start failed: %s" % (box["id"], e))
            box["error"] = "box did not start: %s" % e
            box["state"] = "failed"
            return
        with self.lock:
            if self.boxes.get(box["id"]) is box:  # not deleted while booting
                self.names[box["name"]] = box["tls_port"]
            box["state"] = "running"
        self.log("box %s up: %s -> sshd %d (ns %s)" % (box["id"], box["name"], box["sshd_port"], box["ns"]))

    def status(self, box_id):
        """("booting" | "running" | "failed" | None for no such box, error text or None)."""
        with self.lock:
            box = self.boxes.get(box_id)
            return (box["state"], box["error"]) if box else (None, None)

    def _start(self, box, instance_id, compose_text, authorized_keys, fault):
        d = box["dir"]
        with open(os.path.join(d, "box.log"), "ab") as lf:
            self._start_in(box, lf, instance_id, compose_text, authorized_keys, fault)

    def _start_in(self, box, lf, instance_id, compose_text, authorized_keys, fault):
        d = box["dir"]
        write(os.path.join(d, "authorized_keys"), authorized_keys.strip() + "\n", 0o600)
        write(os.path.join(d, "app-compose.json"), compose_text)
        hk = os.path.join(d, "ssh_host_ed25519_key")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "box " + box["id"], "-f", hk],
                       check=True, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf)
        self.ca.leaf(box["name"], os.path.join(d, "tls.crt"), os.path.join(d, "tls.key"))
        sock = os.path.join(d, "guest.sock")
        ga_app = box["app_id"]
        env = dict(os.environ)
        env.pop("TDXR_TEST_FAULTS", None)
        faults = []
        if fault == "wrong-app-id":
            ga_app = "%040x" % (int(box["app_id"], 16) ^ 1)
        elif fault in ("tamper-eventlog", "replay-quote"):
            faults = ["--test-fault", fault]
            env["TDXR_TEST_FAULTS"] = "1"
        elif fault:
            raise BoxError("unknown box fault %s" % fault)

        def spawn(argv, e=None):
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf, env=e,
                                 start_new_session=True)
            box["popens"].append(p)
            return p

        ga = spawn([self.tdxr, "guest-agent", "--socket", sock, "--box-dir", os.path.join(d, "ga"),
                    "--app-compose", os.path.join(d, "app-compose.json"), "--app-id", ga_app,
                    "--instance-id", instance_id, "--sim-seed", str(self.seed),
                    "--sim-time", str(self.sim_time)] + faults, env)
        # The ports are picked free and bound by sshd / stunnel a moment later; a process that
        # exits at start lost that race to someone else (the other e2e test): new ports, again.
        for attempt in range(3):
            sp, tp = free_port(), free_port()
            box["sshd_port"], box["tls_port"] = sp, tp
            write(os.path.join(d, "sshd_config"),
                  "Port %d\nListenAddress 127.0.0.1\nHostKey %s\nPidFile %s/sshd.pid\n"
                  "AuthorizedKeysFile %s/authorized_keys\nStrictModes no\nUsePAM no\n"
                  "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                  "PermitRootLogin prohibit-password\nAllowUsers root\nAllowTcpForwarding no\n"
                  "X11Forwarding no\nPermitUserEnvironment no\n"
                  "SetEnv DSTACK_SIMULATOR_ENDPOINT=%s TDXR_BOX=%s/\nLogLevel ERROR\n"
                  % (sp, hk, d, d, sock, d), 0o600)
            write(os.path.join(d, "stunnel.conf"),
                  "foreground = yes\npid =\ndebug = 3\n[box]\naccept = 127.0.0.1:%d\n"
                  "connect = 127.0.0.1:%d\ncert = %s/tls.crt\nkey = %s/tls.key\n" % (tp, sp, d, d))
            # sshd sees the box's volatile directory at /var/volatile and the box's own home at
            # /root, as in a CVM: nothing a job writes under ~ reaches the host or another box,
            # and the host's shell start-up files (pyenv, ...) do not run in box sessions
            home = os.path.join(d, "root")
            os.makedirs(home, mode=0o700, exist_ok=True)
            write(os.path.join(home, ".bashrc"), "# box home: the host's start-up files do not run here\n", 0o644)
            sshd = spawn([self.unshare, "-m", "--propagation", "private", "/bin/sh", "-c",
                          'mount --bind "$0" /var/volatile && mount --bind "$3" /root && exec "$1" -D -e -f "$2"',
                          os.path.join(d, "volatile"), self.sshd, os.path.join(d, "sshd_config"), home])
            st = spawn([self.stunnel, os.path.join(d, "stunnel.conf")])
            lost = None
            end = time.time() + 30
            while lost is None:
                if ga.poll() is not None:
                    raise BoxError("the guest agent exited at start (see %s/box.log)" % d)
                for p, what in ((sshd, "sshd"), (st, "stunnel")):
                    if p.poll() is not None:
                        lost = what
                if lost is None and tcp_up(sp) and tcp_up(tp) and unix_up(sock):
                    time.sleep(0.05)  # still alive once its port answers: it is ours
                    if sshd.poll() is None and st.poll() is None:
                        break
                    continue
                if time.time() > end:
                    raise BoxError("not up within 30 s (see %s/box.log)" % d)
                time.sleep(0.02)
            if lost is None:
                break
            for p in (sshd, st):
                if p.poll() is None:
                    p.kill()
                p.wait()
                box["popens"].remove(p)
            if attempt == 2:
                raise BoxError("%s exited at start three times (see %s/box.log)" % (lost, d))
            self.log("box %s: %s exited at start; new ports" % (box["id"], lost))
        ns = proc_ns(sshd.pid)
        try:
            fd = os.open("/proc/%d/ns/mnt" % sshd.pid, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd = -1
        if ns is None or ns == self.host_ns or fd < 0 or proc_ns(sshd.pid) != ns:
            if fd >= 0:
                os.close(fd)
            raise BoxError("sshd is not in its own mount namespace")
        with self.lock:
            self.ns_fds[ns] = fd
        box["ns"] = ns

    def delete(self, box_id):
        """Kills every process of the box, records what its /var/volatile holds, removes it.
        Returns the record ({entries, bytes, names}); None if no such box."""
        with self.lock:
            box = self.boxes.pop(box_id, None)
            if box is None:
                return self.records.get(box_id)
            self.names.pop(box["name"], None)
        box["thread"].join(60)  # a box deleted while booting: let it finish starting, then kill it
        ns = box["ns"]

        def pids():
            return box_pids(self.root, {ns} if ns else (), (box["dir"] + "/").encode())

        clean = kill_all(pids, box["popens"])
        rec = tree_size(os.path.join(box["dir"], "volatile"))
        rec["clean_kill"] = clean
        with self.lock:
            box["watch"].close()
        rec["writes"] = box["watch"].events
        rec["written"] = box["watch"].names
        shutil.rmtree(box["dir"], ignore_errors=True)
        with self.lock:
            self.records[box_id] = rec
        self.log("box %s deleted: %d entries, %d bytes in /var/volatile" % (box_id, rec["entries"], rec["bytes"]))
        return rec

    def leftover_pids(self):
        """Processes of any box this backend started (live boxes included)."""
        with self.lock:
            nss = set(self.ns_fds)
        return box_pids(self.root, nss)

    def live(self):
        with self.lock:
            return sorted(self.boxes)

    def work(self, box_id):
        """What the box's /var/volatile holds now (live box) or held at delete."""
        with self.lock:
            box = self.boxes.get(box_id)
            if box is None:
                return self.records.get(box_id)
        rec = tree_size(os.path.join(box["dir"], "volatile"))
        with self.lock:
            rec["writes"] = box["watch"].drain()
            rec["written"] = list(box["watch"].names)
        return rec

    def shutdown(self):
        for b in self.live():
            try:
                self.delete(b)
            except Exception:
                pass
        if self.pccs and self.pccs.poll() is None:
            self.pccs.terminate()
            try:
                self.pccs.wait(5)
            except subprocess.TimeoutExpired:
                self.pccs.kill()
        try:
            self.router.sock.close()
        except OSError:
            pass


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("procs", "kill"):
        sys.exit("usage: box_backend.py procs|kill ROOT")
    root = os.path.abspath(sys.argv[2])
    if sys.argv[1] == "procs":
        print(len(box_pids(root)))
    else:
        kill_all(lambda: box_pids(root))


if __name__ == "__main__":
    main()
