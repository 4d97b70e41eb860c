#!/usr/bin/env bash
# test_sync.sh - agent/remote/sync end to end against a real sshd on loopback with
# a generated repository of 10 000 files / 200 MB (200 x 1 MiB + 9 800 small).
#
# Starts a throwaway /usr/sbin/sshd (own host and user keys, config in a temp dir,
# StrictModes no, UsePAM no), writes an ssh config for it, generates the repository
# (two commits; spaces+newline name, inside/absolute/escaping symlinks, .gitignore'd
# files), then runs the sync unit-test binary, whose sshd scenario is enabled by
# TDXR_SYNC_* variables: full sync, 1-file change (exactly one file transferred),
# rename, deletion of a file and a directory, ignored remote outputs kept, the
# mass-deletion guard, and a CI checkout at a SHA from a file:// remote. The remote
# shell is `ssh -F CONFIG`, then (when the binary has `rsh`) `tdx-runner rsh LEASE`
# as the job uses it: one connected session, each rsync run a channel on it through
# the multiplexer (sshd must log exactly one login for that whole run). Prints
# "SKIP: reason" when a tool is missing.
# Env (set by ctest): TDXR_BUILD_DIR, TDXR_BIN, TDXR_SOURCE_DIR.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=${TDXR_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
build=${TDXR_BUILD_DIR:-$src/build}
BIN=${TDXR_BIN:-$build/agent/tdx-runner}
TEST=$build/tests/test_sync

skip() {
	echo "SKIP: $*"
	exit 0
}

[[ -x $TEST ]] || skip "sync test binary not found at $TEST"
[[ -x /usr/sbin/sshd ]] || skip "/usr/sbin/sshd is not installed (openssh-server)"
for t in ssh ssh-keygen rsync git python3 diff; do
	command -v $t >/dev/null 2>&1 || skip "$t is not installed"
done

T=$(mktemp -d /tmp/tdxr-sync.XXXXXX)
chmod 700 "$T"
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$T"
}
trap cleanup EXIT

# ---- sshd -----------------------------------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ssh-keygen -q -t ed25519 -N '' -C host -f "$T/host" || skip "ssh-keygen failed"
ssh-keygen -q -t ed25519 -N '' -C user -f "$T/user"
cp "$T/user.pub" "$T/authorized_keys"
[[ -d /run/sshd ]] || mkdir -p /run/sshd 2>/dev/null || true
cat >"$T/sshd.conf" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $T/host
PidFile $T/sshd.pid
AuthorizedKeysFile $T/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin yes
PasswordAuthentication no
KbdInteractiveAuthentication no
LogLevel INFO
CONF
/usr/sbin/sshd -D -f "$T/sshd.conf" -E "$T/sshd.log" &
pids+=($!)
echo "[127.0.0.1]:$port $(cut -d' ' -f1-2 "$T/host.pub")" >"$T/known_hosts"
cat >"$T/ssh_config" <<CONF
Host box
	HostName 127.0.0.1
	Port $port
	User $(id -un)
	IdentityFile $T/user
	IdentitiesOnly yes
	UserKnownHostsFile $T/known_hosts
	StrictHostKeyChecking yes
	BatchMode yes
	LogLevel ERROR
CONF
up=0
for _ in $(seq 1 50); do
	if ssh -F "$T/ssh_config" box true 2>/dev/null; then
		up=1
		break
	fi
	sleep 0.1
done
[[ $up == 1 ]] || {
	cat "$T/sshd.log" || true
	skip "sshd does not accept our key here (see log above)"
}

# ---- the repository: 200 x 1 MiB + 9 800 small files ------------------------------
t0=$SECONDS
R=$T/repo
mkdir -p "$R/big" "$R/odd" "$R/build"
git init -q "$R"
# Each 1 MiB blob is its own 16 KiB random block repeated: distinct files, full
# size for rsync (which does not compress here), but cheap for zlib when libgit2
# packs the fetch (200 MiB of pure noise costs ~30 s of deflate on 2 cores).
python3 - "$R" <<'PY'
import os, sys
r = sys.argv[1]
for i in range(200):
    with open(f"{r}/big/blob-{i:03d}", "wb") as f:
        f.write(os.urandom(16384) * 64)
for d in range(98):
    os.makedirs(f"{r}/small/d{d:02d}", exist_ok=True)
for i in range(9800):
    with open(f"{r}/small/d{i % 98:02d}/f{i:04d}.txt", "w") as f:
        f.write(f"file {i}\n" * (1 + i % 7))
with open(f"{r}/odd/name with spaces\nand newline.txt", "w") as f:
    f.write("odd\n")
with open(f"{r}/.gitignore", "w") as f:
    f.write("*.log\nbuild/\n")
PY
ln -s small/d00/f0000.txt "$R/inner-link"
ln -s /etc/passwd "$R/abs-link"
ln -s ../outside "$R/escape-link"
echo "ignored" >"$R/ignored.log"
echo "ignored" >"$R/build/out.bin"
G="git -C $R -c user.name=t -c user.email=t@example.com -c core.compression=0 -c gc.auto=0"
$G add -A
$G commit -q -m one
echo v2 >"$R/small/d00/f0000.txt.v2"
$G add -A
$G commit -q -m two
# The fixture's own packing knob (the fetch below packs from this repository):
# the 1 MiB blobs are unrelated, so do not search deltas among them.
git -C "$R" config pack.bigFileThreshold 256k
echo "repository generated in $((SECONDS - t0)) s: $(git -C "$R" ls-files | wc -l) files tracked, $(du -sm "$R/big" | cut -f1) MiB of big blobs"

# ---- a git smart-HTTP server that wants Basic auth (for the token path) -------------
H=$T/http-origin
mkdir -p "$H"
git init -q "$H"
echo hello >"$H/hello.txt"
git -C "$H" -c user.name=t -c user.email=t@example.com add -A
git -C "$H" -c user.name=t -c user.email=t@example.com commit -q -m hello
# an unreferenced commit, fetchable by id (uploadpack.allowAnySHA1InWant)
git -C "$H" checkout -q -b tmp
echo dangling >"$H/hello.txt"
git -C "$H" -c user.name=t -c user.email=t@example.com commit -qam dangling
dangling=$(git -C "$H" rev-parse HEAD)
git -C "$H" checkout -q -
git -C "$H" branch -q -D tmp
git -C "$H" config uploadpack.allowAnySHA1InWant true
(umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/token")
cat >"$T/githttp.py" <<'PY'
# git http-backend behind Basic auth (user x-access-token, password = the token file).
import base64, http.server, os, subprocess, sys
root, tokfile, portfile, logf = sys.argv[1:]
tok = open(tokfile).read().strip()
want = "Basic " + base64.b64encode(("x-access-token:" + tok).encode()).decode()

class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                n = int(self.rfile.readline().strip().split(b";")[0], 16)
                if n == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(n)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def serve(self):
        auth = self.headers.get("Authorization")
        with open(logf, "a") as f:
            f.write("%s %s auth=%s\n" % (self.command, self.path, "yes" if auth == want else ("bad" if auth else "no")))
        data = self.body()
        if self.path.startswith("/moved/"):
            self.send_response(301)
            self.send_header("Location", "http://localhost:%d/%s" % (self.server.server_address[1], self.path[7:]))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if auth != want:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_PROJECT_ROOT": root,
               "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": self.command, "PATH_INFO": path,
               "QUERY_STRING": query, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
               "CONTENT_LENGTH": str(len(data)), "REMOTE_USER": "x-access-token", "REMOTE_ADDR": "127.0.0.1"}
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        out = subprocess.run(["git", "http-backend"], input=data, env=env, capture_output=True).stdout
        sep = b"\r\n\r\n" if b"\r\n\r\n" in out else b"\n\n"
        head, _, rest = out.partition(sep)
        code, hdrs = 200, []
        for line in head.decode("latin-1").splitlines():
            k, _, v = line.partition(":")
            if k.lower() == "status":
                code = int(v.split()[0])
            elif k:
                hdrs.append((k, v.strip()))
        self.send_response(code)
        for k, v in hdrs:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        self.wfile.write(rest)

    do_GET = do_POST = serve

s = http.server.ThreadingHTTPServer(("0.0.0.0", 0), H)
with open(portfile + ".tmp", "w") as f:
    f.write(str(s.server_address[1]))
os.rename(portfile + ".tmp", portfile)
s.serve_forever()
PY
python3 "$T/githttp.py" "$T" "$T/token" "$T/http.port" "$T/http.log" &
pids+=($!)
for _ in $(seq 1 50); do [[ -s $T/http.port ]] && break; sleep 0.1; done
[[ -s $T/http.port ]] || skip "the git HTTP test server did not start"
hport=$(cat "$T/http.port")
hsha=$(git -C "$H" rev-parse HEAD)
export TDXR_SYNC_HTTP_URL="http://127.0.0.1:$hport/http-origin" TDXR_SYNC_HTTP_SHA=$hsha
export TDXR_SYNC_HTTP_TOKEN_FILE=$T/token TDXR_SYNC_HTTP_LOG=$T/http.log TDXR_SYNC_HTTP_DANGLING=$dangling
ip=$(hostname -I 2>/dev/null | awk '{print $1}' || true)
if [[ -n $ip && $ip != 127.* && $ip != *:* ]]; then
	export TDXR_SYNC_HTTP_URL_PLAIN="http://$ip:$hport/http-origin"
fi

# ---- run the scenario ---------------------------------------------------------------
run_scenario() { # run_scenario LABEL RSH HOST
	local work="$T/work-$1"
	mkdir -p "$work"
	echo "== scenario through $1: $2"
	TDXR_SYNC_RSH="$2" TDXR_SYNC_HOST="$3" TDXR_SYNC_REPO="$R" TDXR_SYNC_WORK="$work" \
		CMOCKA_MESSAGE_OUTPUT=stdout "$TEST"
	rm -rf "$work"
	# restore the tree for a possible second run
	git -C "$R" checkout -q -- . 2>/dev/null || true
	git -C "$R" clean -q -f -d -e '*.log' -e build/ small 2>/dev/null || true
}
run_scenario ssh "ssh -F $T/ssh_config" box

# The same scenario through our own remote shell: a lease file for this sshd
# (direct transport, host key pinned on first use by tdx-runner itself).
if [[ -x $BIN ]] && "$BIN" help 2>&1 | grep -qw rsh; then
	L=$T/lease.json
	python3 - "$L" "$port" "$(id -un)" "$T" <<'PY'
import json, os, sys
f, port, user, t = sys.argv[1:]
d = {"id": "lease-sync", "executor": "local", "user": user, "key_file": t + "/user",
     "transport": "direct", "host": "127.0.0.1", "port": int(port),
     "host_key_sha256": None, "work_dir": t}
fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, json.dumps(d).encode()); os.close(fd)
PY
	# As the job runs it: one session (the lease connected once), every rsync run a
	# channel on it through the multiplexer - so sshd accepts exactly one login.
	before=$(grep -c "Accepted publickey" "$T/sshd.log" || true)
	TDXR_SYNC_MUX_LEASE=$L run_scenario rsh-mux "$BIN rsh $L" box
	logins=$(($(grep -c "Accepted publickey" "$T/sshd.log" || true) - before))
	echo "logins during the multiplexed scenario: $logins"
	[[ $logins == 1 ]] || { echo "FAIL: the multiplexed scenario made $logins SSH logins, want 1"; exit 1; }
else
	echo "SKIP: tdx-runner rsh is not available in $BIN; the scenario ran through ssh -F only"
fi
echo "test_sync: all passed"
