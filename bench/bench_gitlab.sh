#!/usr/bin/env bash
# bench_gitlab.sh - GitLab log streaming throughput and agent RSS (issue 5), in one run
# against the GitLab runner-API test server (tests/integration/gitlab_server.py, a real
# git repository over smart HTTP) on the local executor (real sshd, guest agent, rsync).
#   1. throughput: a job prints N MiB (BENCH_MB, default 512) of line-oriented log text
#      from a deterministic generator (gen.py, committed in the job's repository) with a
#      masked variable whose value the job prints ceil(N/64) times, each split over two
#      write() calls. `tdx-runner agent --once` runs it; MiB/s = N / (wall of that job -
#      wall of the same job printing nothing). NO LOSS: the server's stored trace must
#      contain exactly the generator's masked output (size + crc32, computed here from
#      the same generator with the secret replaced by [MASKED]), the server saw no
#      secret, the final checksum matched. Side by side in the same run: the same output
#      through `tdx-runner run` (local executor) to /dev/null - the transport's own speed,
#      the ceiling - and the generator alone to /dev/null.
#   2. agent RSS: `tdx-runner agent` (concurrency 8) idle for IDLE seconds (VmRSS, VmHWM
#      from /proc/PID/status), then 8 concurrent jobs (each prints, sleeps, prints);
#      VmHWM sampled when all 8 reached a final state. Boxes are other processes.
# Writes the section between <!-- gitlab:begin --> and <!-- gitlab:end --> of
# bench/RESULTS.md (appended when absent; the rest of the file is left byte-identical).
#
# usage: bench/bench_gitlab.sh [-r REPS] [-i IDLE] [-o FILE] [--no-write] [--no-rss]
#   -r REPS   timed runs per variant, interleaved (default 3; median reported)
#   -i IDLE   seconds the agent idles before the idle RSS sample (default 6)
# Env: BENCH_MB (MiB per job, default 512), BENCH2_BUILD_DIR (default build-bench2:
#      Release, -DTDXR_TESTS=OFF), TDXR_BIN (use this binary instead of building),
#      TMPDIR (work space: ~2.5x BENCH_MB), KEEP_TMP=1 (keep it, with the logs).
#      Timings are never pass/fail; a trace that differs from what the job printed
#      (after masking) is an error.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BENCH2_BUILD_DIR:-$src/build-bench2}
mb=${BENCH_MB:-512}
reps=3
idle=6
rss=1
out=$src/bench/RESULTS.md
write=1
cmdline="bench/bench_gitlab.sh${*:+ $*}"
[[ -n ${BENCH_MB:-} ]] && cmdline="BENCH_MB=$BENCH_MB $cmdline"
[[ -n ${TDXR_BIN:-} ]] && cmdline="TDXR_BIN=$TDXR_BIN $cmdline"

while [[ $# -gt 0 ]]; do
	case $1 in
	-r) reps=$2; shift 2 ;;
	-i) idle=$2; shift 2 ;;
	-o) out=$2; shift 2 ;;
	--no-write) write=0; shift ;;
	--no-rss) rss=0; shift ;;
	-h|--help) awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
	*) echo "bench_gitlab.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
[[ $reps =~ ^[0-9]+$ && $reps -ge 1 ]] || { echo "bench_gitlab.sh: -r needs an integer >= 1" >&2; exit 2; }
[[ $idle =~ ^[0-9]+$ && $idle -ge 1 ]] || { echo "bench_gitlab.sh: -i needs an integer >= 1" >&2; exit 2; }
[[ $mb =~ ^[0-9]+$ && $mb -ge 1 ]] || { echo "bench_gitlab.sh: BENCH_MB needs an integer >= 1" >&2; exit 2; }
for t in /usr/sbin/sshd rsync ssh-keygen python3 git curl; do
	command -v "$t" >/dev/null 2>&1 || [[ -x $t ]] || { echo "bench_gitlab.sh: $t is required" >&2; exit 2; }
done
[[ -x /usr/lib/git-core/git-http-backend || -x "$(git --exec-path)/git-http-backend" ]] ||
	{ echo "bench_gitlab.sh: git-http-backend is required" >&2; exit 2; }

if [[ -n ${TDXR_BIN:-} ]]; then
	BIN=$TDXR_BIN
else
	cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTDXR_TESTS=OFF \
		-DTDXR_WERROR=OFF >/dev/null
	ninja -C "$build" -j2 tdx-runner >&2
	BIN=$build/agent/tdx-runner
fi
[[ -x $BIN ]] || { echo "bench_gitlab.sh: no tdx-runner at $BIN" >&2; exit 2; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

T=$(mktemp -d "${TMPDIR:-/tmp}/tdxr-bench-gl.XXXXXX")
chmod 700 "$T"
srv_pid=
agent_pid=
cleanup() {
	[[ -n $agent_pid ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
	for c in "$T"/cfg*.json "$T/run.json"; do
		[[ -f $c ]] && "$BIN" reap --all --config "$c" >/dev/null 2>&1 || true
	done
	[[ -n $srv_pid ]] && kill "$srv_pid" 2>/dev/null || true
	if [[ -n ${KEEP_TMP:-} ]]; then echo "bench_gitlab: kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT

# The job's repository: gen.py, the deterministic generator. Its output for a secret S
# with S replaced by [MASKED] is exactly what the trace must hold (no accidental S).
mkdir -p "$T/work"
cat >"$T/work/gen.py" <<'PY'
#!/usr/bin/env python3
"""gen.py MB [SECRET]: MB blocks (~1 MiB each) of log lines between BENCH-BEGIN / BENCH-END
lines on stdout. Every 64th block header carries SECRET, written in two write() calls
(split in the middle). Deterministic: pieces(mb, s) is the whole output."""
import os
import sys


def body():
    out, size, i = [], 0, 0
    while True:
        ln = (b"2026-11-26T10:%02d:%02d.%03dZ INFO  [worker-%d] cc -O2 -c src/mod_%05d.c -o "
              b"build/mod_%05d.o: %d warnings, %d bytes\n" %
              (i // 60 % 60, i % 60, i * 7 % 1000, i % 8, i, i, i % 3, 1000 + i * 7919 % 90000))
        if size + len(ln) > (1 << 20) - 64:
            return b"".join(out)
        out.append(ln)
        size += len(ln)
        i += 1


def pieces(mb, secret):
    b, k = body(), len(secret) // 2
    yield b"BENCH-BEGIN\n"
    for n in range(mb):
        if n % 64 == 0:
            yield b"block %08d token=%s" % (n, secret[:k])
            yield secret[k:] + b"\n" + b
        else:
            yield b"block %08d\n" % n + b
    yield b"BENCH-END\n"


def main():
    mb = int(sys.argv[1])
    secret = (sys.argv[2] if len(sys.argv) > 2 else os.environ.get("BENCH_SECRET", "no-secret")).encode()
    for p in pieces(mb, secret):
        v = memoryview(p)
        while v:
            v = v[os.write(1, v):]


if __name__ == "__main__":
    main()
PY
(
	cd "$T/work"
	git init -q -b main
	git add gen.py
	git -c user.name=bench -c user.email=bench@invalid commit -qm "bench generator"
)
git clone -q --bare "$T/work" "$T/repo.git"

runner_token=glrt-benchRunnerToken0123456789
secret='bench-S3cr3t-Value-0123456789'
python3 "$src/tests/integration/gitlab_server.py" --runner-token "$runner_token" --repo "$T/repo.git" \
	--project bench/gitlab-bench --state-dir "$T/srv" >"$T/srv.out" 2>"$T/srv.err" </dev/null &
srv_pid=$!
for _ in $(seq 100); do grep -q '^PORT ' "$T/srv.out" 2>/dev/null && break; sleep 0.05; done
port=$(awk '/^PORT /{print $2}' "$T/srv.out")
[[ -n $port ]] || { cat "$T/srv.err" >&2; echo "bench_gitlab.sh: gitlab_server did not start" >&2; exit 1; }
url=http://127.0.0.1:$port
umask 077
printf '{"state_dir": "%s", "executor": {"kind": "local"}, "gitlab": [{"url": "%s", "token": "%s"}]}\n' \
	"$T/state" "$url" "$runner_token" >"$T/cfg1.json"
printf '{"state_dir": "%s", "concurrency": 8, "executor": {"kind": "local"}, "gitlab": [{"url": "%s", "token": "%s"}]}\n' \
	"$T/state8" "$url" "$runner_token" >"$T/cfg8.json"
printf '{"state_dir": "%s", "executor": {"kind": "local"}}\n' "$T/rstate" >"$T/run.json"
umask 022

# timed.py OUT ERR SRVPID -- ARGV: runs ARGV (stdout to OUT, stderr to ERR), prints one JSON
# line: wall s (pidfd: the exit is seen at once), the process's own CPU (its /proc stat as a
# zombie) and with its reaped descendants (wait4), its VmHWM (sampled every 20 ms), the CPU
# the server (SRVPID) used meanwhile, the exit status.
cat >"$T/timed.py" <<'PY'
import json, os, select, signal, subprocess, sys, time
out, err, srv = sys.argv[1], sys.argv[2], int(sys.argv[3])
argv = sys.argv[sys.argv.index("--") + 1:]
tck = os.sysconf("SC_CLK_TCK")
def cpu(pid):
    try:
        s = open("/proc/%d/stat" % pid).read()
        f = s[s.rindex(")") + 2:].split()
        return (int(f[11]) + int(f[12])) / tck
    except (OSError, ValueError, IndexError):
        return None
def hwm(pid):
    try:
        for l in open("/proc/%d/status" % pid):
            if l.startswith("VmHWM:"):
                return int(l.split()[1])
    except OSError:
        pass
    return None
s0 = cpu(srv)
with open(out, "wb") as fo, open(err, "wb") as fe:
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=fo, stderr=fe)
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # interrupted: stop the child too
    signal.signal(sig, lambda n, _f: p.send_signal(n))
fd = os.pidfd_open(p.pid)
pl = select.poll()
pl.register(fd, select.POLLIN)
peak = 0
while not pl.poll(20):
    h = hwm(p.pid)
    if h:
        peak = max(peak, h)
t1 = time.monotonic()
own = cpu(p.pid)
_, status, ru = os.wait4(p.pid, 0)
p.returncode = os.waitstatus_to_exitcode(status)
s1 = cpu(srv)
print(json.dumps({"wall": t1 - t0, "cpu_own": own, "cpu_tree": ru.ru_utime + ru.ru_stime,
                  "hwm_kib": peak, "srv_cpu": (s1 - s0) if s0 is not None and s1 is not None else None,
                  "rc": p.returncode}))
PY

# verify.py JOBVIEW MB SECRET: the server's record of one throughput job -> one JSON line.
cat >"$T/verify.py" <<'PY'
import json, os, sys, zlib
sys.path.insert(0, os.environ["B_WORK"])
import gen
j = json.load(open(sys.argv[1]))
mb, secret = int(sys.argv[2]), sys.argv[3].encode()
exp_size, exp_crc, exp_lines = 0, 0, 0
for p in gen.pieces(mb, b"[MASKED]"):
    exp_size += len(p)
    exp_crc = zlib.crc32(p, exp_crc)
    exp_lines += p.count(b"\n")
r = {"status": j["status"], "errors": [e.get("code", e.get("message")) for e in j["errors"]][:5],
     "leaks": j["trace"]["leaks"], "trace_size": j["trace"]["size"], "patches": j["trace"]["patches"],
     "checksum_match": bool((j.get("final") or {}).get("checksum", {}).get("match")),
     "expected_size": exp_size, "expected_lines": exp_lines, "masked_expected": (mb + 63) // 64}
path = j["trace"]["path"]
with open(path, "rb") as f:
    head = f.read(1 << 22)
    off = head.find(b"\nBENCH-BEGIN\n")
    ok = off >= 0
    got_crc, got, lines, masked, leak = 0, 0, 0, 0, 0
    if ok:
        f.seek(off + 1)
        left, carry = exp_size, b""
        while left > 0:
            d = f.read(min(left, 1 << 22))
            if not d:
                break
            left -= len(d)
            got += len(d)
            got_crc = zlib.crc32(d, got_crc)
            lines += d.count(b"\n")
            w = carry + d
            masked += w.count(b"[MASKED]") - carry.count(b"[MASKED]")
            leak += w.count(secret) - carry.count(secret)
            carry = w[-64:]
r.update({"region_found": ok, "region_size": got, "lines": lines, "masked": masked, "secret_seen": leak,
          "region_crc_match": ok and got == exp_size and got_crc == exp_crc})
r["no_loss"] = bool(r["region_crc_match"] and r["status"] == "success" and not r["errors"] and
                    r["leaks"] == 0 and r["checksum_match"] and leak == 0 and masked == r["masked_expected"])
pt = [q["t"] for q in j.get("requests", []) if q.get("op") == "trace" and q.get("status") == 202]
r["trace_span_s"] = (pt[-1] - pt[0]) if len(pt) > 1 else 0.0
os.unlink(path)  # 1 file per job, BENCH_MB in size: keep TMPDIR small
print(json.dumps(r))
PY

enqueue() { curl -sf -X POST -H 'Content-Type: application/json' --data "$1" "$url/_control/enqueue" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
job_spec() { # MB
	printf '{"script": ["python3 gen.py %s \\"$BENCH_SECRET\\""], "variables": [{"key": "BENCH_SECRET", "value": "%s", "masked": true}]}' "$1" "$secret"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$T/runs.jsonl"
gl_run() { # MB REP: one `agent --once` job; appends a JSON line
	local id res ver
	id=$(enqueue "$(job_spec "$1")")
	res=$(python3 "$T/timed.py" "$T/agent.out" "$T/agent.err" "$srv_pid" -- \
		"$BIN" agent --config "$T/cfg1.json" --once --wait 30)
	curl -sf "$url/_control/job/$id" >"$T/job.json"
	ver=$(B_WORK=$T/work python3 "$T/verify.py" "$T/job.json" "$1" "$secret")
	printf '{"kind": "gitlab", "mb": %s, "rep": %s, "job": %s, "t": %s, "v": %s}\n' "$1" "$2" "$id" "$res" "$ver" \
		>>"$T/runs.jsonl"
	python3 -c 'import json,sys; d=json.loads(sys.argv[1]); t=d["t"]; v=d["v"]
print("bench_gitlab: gitlab %4s MiB rep %s: %.2f s, rc %s, no_loss %s" % (d["mb"], d["rep"], t["wall"], t["rc"], v["no_loss"]), file=sys.stderr)
if t["rc"] != 0 or not v["no_loss"]:
    print("bench_gitlab:   %s" % json.dumps(v), file=sys.stderr)' "$(tail -1 "$T/runs.jsonl")"
}
run_run() { # MB REP: the same output through `tdx-runner run` to /dev/null
	local res
	res=$(cd "$T/work" && python3 "$T/timed.py" /dev/null "$T/run.err" "$srv_pid" -- \
		"$BIN" run --config "$T/run.json" --bundle "$T/bundle.json" -- python3 gen.py "$1" "$secret")
	printf '{"kind": "run", "mb": %s, "rep": %s, "t": %s}\n' "$1" "$2" "$res" >>"$T/runs.jsonl"
	python3 -c 'import json,sys; d=json.loads(sys.argv[1]); t=d["t"]
print("bench_gitlab: run    %4s MiB rep %s: %.2f s, rc %s" % (d["mb"], d["rep"], t["wall"], t["rc"]), file=sys.stderr)' \
		"$(tail -1 "$T/runs.jsonl")"
	if ! python3 -c 'import json,sys; sys.exit(json.loads(sys.argv[1])["t"]["rc"])' "$(tail -1 "$T/runs.jsonl")"; then
		tail -5 "$T/run.err" >&2
	fi
}
gen_run() { # MB REP: the generator alone to /dev/null (no box, no transport)
	local res
	res=$(cd "$T/work" && python3 "$T/timed.py" /dev/null /dev/null "$srv_pid" -- python3 gen.py "$1" "$secret")
	printf '{"kind": "gen", "mb": %s, "rep": %s, "t": %s}\n' "$1" "$2" "$res" >>"$T/runs.jsonl"
}

echo "bench_gitlab: warm-up (one empty job each way)" >&2
gl_run 0 0
run_run 0 0
for rep in $(seq 1 "$reps"); do
	gl_run "$mb" "$rep"
	gl_run 0 "$rep"
	run_run "$mb" "$rep"
	run_run 0 "$rep"
	gen_run "$mb" "$rep"
done
load_mid=$(cut -d' ' -f1-3 /proc/loadavg)

# Agent RSS: idle, then 8 concurrent jobs. rss.py samples every 100 ms until all are final.
: >"$T/rss.json"
if [[ $rss == 1 ]]; then
	"$BIN" agent --config "$T/cfg8.json" >"$T/agent8.out" 2>"$T/agent8.err" &
	agent_pid=$!
	echo "bench_gitlab: agent (concurrency 8) idle for $idle s" >&2
	sleep "$idle"
	idle_status=$(grep -E '^(VmRSS|VmHWM|Threads):' "/proc/$agent_pid/status" | tr -s ' \t' ' ' | tr '\n' ';')
	ids=
	for k in $(seq 1 8); do
		ids="$ids $(enqueue '{"script": ["python3 gen.py 8 \"$BENCH_SECRET\"", "sleep 5", "python3 gen.py 8 \"$BENCH_SECRET\""], "variables": [{"key": "BENCH_SECRET", "value": "'"$secret"'", "masked": true}]}')"
	done
	echo "bench_gitlab: 8 jobs enqueued:$ids" >&2
	python3 - "$agent_pid" "$url" "$T/state8" "$idle_status" $ids >"$T/rss.json" <<'PY'
import json, os, sys, time, urllib.error, urllib.request
pid, url, state, idle = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ids = [int(x) for x in sys.argv[5:]]
def status(p):
    d = {}
    try:
        for l in open("/proc/%d/status" % p):
            k, _, v = l.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                d[k] = int(v.split()[0])
    except OSError:
        pass
    return d
def box_rss():
    """Processes of the boxes (sshd, guest agent, job shells): they mention state/boxes/."""
    n, kib, needle = 0, 0, (state + "/boxes/").encode()
    for e in os.listdir("/proc"):
        if not e.isdigit() or int(e) == pid:
            continue
        try:
            hit = any(needle in open("/proc/%s/%s" % (e, f), "rb").read() for f in ("cmdline", "environ"))
            if hit:
                n += 1
                kib += status(int(e)).get("VmRSS", 0)
        except OSError:
            pass
    return n, kib
def job(i):  # /wait answers 408 (same body) while the job is not final
    try:
        with urllib.request.urlopen("%s/_control/job/%d/wait?timeout=0" % (url, i), timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        if e.code != 408:
            raise
        return json.load(e)
idle_d = {k: int(v.split()[0]) for k, v in (x.strip().split(":", 1) for x in idle.split(";") if x.strip())}
t0 = time.monotonic()
peak_rss, peak_thr, peak_claims, peak_box, peak_box_n, last_box = 0, 0, 0, 0, 0, 0.0
done = {}
while time.monotonic() - t0 < 600:
    s = status(pid)
    peak_rss = max(peak_rss, s.get("VmRSS", 0))
    peak_thr = max(peak_thr, s.get("Threads", 0))
    try:
        peak_claims = max(peak_claims, sum(1 for e in os.listdir(os.path.join(state, "leases"))
                                           if e.endswith(".json")))
    except OSError:
        pass
    if time.monotonic() - last_box > 0.5:
        n, kib = box_rss()
        peak_box, peak_box_n, last_box = max(peak_box, kib), max(peak_box_n, n), time.monotonic()
    for i in ids:
        if i not in done:
            j = job(i)
            if j["status"] in ("success", "failed", "canceled"):
                done[i] = {"status": j["status"], "errors": len(j["errors"]), "leaks": j["trace"]["leaks"],
                           "size": j["trace"]["size"], "t": round(time.monotonic() - t0, 2),
                           "failure_reason": (j.get("final") or {}).get("failure_reason")}
                if j["status"] != "success":  # the trace's ERROR line says why
                    try:
                        for ln in open(j["trace"]["path"], "rb").read(1 << 20).splitlines():
                            k = ln.find(b"ERROR: ")
                            if k >= 0:
                                done[i]["error"] = ln[k:].split(b"\x1b")[0].decode(errors="replace")
                                break
                    except OSError:
                        pass
    if len(done) == len(ids):
        break
    time.sleep(0.1)
end = status(pid)
print(json.dumps({"idle": idle_d, "end": end, "peak_rss_kib": peak_rss, "peak_threads": peak_thr,
                  "peak_claims": peak_claims, "box_peak_kib": peak_box, "box_peak_procs": peak_box_n,
                  "jobs": done, "all_s": round(time.monotonic() - t0, 2)}))
PY
	kill -TERM "$agent_pid"
	wait "$agent_pid" || true
	agent_pid=
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench_gitlab: done" >&2

export B_T=$T B_OUT=$out B_WRITE=$write B_CMD=$cmdline B_SRC=$src B_BIN=$BIN B_MB=$mb B_REPS=$reps \
	B_IDLE=$idle B_LOAD0=$load_before B_LOAD1=$load_mid B_LOAD2=$load_after B_RSS=$rss
python3 - <<'PY'
import datetime, json, os, subprocess

env = os.environ
T, MB = env["B_T"], int(env["B_MB"])


def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()


def median(v):
    s = sorted(v)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


runs = [json.loads(l) for l in open(os.path.join(T, "runs.jsonl"))]
timed = [r for r in runs if r["rep"] > 0]
bad = [r for r in timed if r["t"]["rc"] != 0 or (r["kind"] == "gitlab" and not r["v"]["no_loss"])]


def sel(kind, mb):
    return [r for r in timed if r["kind"] == kind and r["mb"] == mb and r not in bad]


def med(kind, mb, f):
    v = [f(r) for r in sel(kind, mb)]
    v = [x for x in v if x is not None]
    return median(v) if v else None


L = []
w = L.append
w("## GitLab log streaming and agent RSS (local executor)")
w("")
w("Generated by `bench/bench_gitlab.sh`; see bench/README.md. Informational only, never pass/fail.")
w("")
w("- Date: %s" % datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ"))
w("- Machine: %s, nproc %s, kernel %s" % (sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-"),
                                         sh("nproc"), sh("uname -r")))
w("- Load average (1/5/15 min) before: %s, after the throughput runs: %s, at the end: %s"
  " (a shared machine: other builds run too)" % (env["B_LOAD0"], env["B_LOAD1"], env["B_LOAD2"]))
w("- Source: %s%s; Release build (`%s`); test server `tests/integration/gitlab_server.py` on %s"
  " (trace update interval 3 s, which the agent caps at 1 s)" % (
    sh("git -C %s rev-parse --short HEAD" % env["B_SRC"]) or "unknown",
    " (+ uncommitted changes)" if sh("git -C %s status --porcelain -uno" % env["B_SRC"]) else "",
    os.path.relpath(env["B_BIN"], env["B_SRC"]), sh("python3 --version")))
w("- Command: `%s` (%d MiB per job, %s timed run(s) per variant interleaved, median; %d run(s)"
  " failed or lost bytes%s)" % (env["B_CMD"], MB, env["B_REPS"], len(bad),
                                 ": see below" if bad else ""))
w("")
w("### Log streaming throughput (masking on)")
w("")
w("The job runs `python3 gen.py %d \"$BENCH_SECRET\"` (a generator committed in the job's"
  " repository): %d blocks of ~1 MiB of ~120-byte log lines between `BENCH-BEGIN` / `BENCH-END`;"
  " `BENCH_SECRET` is a masked variable and its value is printed %d times, each split over two"
  " `write()` calls. MiB/s = %d MiB / (wall with the output - wall of the same job printing"
  " nothing); the fixed cost (poll, lease, attest, sync, artifacts, release) cancels out." %
  (MB, MB, (MB + 63) // 64, MB))
w("")
w("| variant | what | wall s (%d MiB) | wall s (empty) | MiB/s | vs ceiling | own CPU s | box+job CPU s | server CPU s | peak RSS MiB |" % MB)
w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
KINDS = (("gitlab", "`tdx-runner agent --once`: PATCH .../trace to the test server, masked, crc32, via a file"),
         ("run", "`tdx-runner run -- python3 gen.py` > /dev/null (**ceiling**: the transport)"),
         ("gen", "`python3 gen.py` > /dev/null on the host (the generator alone)"))
res, rows = {}, {}
for kind, _ in KINDS:
    wn = med(kind, MB, lambda r: r["t"]["wall"])
    w0 = med(kind, 0, lambda r: r["t"]["wall"]) if kind != "gen" else 0.0
    if wn is None or w0 is None:
        continue
    res[kind] = MB / (wn - w0) if wn > w0 else None
    rows[kind] = (wn, w0)
for kind, what in KINDS:
    if kind not in rows:
        w("| %s | %s | - | - | - | - | - | - | - | - |" % (kind, what))
        continue
    wn, w0 = rows[kind]
    rate = res[kind]
    own = med(kind, MB, lambda r: r["t"]["cpu_own"])
    tree = med(kind, MB, lambda r: r["t"]["cpu_tree"] - (r["t"]["cpu_own"] or 0))
    srv = med(kind, MB, lambda r: r["t"]["srv_cpu"]) if kind == "gitlab" else None
    hwm = med(kind, MB, lambda r: r["t"]["hwm_kib"])
    ratio = "%.2fx" % (rate / res["run"]) if rate and res.get("run") and kind != "gen" else ""
    w("| %s | %s | %.2f | %s | %s | %s | %s | %s | %s | %s |" % (
        kind, what, wn, "%.2f" % w0 if kind != "gen" else "-", "%.1f" % rate if rate else "-", ratio,
        "%.2f" % own if own is not None else "-", "%.2f" % tree if tree is not None and kind != "gen" else "-",
        "%.2f" % srv if srv is not None else "-", "%.1f" % (hwm / 1024) if hwm else "-"))
w("")
g = sel("gitlab", MB)
if g:
    v = g[0]["v"]
    w("NO LOSS (every %d MiB run): the server's stored trace holds, from `BENCH-BEGIN` on, exactly"
      " the generator's output with the secret replaced by `[MASKED]` (%d bytes, %d lines, crc32"
      " computed here from the same generator: %s), the secret appears nowhere in the trace"
      " (the server scans every PATCH: %s), `[MASKED]` appears %d times (expected %d), the"
      " final PUT's checksum matched the stored trace (%s), no contract error (%s). %d PATCHes"
      " of at most 1 MiB; the server received the trace over %.2f s (first to last PATCH)." % (
        MB, v["expected_size"], v["expected_lines"],
        "match in %d/%d runs" % (sum(r["v"]["region_crc_match"] for r in g), len(g)),
        "%d leaks" % sum(r["v"]["leaks"] for r in g), v["masked"], v["masked_expected"],
        "%d/%d" % (sum(r["v"]["checksum_match"] for r in g), len(g)),
        "%d errors" % sum(len(r["v"]["errors"]) for r in g), v["patches"],
        median([r["v"]["trace_span_s"] for r in g])))
    w("")
if res.get("gitlab"):
    w("Throughput to the test server with masking on: **%.1f MiB/s** (goal >= 50 MB/s: %s);"
      " **%.2fx** of `tdx-runner run` to /dev/null (%.1f MiB/s) on the same box transport." % (
        res["gitlab"], "met" if res["gitlab"] * 1.048576 >= 50 else "not met",
        res["gitlab"] / res["run"] if res.get("run") else float("nan"), res.get("run") or 0))
    cg = [med(k, MB, lambda r: r["t"]["cpu_own"]) for k in ("gitlab", "run")]
    c0 = [med(k, 0, lambda r: r["t"]["cpu_own"]) for k in ("gitlab", "run")]
    if None not in cg + c0:
        w("")
        w("CPU per MiB streamed, `tdx-runner` process only (own CPU of the %d MiB job - of the empty"
          " job): agent **%.1f ms/MiB**, `tdx-runner run` %.1f ms/MiB. Unlike wall time this hardly"
          " moves with the load of this shared machine; at that cost one free core streams"
          " ~%.0f MiB/s." % (MB, (cg[0] - c0[0]) * 1e3 / MB, (cg[1] - c0[1]) * 1e3 / MB,
                              MB / (cg[0] - c0[0]) if cg[0] > c0[0] else float("nan")))
    w("")
w("CPU columns are seconds of the %d MiB run: *own* = the `tdx-runner` process itself (all its"
  " threads); *box+job* = what it reaped (the local box's sshd sessions, bash, the generator);"
  " *server* = the Python test server. On a 2-core machine they compete for the same cores." % MB)
w("")
if env["B_RSS"] == "1":
    try:
        R = json.load(open(os.path.join(T, "rss.json")))
    except (OSError, ValueError):
        R = None
    w("### Agent RSS")
    w("")
    if not R:
        w("The RSS run failed: nothing to report.")
    else:
        ok = sum(1 for j in R["jobs"].values() if j["status"] == "success" and not j["errors"] and not j["leaks"])
        w("`tdx-runner agent` with `\"concurrency\": 8`, VmRSS / VmHWM from `/proc/PID/status` of the agent"
          " process only. The boxes (each a local sshd, the guest agent, the job's bash and generator)"
          " are other processes and are not counted; they are shown for information.")
        w("")
        w("| state | VmRSS MiB | VmHWM MiB | threads | notes |")
        w("|---|---:|---:|---:|---|")
        i = R["idle"]
        w("| idle (polling, no job, after %s s) | %.1f | %.1f | %s | one `jobs/request` every 3 s |" % (
            env["B_IDLE"], i.get("VmRSS", 0) / 1024, i.get("VmHWM", 0) / 1024, i.get("Threads", "-")))
        e = R["end"]
        w("| 8 concurrent jobs | %.1f (peak sampled) | **%.1f** (at the end) | %s (peak) | %d/8 succeeded,"
          " up to %d leases at once, all final after %.1f s; each job prints 8 MiB, sleeps 5 s, prints"
          " 8 MiB (masked) |" % (R["peak_rss_kib"] / 1024, e.get("VmHWM", 0) / 1024, R["peak_threads"], ok,
                                R["peak_claims"], R["all_s"]))
        for k, j in sorted(R["jobs"].items()):
            if j["status"] != "success":
                w("| job %s failed | | | | %s: `%s` |" % (k, j.get("failure_reason"), j.get("error", "?")))
        w("| (boxes, other processes) | %.1f (peak sum) | | | up to %d processes of the 8 boxes |" % (
            R["box_peak_kib"] / 1024, R["box_peak_procs"]))
        w("")
        w("VmHWM is the kernel's high-water mark, updated lazily from per-thread counters, so the"
          " peak VmRSS sampled every 100 ms can read slightly above it.")
        w("")
        w("Agent RSS idle: **%.1f MiB** (VmHWM %.1f MiB); with 8 concurrent jobs: VmHWM **%.1f MiB**"
          " (the agent process only; the boxes are other processes)." % (
            i.get("VmRSS", 0) / 1024, i.get("VmHWM", 0) / 1024, e.get("VmHWM", 0) / 1024))
        w("")
if bad:
    w("Failed runs: " + "; ".join("%s %d MiB rep %d rc %s%s" % (
        r["kind"], r["mb"], r["rep"], r["t"]["rc"],
        (" " + json.dumps(r["v"])) if r["kind"] == "gitlab" else "") for r in bad))
    w("")
w("<details><summary>Raw runs (JSON lines)</summary>")
w("")
w("```")
for r in runs:
    w(json.dumps(r, sort_keys=True))
w("```")
w("</details>")
body = "\n".join(L) + "\n"
print(body)

if env["B_WRITE"] == "1":
    path = env["B_OUT"]
    begin, end = b"<!-- gitlab:begin -->", b"<!-- gitlab:end -->"
    block = begin + b"\n" + body.encode() + end
    data = open(path, "rb").read() if os.path.exists(path) else b""
    b, e = data.find(begin), data.find(end)
    if b >= 0 and e > b and data.count(begin) == 1 and data.count(end) == 1:
        data = data[:b] + block + data[e + len(end):]
    elif b < 0 and e < 0:
        sep = b"" if not data or data.endswith(b"\n\n") else (b"\n" if data.endswith(b"\n") else b"\n\n")
        data = data + sep + block + b"\n"
    else:
        raise SystemExit("bench_gitlab.sh: %s has unbalanced gitlab markers; not written" % path)
    tmp = path + ".tmp-gitlab"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    print("bench_gitlab: wrote the gitlab section of %s" % path)
PY
if [[ $rss == 1 ]] && ! python3 -c 'import json,sys
j = json.load(open(sys.argv[1]))["jobs"]
sys.exit(0 if len(j) == 8 and all(v["status"] == "success" for v in j.values()) else 1)' "$T/rss.json" 2>/dev/null; then
	echo "bench_gitlab.sh: not all 8 concurrent jobs succeeded (see the section)" >&2
	exit 1
fi
[[ -z $(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["rep"] > 0 and (r["t"]["rc"] != 0 or (r["kind"] == "gitlab" and not r["v"]["no_loss"])): print(1)' "$T/runs.jsonl") ]] ||
	{ echo "bench_gitlab.sh: some runs failed or lost bytes (see the section)" >&2; exit 1; }
