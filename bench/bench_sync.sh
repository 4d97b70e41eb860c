#!/usr/bin/env bash
# bench_sync.sh - transport and sync benchmark (issue 3), in one run on loopback
# against ONE throwaway sshd (temp host/user keys, as tests/integration/test_remote.sh
# starts it) with a stunnel4 TLS front door (test CA, certificate for
# <app>-22.gateway.test, dialled through the lease's connect_to):
#   ours-tls     rsync -e "tdx-runner rsh LEASE"  TLS + libssh2 (the dstack gateway path)
#   ours-direct  rsync -e "tdx-runner rsh LEASE"  plain TCP + libssh2 (local executor)
#   ssh          rsync -e "ssh -F CFG"           OpenSSH direct to the same sshd (baseline)
#   ssh-tls      rsync -e "ssh -F CFG"           OpenSSH through `openssl s_client` to the
#                                                same gateway (the reference's way)
# on a generated git repository (default 10 000 files, ~200 MB of random bytes; the
# file list is `git ls-files -z`). Each sync is timed as agent/remote/sync.c runs
# it - a listing dry run, then the transfer with its exact argv - and the transfer
# alone, for a full sync into an empty directory and an incremental one after a
# 1-file change. Then the real sync code (bench/bench_sync_push: remote_sync_push with
# a snapshot file) full and incremental, twice: each rsync run connecting by itself
# ("snap"), and as the job runs it ("snap-mux": one session connected beforehand, the
# rsync runs as channels on it through the multiplexer, remote_sync_push_worktree);
# and the pieces of an incremental push's fixed cost timed alone. Also exec
# round-trip latency: `tdx-runner ssh LEASE -- true` vs `ssh -F CFG host true`,
# direct and through TLS (median, p90).
# Writes the section between <!-- sync:begin --> and <!-- sync:end --> of
# bench/RESULTS.md (appended when absent; the rest of the file is left byte-identical).
#
# usage: bench/bench_sync.sh [-n FILES] [-s MB] [-r REPS] [-l RUNS] [-o FILE] [--no-write]
#                            [--skip-shell-rc]
#   -n FILES  files in the generated repo (default 10000); size scales (20 kB average)
#   -s MB     total size in MB (10^6 bytes) instead of FILES x 20 kB
#   -r REPS   full and incremental syncs per variant (default 5; median reported)
#   -l RUNS   exec round trips per variant (default 30)
#   --skip-shell-rc  sshd gets `SetEnv SHLVL=1`, so a bash login shell does not source
#             ~/.bashrc for each command (Debian's bash does when run by sshd); the
#             section always reports what that start-up costs on this host
# Env: BENCH2_BUILD_DIR (default build-bench2: Release, -DTDXR_TESTS=OFF),
#      TDXR_BIN (use this binary instead of building), TMPDIR (work space: ~5x the size).
# Timings are never pass/fail; a sync that does not reproduce the tree is an error.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BENCH2_BUILD_DIR:-$src/build-bench2}
nfiles=10000
mb=
reps=5
lat=30
out=$src/bench/RESULTS.md
write=1
skiprc=0
cmdline="bench/bench_sync.sh${*:+ $*}"

while [[ $# -gt 0 ]]; do
	case $1 in
	-n) nfiles=$2; shift 2 ;;
	-s) mb=$2; shift 2 ;;
	-r) reps=$2; shift 2 ;;
	-l) lat=$2; shift 2 ;;
	-o) out=$2; shift 2 ;;
	--no-write) write=0; shift ;;
	--skip-shell-rc) skiprc=1; shift ;;
	-h|--help) awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
	*) echo "bench_sync.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
isint() { [[ $1 =~ ^[0-9]+$ && $1 -ge $2 ]]; }
isint "$nfiles" 1 || { echo "bench_sync.sh: -n needs an integer >= 1" >&2; exit 2; }
[[ -z $mb ]] || isint "$mb" 1 || { echo "bench_sync.sh: -s needs an integer >= 1" >&2; exit 2; }
isint "$reps" 1 || { echo "bench_sync.sh: -r needs an integer >= 1" >&2; exit 2; }
isint "$lat" 3 || { echo "bench_sync.sh: -l needs an integer >= 3" >&2; exit 2; }
bytes=$((${mb:-0} > 0 ? mb * 1000000 : nfiles * 20000))
[[ -x /usr/sbin/sshd ]] || { echo "bench_sync.sh: /usr/sbin/sshd is required (openssh-server)" >&2; exit 2; }
for t in ssh ssh-keygen openssl python3 rsync git; do
	command -v $t >/dev/null 2>&1 || { echo "bench_sync.sh: $t is required" >&2; exit 2; }
done
STUNNEL=$(command -v stunnel4 || command -v stunnel || true)
[[ -n $STUNNEL ]] || { echo "bench_sync.sh: stunnel4 is required" >&2; exit 2; }

if [[ -n ${TDXR_BIN:-} ]]; then
	BIN=$TDXR_BIN
else
	cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTDXR_TESTS=OFF \
		-DTDXR_WERROR=OFF >/dev/null
	ninja -C "$build" -j2 tdx-runner bench_sync_push >&2
	BIN=$build/agent/tdx-runner
fi
PUSH=${BENCH_SYNC_PUSH:-$build/bench/bench_sync_push} # the real sync.c (agent/remote/sync.c)
[[ -x $BIN ]] || { echo "bench_sync.sh: no tdx-runner at $BIN" >&2; exit 2; }
HELP=$src/tests/integration/remote_helpers.py

T=$(mktemp -d "${TMPDIR:-/tmp}/tdxr-bench-sync.XXXXXX")
chmod 700 "$T"
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$T"
}
trap cleanup EXIT
log() { echo "bench_sync: $*" >&2; }
die() {
	echo "bench_sync.sh: $*" >&2
	exit 1
}
freeport() { python3 "$HELP" freeport; }
wait_port() {
	local _
	for _ in $(seq 1 100); do
		python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
user=$(id -un)
[[ -d /run/sshd ]] || mkdir -p /run/sshd 2>/dev/null || true
export LC_ALL=C # as sync.c runs rsync

# ---- peers: sshd, the TLS gateway, leases, an OpenSSH client config ------------
ssh-keygen -q -t ed25519 -N '' -C host -f "$T/host"
ssh-keygen -q -t ed25519 -N '' -C user -f "$T/user"
cp "$T/user.pub" "$T/authorized_keys"
fp=$(ssh-keygen -l -E sha256 -f "$T/host.pub" | awk '{print $2}')
app=944edab771280ede410e7b9e66fcaee6b2c4a12c
name="$app-22.gateway.test"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/ca.key" \
	-out "$T/ca.crt" -days 30 -subj "/CN=tdxr bench ca" >/dev/null 2>&1
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/gw.key" \
	-out "$T/gw.csr" -subj "/CN=$name" >/dev/null 2>&1
printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' "$name" >"$T/gw.ext"
openssl x509 -req -in "$T/gw.csr" -CA "$T/ca.crt" -CAkey "$T/ca.key" -CAcreateserial -days 30 \
	-extfile "$T/gw.ext" -out "$T/gw.crt" >/dev/null 2>&1

sshd_start() { # sshd_start NAME PORT LOGLEVEL
	cat >"$T/$1.conf" <<CONF
Port $2
ListenAddress 127.0.0.1
HostKey $T/host
PidFile $T/$1.pid
AuthorizedKeysFile $T/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin yes
PasswordAuthentication no
KbdInteractiveAuthentication no
MaxStartups 100
LogLevel $3
CONF
	[[ $skiprc == 0 ]] || echo 'SetEnv SHLVL=1' >>"$T/$1.conf"
	/usr/sbin/sshd -D -f "$T/$1.conf" -E "$T/$1.log" &
	pids+=($!)
	wait_port "$2"
}
sp=$(freeport)
sshd_start sshd "$sp" ERROR || { cat "$T/sshd.log" >&2; die "sshd does not start here"; }
gp=$(freeport)
cat >"$T/stunnel.conf" <<CONF
foreground = yes
pid =
debug = 3
[gw]
accept = 127.0.0.1:$gp
connect = 127.0.0.1:$sp
cert = $T/gw.crt
key = $T/gw.key
CONF
"$STUNNEL" "$T/stunnel.conf" >"$T/stunnel.log" 2>&1 &
pids+=($!)
wait_port "$gp" || { cat "$T/stunnel.log" >&2; die "stunnel does not start here"; }

# Lease files (agent/remote/remote.h format), host key pinned up front.
python3 - "$T" "$user" "$sp" "$name" "$gp" "$fp" <<'PY'
import json, os, sys
t, user, sp, name, gp, fp = sys.argv[1:]
base = {"executor": "local", "user": user, "key_file": t + "/user", "host_key_sha256": fp,
        "work_dir": t + "/dst"}
leases = {
    "direct": dict(base, id="bench-direct", transport="direct", host="127.0.0.1", port=int(sp)),
    "tls": dict(base, id="bench-tls", transport="tls", host="127.0.0.1", port=22,
                tls={"server_name": name, "connect_to": "127.0.0.1:" + gp, "ca_file": t + "/ca.crt"}),
}
for k, d in leases.items():
    fd = os.open("%s/lease-%s.json" % (t, k), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, json.dumps(d).encode())
    os.close(fd)
PY
LD=$T/lease-direct.json
LT=$T/lease-tls.json
printf '[127.0.0.1]:%s %s\nbench %s\n' "$sp" "$(cut -d' ' -f1-2 "$T/host.pub")" \
	"$(cut -d' ' -f1-2 "$T/host.pub")" >"$T/known_hosts"
cat >"$T/ssh_config" <<CONF
Host bench
  HostName 127.0.0.1
  Port $sp
Host bench-tls
  HostName $name
  HostKeyAlias bench
  ProxyCommand openssl s_client -quiet -verify_quiet -verify_return_error -verify_hostname $name -CAfile $T/ca.crt -servername $name -connect 127.0.0.1:$gp
Host *
  User $user
  IdentityFile $T/user
  IdentitiesOnly yes
  UserKnownHostsFile $T/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  UpdateHostKeys no
  BatchMode yes
  ControlMaster no
  ControlPath none
  LogLevel ERROR
CONF

variants=(ours-tls ours-direct ssh ssh-tls)
declare -A RSH HOST
RSH[ours-tls]="$BIN rsh $LT"
HOST[ours-tls]=box
RSH[ours-direct]="$BIN rsh $LD"
HOST[ours-direct]=box
RSH[ssh]="ssh -F $T/ssh_config"
HOST[ssh]=bench
RSH[ssh-tls]="ssh -F $T/ssh_config"
HOST[ssh-tls]=bench-tls
for v in "${variants[@]}"; do
	[[ $(${RSH[$v]} "${HOST[$v]}" echo ok 2>"$T/probe.err") == ok ]] ||
		die "$v: cannot run a command: $(head -c 400 "$T/probe.err")"
done
log "sshd :$sp, gateway :$gp ($name), all 4 remote shells work"

# ---- the repository -------------------------------------------------------------
repo=$T/repo
log "generating $nfiles files, $bytes bytes"
python3 - "$repo" "$nfiles" "$bytes" <<'PY'
import os, random, sys
root, n, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(20261126)
w = [rng.lognormvariate(0, 1.2) for _ in range(n)]
s = sum(w)
sizes = [max(1, int(x * total / s)) for x in w]
sizes[0] += total - sum(sizes)  # exact total
per = max(1, int(n ** 0.5))
for i, size in enumerate(sizes):
    d = os.path.join(root, "src", "d%04d" % (i // per))
    if i % per == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%06d.dat" % i), "wb") as f:
        f.write(os.urandom(size))
PY
(
	cd "$repo"
	git init -q
	git -c core.looseCompression=0 add -A
	git -c user.name=bench -c user.email=bench@invalid commit -qm generated
	git ls-files -z >"$T/files.lst"
)
total=$(python3 -c "import os,sys; print(sum(os.path.getsize(os.path.join(sys.argv[1],p.decode())) for p in open(sys.argv[2],'rb').read().split(b'\0') if p))" "$repo" "$T/files.lst")
mapfile -d '' -t files <"$T/files.lst"
log "repo ready: ${#files[@]} files, $total bytes"
mkdir -p "$T/empty" "$T/dst"

# ---- timed pieces ---------------------------------------------------------------
: >"$T/results.tsv"
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$T/results.tsv"; }
US=0
timed() { # timed LOG cmd...: runs cmd (stdin /dev/null, output to LOG), sets US
	local f=$1 t0 t1 rc=0
	shift
	t0=${EPOCHREALTIME/./}
	"$@" </dev/null >"$f" 2>&1 || rc=$?
	t1=${EPOCHREALTIME/./}
	US=$((t1 - t0))
	return $rc
}
sync_list() { # sync.c sync_remote_list: a dry run from an empty directory with --delete
	rsync -e "${RSH[$1]}" -r --links --dry-run --delete '--out-format=%i|%n' -- "$T/empty/" \
		"${HOST[$1]}:$T/dst/$1/"
}
sync_xfer() { # sync.c remote_sync_push's transfer, argv for argv
	rsync -e "${RSH[$1]}" -a --links --safe-links --force --from0 "--files-from=$T/files.lst" --stats \
		-- "$repo/" "${HOST[$1]}:$T/dst/$1/"
}
one_sync() { # one_sync KIND REP VARIANT
	timed "$T/list.log" sync_list "$3" || die "$3: listing failed: $(tail -3 "$T/list.log")"
	rec "$1" "$3" "$2" list_us "$US"
	timed "$T/xfer-$3.log" sync_xfer "$3" || die "$3: transfer failed: $(tail -3 "$T/xfer-$3.log")"
	rec "$1" "$3" "$2" xfer_us "$US"
	rec "$1" "$3" "$2" sent_bytes "$(sed -n 's/^Total bytes sent: \([0-9,.]*\).*/\1/p' "$T/xfer-$3.log" | tr -d ,.)"
}
same_tree() { diff -rq --exclude=.git "$repo" "$T/dst/$1" >"$T/diff.log" 2>&1; }
rotate() { # the variants, starting at index $1 mod 4 (spreads drift in machine load)
	local k
	for k in 0 1 2 3; do echo "${variants[$(((k + $1) % 4))]}"; done
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for rep in $(seq 1 "$reps"); do
	for v in $(rotate "$rep"); do
		rm -rf "${T:?}/dst/$v"
		mkdir "$T/dst/$v"
		sync -f "$T/dst" 2>/dev/null || true
		one_sync full "$rep" "$v"
		if [[ $rep == 1 ]]; then same_tree "$v" || die "$v: full sync did not reproduce the tree: $(head -5 "$T/diff.log")"; fi
	done
	log "full sync rep $rep/$reps done"
done
for rep in $(seq 1 "$reps"); do
	f=$repo/${files[$(((rep * 7919) % ${#files[@]}))]}
	python3 -c "import os,sys; n=os.path.getsize(sys.argv[1]); open(sys.argv[1],'wb').write(os.urandom(n))" "$f"
	touch -d "@$(($(date +%s) + rep))" "$f" # a new mtime even within the same second
	for v in $(rotate "$rep"); do one_sync incr "$rep" "$v"; done
	log "incremental rep $rep/$reps done (changed ${f#"$repo"/})"
done
for v in "${variants[@]}"; do same_tree "$v" || die "$v: incremental sync left a different tree: $(head -5 "$T/diff.log")"; done

# The real sync code (remote_sync_push through `tdx-runner rsh` over TLS) with a
# snapshot: a full push writes it, the incremental push after a 1-file change is
# one rsync run of the changed files (no remote listing). Two ways, alternating:
#   snap      every rsync run's `tdx-runner rsh` connects by itself (TCP, TLS, SSH)
#   snap-mux  as the job runs it: the lease is connected and one command run on it
#             first (the job's attestation gate fetches the quote over that session
#             before it syncs; both timed apart) and remote_sync_push_worktree
#             gets it: the rsync runs open channels on it through the multiplexer,
#             one pre-started while the manifest is made.
if [[ -x $PUSH ]]; then
	for rep in $(seq 1 "$reps"); do
		for sv in $( ((rep % 2)) && echo "snap snap-mux" || echo "snap-mux snap"); do
			mflag=
			[[ $sv == snap-mux ]] && mflag=--mux
			rm -rf "${T:?}/dst/$sv" "$T/$sv.state"
			mkdir "$T/dst/$sv"
			pj=$("$PUSH" --rsh "$BIN" --lease "$LT" --host "${HOST[ours-tls]}" --dest "$T/dst/$sv" --state "$T/$sv.state" $mflag "$repo") ||
				die "bench_sync_push $sv full failed"
			rec full "$sv" "$rep" push_us "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["us"])' "$pj")"
			f=$repo/${files[$(((rep * 104729) % ${#files[@]}))]}
			python3 -c "import os,sys; n=os.path.getsize(sys.argv[1]); open(sys.argv[1],'wb').write(os.urandom(n))" "$f"
			touch -d "@$(($(date +%s) + 100 + rep))" "$f"
			pj=$("$PUSH" --rsh "$BIN" --lease "$LT" --host "${HOST[ours-tls]}" --dest "$T/dst/$sv" --state "$T/$sv.state" $mflag "$repo") ||
				die "bench_sync_push $sv incremental failed"
			python3 -c 'import json,sys; assert json.loads(sys.argv[1])["transferred"] == 1, sys.argv[1]' "$pj" ||
				die "$sv: incremental did not transfer exactly one file: $pj"
			for k in us manifest_us connect_us first_us; do
				rec incr "$sv" "$rep" "$k" "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$pj" "$k")"
			done
			same_tree "$sv" || die "$sv: the snapshot sync left a different tree: $(head -5 "$T/diff.log")"
			log "$sv rep $rep: full $(awk -F'\t' -v s="$sv" -v r="$rep" '$1=="full" && $2==s && $3==r {print $5/1000}' "$T/results.tsv") ms," \
				"incremental $(awk -F'\t' -v s="$sv" -v r="$rep" '$1=="incr" && $2==s && $3==r && $4=="us" {print $5/1000}' "$T/results.tsv") ms"
		done
	done
	log "sync.c with a snapshot: $reps reps done"
fi

# Pieces of an incremental push's fixed cost, each timed alone (median of $lat):
# the tdx-runner process itself, and rsync's own protocol and exit waits with a
# remote shell that costs nothing (`sh -c` on this machine, no SSH, no login shell).
printf '#!/bin/sh\nshift\nexec sh -c "$*"\n' >"$T/localrsh"
chmod 700 "$T/localrsh"
printf '%s\0' "${files[0]}" >"$T/one.lst"
mkdir -p "$T/dst/local"
rsync -a --from0 "--files-from=$T/one.lst" -- "$repo/" "$T/dst/local/"
for round in $(seq 1 "$lat"); do
	timed "$T/p.log" "$BIN" --help || die "tdx-runner --help failed"
	rec piece start "$round" us "$US"
	touch "$repo/${files[0]}"
	timed "$T/p.log" rsync -e "$T/localrsh" -a --links --safe-links --force --delete-missing-args --from0 \
		"--files-from=$T/one.lst" --stats -- "$repo/" "x:$T/dst/local/" || die "local rsync failed: $(tail -3 "$T/p.log")"
	rec piece rsync-local "$round" us "$US"
done

# Exec round trips, interleaved: each round runs every variant once (2 warm-up rounds).
declare -A XC
XC[ours-tls]="$BIN ssh $LT -- true"
XC[ours-direct]="$BIN ssh $LD -- true"
XC[ssh]="ssh -F $T/ssh_config bench true"
XC[ssh-tls]="ssh -F $T/ssh_config bench-tls true"
for round in $(seq -1 "$lat"); do
	for v in $(rotate "$round"); do
		timed "$T/exec.log" ${XC[$v]} || die "$v: exec failed: $(tail -3 "$T/exec.log")"
		[[ $round -ge 1 ]] && rec exec "$v" "$round" us "$US"
	done
done
log "exec round trips done"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# What each client negotiated (a second sshd on the same host key, at DEBUG1).
sp2=$(freeport)
negotiated=
if sshd_start sshd-debug "$sp2" DEBUG1; then
	python3 - "$LD" "$sp2" "$T/lease-probe.json" <<'PY'
import json, os, sys
d = json.load(open(sys.argv[1])); d["port"] = int(sys.argv[2])
fd = os.open(sys.argv[3], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, json.dumps(d).encode()); os.close(fd)
PY
	"$BIN" ssh "$T/lease-probe.json" -- true >/dev/null 2>&1 || true
	ssh -F "$T/ssh_config" -p "$sp2" -o "HostKeyAlias=bench" 127.0.0.1 true >/dev/null 2>&1 || true
	sleep 0.3
	negotiated=$(grep -o 'kex: client->server cipher: [^ ]* MAC: [^ ]*' "$T/sshd-debug.log" |
		sed 's/kex: client->server cipher: //; s/ MAC: / \/ /' | paste -sd';' || true)
fi

# What the login shell's start-up costs per remote command on this host: the user's
# shell run as sshd runs it (stdin a socket, SSH_CLIENT set) with SHLVL unset (bash
# sources ~/.bashrc) vs SHLVL=1 (it does not). Every exec and every rsync run pays it.
shellrc=$(python3 - <<'PY'
import os, pwd, socket, subprocess, time
sh = pwd.getpwuid(os.getuid()).pw_shell or "/bin/sh"
pw = pwd.getpwuid(os.getuid())
a, b = socket.socketpair()
env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": pw.pw_dir,
       "USER": pw.pw_name, "LOGNAME": pw.pw_name, "SHELL": sh, "SSH_CLIENT": "127.0.0.1 1 22"}
ts = {0: [], 1: []}
for _ in range(9):  # interleaved: sshd's environment without, then with SHLVL=1
    for k in (0, 1):
        t = time.monotonic()
        subprocess.run([sh, "-c", "true"], stdin=b, env=dict(env, SHLVL="1") if k else env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ts[k].append(time.monotonic() - t)
print("%s %.1f %.1f" % (sh, sorted(ts[0])[4] * 1e3, sorted(ts[1])[4] * 1e3))
PY
)

# ---- report ---------------------------------------------------------------------
stunnel_version=$("$STUNNEL" -version 2>&1 | grep -o -m1 'stunnel [0-9][^ ]*' || true)
export B_T=$T B_OUT=$out B_WRITE=$write B_CMD=$cmdline B_SRC=$src B_BIN=$BIN B_NFILES=${#files[@]} \
	B_BYTES=$total B_REPS=$reps B_LAT=$lat B_LOAD0=$load_before B_LOAD1=$load_after \
	B_NEG=$negotiated B_SHELLRC=$shellrc B_SKIPRC=$skiprc B_STUNNEL=$stunnel_version
python3 - <<'PY'
import collections, datetime, os, subprocess

env = os.environ
T = env["B_T"]
V = ["ours-tls", "ours-direct", "ssh", "ssh-tls"]
WHAT = {
    "ours-tls": "`rsync -e \"tdx-runner rsh LEASE\"`: TLS to the gateway + libssh2",
    "ours-direct": "`rsync -e \"tdx-runner rsh LEASE\"`: plain TCP + libssh2",
    "ssh": "`rsync -e \"ssh -F CFG\"` direct to the sshd (**baseline**)",
    "ssh-tls": "`rsync -e \"ssh -F CFG\"` with `ProxyCommand openssl s_client` to the gateway",
}


def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()


def median(v):
    s = sorted(v)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def pct(v, p):
    s = sorted(v)
    return s[max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))]


d = collections.defaultdict(list)
for line in open(os.path.join(T, "results.tsv")):
    kind, v, rep, metric, val = line.rstrip("\n").split("\t")
    if val:
        d[(kind, v, metric)].append(int(val))
nbytes = int(env["B_BYTES"])


def m(kind, v, metric):
    x = d.get((kind, v, metric))
    return median(x) / 1e6 if x else None


def total(kind, v):  # list + transfer, per rep, then median
    a, b = d.get((kind, v, "list_us")), d.get((kind, v, "xfer_us"))
    return median([x + y for x, y in zip(a, b)]) / 1e6 if a and b else None


L = []
w = L.append
w("## Sync and exec over loopback (transport)")
w("")
w("Generated by `bench/bench_sync.sh`; see bench/README.md. Informational only, never pass/fail.")
w("")
w("- Date: %s" % datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ"))
w("- Machine: %s, nproc %s, kernel %s" % (sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-"),
                                         sh("nproc"), sh("uname -r")))
w("- Load average (1/5/15 min) before: %s, after: %s (a shared machine: other builds run too)" %
  (env["B_LOAD0"], env["B_LOAD1"]))
w("- Source: %s%s; Release build (`%s`)" % (
    sh("git -C %s rev-parse --short HEAD" % env["B_SRC"]) or "unknown",
    " (+ uncommitted changes)" if sh("git -C %s status --porcelain -uno" % env["B_SRC"]) else "",
    os.path.relpath(env["B_BIN"], env["B_SRC"])))
w("- Peers: %s; %s; %s; %s" % (sh("ssh -V 2>&1"), sh("rsync --version | head -1"),
                               env["B_STUNNEL"], sh("openssl version")))
sh_, rc_ms, norc_ms = (env.get("B_SHELLRC") or "? 0 0").split()
w("- Remote shell start-up on this host: `%s -c true` as sshd runs it takes %s ms with ~/.bashrc"
  " sourced, %s ms without; %s" % (sh_, rc_ms, norc_ms,
  "the sshd here has `SetEnv SHLVL=1` (`--skip-shell-rc`), so commands skip it" if env["B_SKIPRC"] == "1"
  else "every exec round trip and every rsync run below pays the first (`--skip-shell-rc` avoids it)"))
if env.get("B_NEG"):
    w("- Negotiated (sshd log, tdx-runner then OpenSSH): %s" % env["B_NEG"].replace(";", "; "))
w("- Command: `%s` (repo: %d files, %.1f MB random bytes, list = `git ls-files -z`;"
  " %d reps of full and incremental per variant, median; %d exec round trips per variant)" %
  (env["B_CMD"], int(env["B_NFILES"]), nbytes / 1e6, int(env["B_REPS"]), int(env["B_LAT"])))
w("")
w("| variant | remote shell |")
w("|---|---|")
for v in V:
    w("| %s | %s |" % (v, WHAT[v]))
w("")
w("### Sync")
w("")
w("*sync.c* = what `remote_sync_push` runs: the remote listing (dry run with `--delete` from an"
  " empty directory) then the transfer (`-a --links --safe-links --force --from0 --files-from"
  " --stats`), two rsync runs and two connections; *transfer* = that last rsync alone, the same"
  " argv for every variant (only `-e` differs). Incremental = after rewriting one file.")
w("")
w("| variant | full sync.c s | full transfer s | MB/s (transfer) | incr. sync.c s | incr. transfer s"
  " | incr. bytes sent | incr./full (sync.c) |")
w("|---|---:|---:|---:|---:|---:|---:|---:|")


def f(x, p=3):
    return ("%%.%df" % p) % x if x is not None else "n/a"


for v in V:
    ft, fx = total("full", v), m("full", v, "xfer_us")
    it, ix = total("incr", v), m("incr", v, "xfer_us")
    sent = d.get(("incr", v, "sent_bytes"))
    w("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
        v, f(ft), f(fx), f(nbytes / 1e6 / fx, 1) if fx else "n/a", f(it), f(ix),
        "%d" % median(sent) if sent else "n/a",
        "%.1f%%" % (100 * it / ft) if it and ft else "n/a"))
w("")
base_x, base_t = m("full", "ssh", "xfer_us"), total("full", "ssh")
ours_x, ours_t = m("full", "ours-tls", "xfer_us"), total("full", "ours-tls")
r1 = base_x / ours_x if base_x and ours_x else None
r2 = base_x / ours_t if base_x and ours_t else None
r3 = base_t / ours_t if base_t and ours_t else None
inc = total("incr", "ours-tls") / ours_t if ours_t and total("incr", "ours-tls") else None
w("Throughput ours-tls / baseline ssh (goal >= 0.8x):")
w("")
w("- transfer vs transfer (same rsync argv, only the transport differs): **%sx**%s" %
  (f(r1, 2), "" if r1 is None else (" (goal met)" if r1 >= 0.8 else " (goal not met)")))
w("- sync.c's two runs vs one plain `rsync -a -e ssh`: **%sx**%s" %
  (f(r2, 2), "" if r2 is None else (" (goal met)" if r2 >= 0.8 else " (goal not met)")))
w("- sync.c's two runs vs the same two runs over ssh: %sx" % f(r3, 2))
w("- incremental / full, ours-tls, sync.c: **%s**%s" % (
    "%.1f%%" % (100 * inc) if inc else "n/a",
    "" if inc is None else (" (goal < 10%: met)" if inc < 0.10 else " (goal < 10%: not met)")))
bi, bf = m("incr", "ssh", "xfer_us"), m("full", "ssh", "xfer_us")
for sv, how in (("snap", "every rsync run's `tdx-runner rsh` connects by itself"),
                ("snap-mux", "**as the job runs it** (the session connected and used once first, as the attestation"
                             " gate does; then `remote_sync_push_worktree` with `remote_sync_opts.ssh`): the rsync"
                             " runs are channels on that session through the multiplexer")):
    sf, si = m("full", sv, "push_us"), m("incr", sv, "us")
    if sf and si:
        w("- the real sync code with a snapshot, %s (`%s`): full %.3f s, incremental after a 1-file change"
          " %.3f s = **%.1f%%** of the full sync (goal < 10%%: %s)" % (
              how, sv, sf, si, 100.0 * si / sf, "met" if si < 0.1 * sf else "not met"))
w("- for comparison, plain `rsync -a -e ssh` (baseline, one run) incremental / full: %s;"
  " one exec round trip (below) is the floor of every rsync run that connects by itself" %
  ("%.1f%%" % (100 * bi / bf) if bi and bf else "n/a"))
pieces = [
    ("the `tdx-runner` process (exec, 40 shared libraries, exit): `tdx-runner --help`", m("piece", "start", "us")),
    ("TCP + TLS + SSH handshake + auth (`remote_lease_connect`): what the multiplexer saves per rsync run",
     m("incr", "snap-mux", "connect_us")),
    ("the first command on a fresh session (`true`: sshd's first-session set-up + the login shell); the job"
     " runs its attestation gate's quote fetch there before it syncs, `snap-mux` runs `true` untimed",
     m("incr", "snap-mux", "first_us")),
    ("the login shell in the box (`%s -c true` as sshd runs it, ~/.bashrc sourced; the pre-started"
     " channel hides it)" % (env.get("B_SHELLRC") or "? 0 0").split()[0], float((env.get("B_SHELLRC") or "? 0 0").split()[1]) / 1e3),
    ("rsync itself: both ends, protocol, and its exit waits (20 ms polls on each side), 1 file, remote shell"
     " `sh -c` here", m("piece", "rsync-local", "us")),
    ("libgit2 working-tree manifest (%d files; `snap` run)" % int(env["B_NFILES"]), m("incr", "snap", "manifest_us")),
]
w("")
w("Where an incremental push's time goes (each piece timed alone, median ms; they overlap partly in a push):")
w("")
w("| piece | ms |")
w("|---|---:|")
for what, v in pieces:
    w("| %s | %s |" % (what, "%.1f" % (v * 1e3) if v is not None else "n/a"))
w("")
w("### Exec round trip (`true`)")
w("")
w("| variant | command | median ms | p90 ms | min ms | vs ssh (median) |")
w("|---|---|---:|---:|---:|---:|")
CMDS = {"ours-tls": "`tdx-runner ssh LEASE -- true` (TLS lease)",
        "ours-direct": "`tdx-runner ssh LEASE -- true` (direct lease)",
        "ssh": "`ssh -F CFG bench true`", "ssh-tls": "`ssh -F CFG bench-tls true` (s_client proxy)"}
bm = median(d[("exec", "ssh", "us")]) if d.get(("exec", "ssh", "us")) else None
for v in V:
    x = d.get(("exec", v, "us"))
    if not x:
        continue
    w("| %s | %s | %.1f | %.1f | %.1f | %s |" % (v, CMDS[v], median(x) / 1e3, pct(x, 90) / 1e3,
                                               min(x) / 1e3, "%.2fx" % (median(x) / bm) if bm else "n/a"))
w("")
w("Each round trip is a new process: connect (+ TLS), SSH handshake, auth, one channel, exit status.")
body = "\n".join(L) + "\n"
print(body)

if env["B_WRITE"] == "1":
    path = env["B_OUT"]
    begin, end = b"<!-- sync:begin -->", b"<!-- sync:end -->"
    block = begin + b"\n" + body.encode() + end
    data = open(path, "rb").read() if os.path.exists(path) else b""
    b, e = data.find(begin), data.find(end)
    if b >= 0 and e > b and data.count(begin) == 1 and data.count(end) == 1:
        data = data[:b] + block + data[e + len(end):]
    elif b < 0 and e < 0:
        sep = b"" if not data or data.endswith(b"\n\n") else (b"\n" if data.endswith(b"\n") else b"\n\n")
        data = data + sep + block + b"\n"
    else:
        raise SystemExit("bench_sync.sh: %s has unbalanced sync markers; not written" % path)
    tmp = path + ".tmp-sync"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    print("bench_sync: wrote the sync section of %s" % path)
PY
