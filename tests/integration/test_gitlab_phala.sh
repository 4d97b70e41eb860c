#!/usr/bin/env bash
# shellcheck disable=SC2016 # job scripts in single quotes: bash in the box expands them
# test_gitlab_phala.sh - `tdx-runner agent --once` with executor.kind "phala" against two
# test servers at once: gitlab_server.py (the runner API and the project's git repo) for the
# jobs, phala_server.py --boxes for the CVMs (each a real local box: sshd in a mount
# namespace, stunnel4 behind the SNI router, the guest agent with the simulator PKI whose
# collateral pcs_server.py serves as the PCCS - the set-up is cvm_env.sh, shared with
# cvm_e2e.sh). The same cases as test_gitlab_agent.sh (local executor): success (masked
# secret split across writes, artifacts zipped with a tdx-attestation.json that re-verifies);
# script failure; a refused gate (wrong app id, tampered event log: runner_system_failure,
# nothing fetched, zero bytes written into the box by its inotify record, the CVM deleted);
# cancel during a silent step (noticed through the keep-alive PUT); agent kill -9 mid-job then
# restart (the job failed on the server); Phala API 500s during the lease (retried, success);
# a flapping trace API, final PUT 500/202/202, artifacts 503 (trace byte-identical); job
# timeout (job_execution_timeout, after_script ran); 100 MB of output and a 200 MB artifact
# (GL_PHALA_BIG_OUT_MB / GL_PHALA_BIG_ART_MB change the sizes); SIGTERM with --stop-timeout
# (the running job failed/runner_system_failure); a refused runner token (a clear error).
# After every case, without `tdx-runner reap`: zero live CVMs on the Phala server, zero box
# processes, zero claims. Needs what cvm_e2e.sh needs (root, sshd, stunnel4, unshare, rsync,
# git, python3-cryptography) plus git-http-backend; SKIPs with a message otherwise.
set -euo pipefail
E=phala
bin=${TDXR_BIN:?TDXR_BIN not set}
src=${TDXR_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
here=$src/tests/integration
SECONDS=0

fail() {
	echo "FAIL: $*"
	[ -f "${tmp:-/nonexistent}/agent.err" ] && sed 's/^/  agent: /' "$tmp/agent.err" | tail -30
	[ -f "${tmp:-/nonexistent}/gl.err" ] && sed 's/^/  gitlab: /' "$tmp/gl.err" | tail -10
	[ -f "${tmp:-/nonexistent}/srv.log" ] && sed 's/^/  phala: /' "$tmp/srv.log" | tail -15
	exit 1
}
[ -x /usr/lib/git-core/git-http-backend ] || command -v git-http-backend >/dev/null 2>&1 ||
	{ command -v git >/dev/null 2>&1 && [ -x "$(git --exec-path)/git-http-backend" ]; } ||
	{ echo "SKIP: git-http-backend is not installed (the GitLab test server serves the repo with it)"; exit 0; }

apid=
gl_pid=
cvm_cleanup_hook() {
	[ -n "$apid" ] && kill -9 "$apid" 2>/dev/null
	exec 8>&- # the GitLab server sees EOF on stdin and exits
	[ -n "$gl_pid" ] && { sleep 0.2; kill "$gl_pid" 2>/dev/null; }
	return 0
}
CVM_TMP_TAG=glphala
# the checks (SKIP), the Phala server with its boxes, $cfg, the helpers: cvm_env.sh
# shellcheck source=tests/integration/cvm_env.sh
. "$here/cvm_env.sh"

# ---- the GitLab server and its project ------------------------------------------------
mkdir -p "$tmp/work"
(
	cd "$tmp/work"
	git init -q -b main
	git config user.email t@example.com
	git config user.name test
	printf 'hello from the repo\n' >README
	git add README
	git commit -qm "initial commit"
)
git clone -q --bare "$tmp/work" "$tmp/repo.git"
runner_token=glrt-phalaRunnerToken0123456789
mkfifo "$tmp/gl.in"
"$PY" "$here/gitlab_server.py" --runner-token "$runner_token" --repo "$tmp/repo.git" \
	--project test/gitlab-test --state-dir "$tmp/gl" --trace-update-interval 1 --watch-stdin \
	<"$tmp/gl.in" >"$tmp/gl.out" 2>"$tmp/gl.err" &
gl_pid=$!
exec 8>"$tmp/gl.in"
for _ in $(seq 100); do grep -q '^PORT ' "$tmp/gl.out" 2>/dev/null && break; sleep 0.05; done
grep -q '^PORT ' "$tmp/gl.out" || fail "gitlab_server.py did not start"
url=http://127.0.0.1:$(awk '/^PORT /{print $2}' "$tmp/gl.out")

# the CVM config of cvm_env.sh plus the GitLab entry (0600: it holds the runner token)
"$PY" - "$cfg" "$url" "$runner_token" <<'EOF'
import json, os, sys
p, url, tok = sys.argv[1:4]
c = json.load(open(p))
c["gitlab"] = [{"url": url, "token": tok}]
fd = os.open(p + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as f:
    json.dump(c, f, indent=1)
os.replace(p + ".new", p)
EOF

# gl METHOD PATH [JSON]: the GitLab server's control API (prints the answer)
gl() {
	"$PY" -c 'import sys, urllib.request
m, u, d = sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None
r = urllib.request.Request(u, data=d.encode() if d is not None else None, method=m,
                           headers={"Content-Type": "application/json"})
sys.stdout.write(urllib.request.urlopen(r, timeout=30).read().decode())' "$1" "$url$2" ${3+"$3"}
}
glfault() { gl POST /_control/fault "$1" >/dev/null; }
enqueue() { gl POST /_control/enqueue "$1" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["id"])'; }
job() { gl GET "/_control/job/$1"; }
# check ID WHAT: runs the python assertions on stdin with j = the job view, t = its trace
check() {
	job "$1" >"$tmp/job.json"
	"$PY" -c 'import base64, json, sys, zlib
j = json.load(open(sys.argv[1]))
t = base64.b64decode(j["trace"].get("b64", ""))
exec(sys.stdin.read())' "$tmp/job.json" || fail "$2: as recorded by the GitLab server (trace tail: $(
		"$PY" -c 'import base64, json, sys; print(base64.b64decode(json.load(open(sys.argv[1]))["trace"].get("b64", ""))[-1500:].decode(errors="replace"))' "$tmp/job.json"))"
}
# trace_has ID TEXT: waits up to 30 s for TEXT in the job's trace (on the server)
trace_has() {
	for _ in $(seq 300); do
		job "$1" | "$PY" -c 'import base64, json, sys
sys.exit(0 if sys.argv[1].encode() in base64.b64decode(json.load(sys.stdin)["trace"].get("b64", "")) else 1)' "$2" && return 0
		sleep 0.1
	done
	fail "'$2' never reached the trace of job $1"
}
agent_once() { "$bin" agent --config "$cfg" --once --wait "${1:-20}" >"$tmp/agent.out" 2>"$tmp/agent.err"; }
agent_bg() {
	"$bin" agent --config "$cfg" --once --wait 20 >"$tmp/agent.out" 2>"$tmp/agent.err" &
	apid=$!
}
# clean WHAT: what the agent itself left (no reap): no CVM, box process or claim
clean() { leftovers "$1: left by the agent"; }

# ---- 1. success: masked secret split across writes, artifacts with the bundle ---------
secret='s3cr3t-Phala-0123456789'
before=$(cvm_ids)
id=$(enqueue '{"script": ["echo \"dir=$CI_PROJECT_DIR\"", "cat README", "printf s3cr3t-; sleep 1.2; printf \"Phala-0123456789\\n\"", "echo $MY_SECRET", "mkdir -p out && echo built >out/result.txt && echo junk >out/skip.tmp"],
  "after_script": ["echo after"],
  "variables": [{"key": "MY_SECRET", "value": "'"$secret"'", "masked": true}],
  "artifacts": [{"paths": ["out/"], "exclude": ["out/*.tmp"], "when": "on_success"}]}')
agent_once || fail "success: agent --once exited non-zero"
check "$id" "success" <<EOF
assert j["status"] == "success", (j["status"], j["final"], j["errors"])
assert not j["errors"], j["errors"]
assert b"hello from the repo" in t, "the source did not reach the box"
import re
assert re.search(rb"^dir=$work_root(/|\r?$)", t, re.M), "the job did not run in $work_root"
assert b"$secret" not in t and t.count(b"[MASKED]") >= 2, "secret not masked"
assert j["token"].encode() not in t, "job token leaked into the trace"
assert b"after" in t and b"SIMULATED" in t, "no after_script or no attestation summary"
assert j["trace"]["crc32"] == "crc32:%08x" % (zlib.crc32(t) & 0xffffffff)
assert j["final"]["checksum"]["match"] and not j["trace"]["leaks"], (j["final"], j["trace"]["leaks"])
a = j["artifacts"][-1]
assert a["status"] == 201 and a["zip_ok"], a
assert {"tdx-attestation.json", "out/result.txt"} <= set(a["names"]) and "out/skip.tmp" not in a["names"], a["names"]
assert a["attestation"]["json_ok"], a["attestation"]
import zipfile
open(sys.argv[1] + ".bundle", "wb").write(zipfile.ZipFile(a["path"]).read("tdx-attestation.json"))
EOF
"$bin" verify --allow-simulated "$tmp/job.json.bundle" >"$tmp/verify" 2>&1 ||
	{ cat "$tmp/verify"; fail "success: the uploaded tdx-attestation.json does not re-verify"; }
grep -q 'pass identity' "$tmp/verify" || fail "success: the bundle's verification has no identity step"
for cid in $(cvm_ids); do
	case " $before " in *" $cid "*) continue ;; esac
	read -r ent wr <<<"$(work_of "$cid")"
	[ "$wr" -gt 0 ] || fail "success: the box recorded no writes ($ent entries, $wr writes): the recorder is blind"
done
clean "success"
echo "ok: success on phala: masked secret split across writes, source synced, artifacts zipped with a bundle that re-verifies, CVM deleted"

# ---- 2. script failure -----------------------------------------------------------------
id=$(enqueue '{"script": ["echo failing", "exit 7"], "after_script": ["echo after-failure"]}')
agent_once || fail "script failure: agent --once exited non-zero (the job reached a final state)"
check "$id" "script failure" <<'EOF'
assert j["status"] == "failed", j["status"]
u = j["final"]
assert u.get("failure_reason") == "script_failure" and u.get("exit_code") == 7, u
assert b"after-failure" in t and b"exit code 7" in t
assert set(j["artifacts"][-1]["names"]) == {"tdx-attestation.json"}, j["artifacts"]
EOF
clean "script failure"
echo "ok: script failure -> failed/script_failure/exit 7, after_script ran, bundle uploaded alone, CVM deleted"

# ---- 3. refused gate: nothing fetched, zero bytes into the box, the CVM deleted --------
for f in wrong-app-id:identity tamper-eventlog:rtmr_replay; do
	before=$(cvm_ids)
	box_fault "${f%%:*}"
	id=$(enqueue '{"script": ["echo should-not-run"]}')
	agent_once || { box_fault none; fail "${f%%:*}: agent --once exited non-zero"; }
	box_fault none
	check "$id" "${f%%:*}" <<EOF
assert j["status"] == "failed" and j["final"].get("failure_reason") == "runner_system_failure", j["final"]
assert b"should-not-run" not in t.replace(b"echo should-not-run", b""), "the script ran"
assert b"did not attest" in t and b"${f##*:}" in t, "the refusal is not in the trace"
assert not j["fetches"], "the source was fetched for a box that did not attest"
EOF
	zero_bytes "${f%%:*}" "$before"
	clean "${f%%:*}"
	echo "ok: ${f%%:*} -> runner_system_failure at ${f##*:}, nothing fetched, zero bytes reached the box, CVM deleted"
done

# ---- 4. cancel during a silent step ------------------------------------------------------
# The step prints nothing after its first line: the agent learns of the cancel from the answer
# to its keep-alive PUT (gitlab-runner's touchJob, every 3 s while nothing is sent), so it must
# stop the remote command, delete the CVM and exit well before the sleep would end
id=$(enqueue '{"script": ["echo long-running; sleep 60; echo not-reached"]}')
agent_bg
trace_has "$id" $'\nlong-running'
seq0=$(job "$id" | "$PY" -c 'import json, sys; print(max(r["seq"] for r in json.load(sys.stdin)["requests"]))')
t0=$SECONDS
gl POST "/_control/job/$id/cancel" '{"status": "canceled"}' >/dev/null
for _ in $(seq 150); do kill -0 "$apid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$apid" 2>/dev/null && fail "cancel: the agent did not stop the canceled silent step within 15 s"
wait "$apid" || true
apid=
[ $((SECONDS - t0)) -le 10 ] || fail "cancel: the agent took $((SECONDS - t0)) s to stop a canceled silent step (> 10 s)"
check "$id" "cancel" <<EOF2
assert j["status"] == "canceled", j["status"]
assert b"not-reached" not in t.replace(b"echo not-reached", b""), "the step went on after the cancel"
# the step printed nothing after the cancel: a keep-alive PUT state=running told the agent
ka = [r for r in j["requests"] if r["seq"] > $seq0 and r["op"] == "update" and (r["body"] or {}).get("state") == "running"]
assert ka and ka[0]["status"] == 403, ("no keep-alive PUT answered 403 after the cancel", ka)
EOF2
clean "cancel"
echo "ok: cancel during a silent step noticed through the keep-alive PUT; stopped in $((SECONDS - t0)) s, CVM deleted"

# ---- 5. agent kill -9 mid-job, then restart ----------------------------------------------
id=$(enqueue '{"script": ["echo before-crash; sleep 60"]}')
agent_bg
trace_has "$id" $'\nbefore-crash'
kill -9 "$apid"
wait "$apid" 2>/dev/null || true
apid=
[ "$(live_cvms)" -eq 1 ] || fail "kill -9: expected the dead agent's CVM to outlive it ($(live_cvms) live)"
[ "$(box_procs)" -gt 0 ] || fail "kill -9: expected the dead agent's box to still run"
agent_once 1 || true # reaps the CVM at start-up, fails the job, then waits 1 s for another
check "$id" "kill -9, restart" <<'EOF'
assert j["status"] == "failed" and j["final"].get("failure_reason") == "runner_system_failure", j["final"]
assert b"before-crash" in t and b"agent stopped while this job was running" in t
assert j["final"]["checksum"]["match"], j["final"]
EOF
clean "kill -9, restart"
echo "ok: agent kill -9 mid-job, restart: CVM deleted by the start-up reap, job failed on the server with its whole trace"

# ---- 6. Phala API 500s during the lease: retried, the job succeeds -----------------------
p0=$(calls provision)
s0=$(calls state)
fault "op=provision&status=500&count=2"
fault "op=state&status=500&count=2"
id=$(enqueue '{"script": ["echo through-the-faults"]}')
agent_once || fail "api faults: agent --once exited non-zero"
clear_faults
check "$id" "api faults" <<'EOF'
assert j["status"] == "success", (j["status"], j["final"], j["errors"])
assert b"through-the-faults" in t
EOF
[ "$(calls provision)" -eq $((p0 + 3)) ] || fail "api faults: provision not retried twice ($p0 -> $(calls provision))"
[ "$(calls state)" -ge $((s0 + 3)) ] || fail "api faults: state not retried"
clean "api faults"
echo "ok: Phala API 500s on provision and state during the lease are retried; the job succeeds"

# ---- 7. a flapping trace API, a final update answered 202/202/500, artifacts 503 ----------
# The trace PATCHes get two 500s, a reset, a forced 416 and an answer lost after the server
# stored the bytes; the final PUT 500 then 202 twice; the bundle's upload a 503 with
# Retry-After. The trace still arrives once, in order, byte for byte.
id=$(enqueue '{"script": ["for i in $(seq 1 2000); do echo line-$i; done", "sleep 1", "for i in $(seq 2001 4000); do echo line-$i; done"], "final_202": 2}')
glfault '{"op": "trace", "status": 500, "count": 2, "job": '"$id"'}'
glfault '{"op": "trace", "mode": "reset", "count": 1, "job": '"$id"'}'
glfault '{"op": "trace", "status": 416, "count": 1, "job": '"$id"'}'
glfault '{"op": "trace", "when": "after", "mode": "close", "count": 1, "job": '"$id"'}'
glfault '{"op": "artifacts", "status": 503, "count": 1, "retry_after": 1, "job": '"$id"'}'
agent_bg
# the update fault only now, once the script's last line is in: a keep-alive during the lease
# must not take the 500 meant for the final PUT (the last step prints without a pause)
trace_has "$id" $'\nline-2000\n'
glfault '{"op": "update", "status": 500, "count": 1, "job": '"$id"'}'
wait "$apid" || { apid=; fail "flapping API: agent --once exited non-zero"; }
apid=
gl POST /_control/faults/clear >/dev/null
check "$id" "flapping API" <<'EOF'
assert j["status"] == "success", (j["status"], j["final"], j["errors"])
assert not j["errors"], j["errors"]
want = "".join("line-%d\n" % i for i in range(1, 4001)).encode()
got = b"".join(l + b"\n" for l in t.split(b"\n") if l.startswith(b"line-"))
assert got == want, "lines lost, duplicated, out of order or changed (%d lines)" % got.count(b"\n")
assert t.find(b"line-1\n") < t.find(b"line-2000\n") < t.find(b"line-2001\n") < t.find(b"line-4000\n")
assert "".join("line-%d\n" % i for i in range(1, 2001)).encode() in t, "the first step's output is not contiguous"
assert "".join("line-%d\n" % i for i in range(2001, 4001)).encode() in t, "the last step's output is not contiguous"
assert j["final"]["checksum"]["match"], j["final"]
assert j["trace"]["crc32"] == "crc32:%08x" % (zlib.crc32(t) & 0xffffffff)
rq = j["requests"]
faults = [str(r["fault"]) for r in rq if r["op"] == "trace" and r["fault"]]
assert sorted(faults) == sorted(["500", "500", "reset", "416", "after:close"]), faults
assert j["trace"]["range_errors"] >= 1, j["trace"]
# the final PUTs: the injected 500 and two 202s, in either order (the 500 is injected while the
# job runs, and a fast job under load can send its first final PUT before it is), then 200
fin = [r for r in rq if r["op"] == "update" and (r["fault"] or (r["body"] or {}).get("state") in ("success", "failed"))]
st = [r["status"] for r in fin]
assert sorted(st[:-1]) == [202, 202, 500] and st[-1] == 200, [(r["status"], r["fault"], r["body"]) for r in fin]
arts = [r["status"] for r in rq if r["op"] == "artifacts"]
assert arts == [503, 201], arts
a = j["artifacts"][-1]
assert a["status"] == 201 and set(a["names"]) == {"tdx-attestation.json"}, a
EOF
clean "flapping API"
echo "ok: flapping trace API (500, 500, reset, 416, lost answer), final PUT 500/202/202, artifacts 503: trace byte-identical, CVM deleted"

# ---- 8. job timeout: the remote command is stopped, job_execution_timeout, after_script -------
# runner_info.timeout counts from the start of the job, the lease and the gate included
id=$(enqueue '{"script": ["echo before-timeout; sleep 60; echo not-reached"], "after_script": ["echo after-timeout"], "timeout": 8}')
t0=$SECONDS
agent_once || fail "timeout: agent --once exited non-zero"
[ $((SECONDS - t0)) -le 20 ] || fail "timeout: the job took $((SECONDS - t0)) s with an 8 s timeout"
check "$id" "timeout" <<'EOF'
assert j["status"] == "failed" and j["final"].get("failure_reason") == "job_execution_timeout", j["final"]
assert b"before-timeout" in t and b"after-timeout" in t, "no script output or no after_script"
assert b"not-reached" not in t.replace(b"echo not-reached", b""), "the step went on after the timeout"
assert j["final"]["checksum"]["match"], j["final"]
EOF
clean "timeout"
echo "ok: job timeout -> job_execution_timeout, the remote command stopped, after_script ran, CVM deleted"

# ---- 9. big: MB of output and a MB artifact, streamed both ways ---------------------------
out_mb=${GL_PHALA_BIG_OUT_MB:-100}
art_mb=${GL_PHALA_BIG_ART_MB:-200}
id=$(enqueue '{"script": ["head -c '"$((out_mb * 1000000))"' /dev/zero | tr \"\\0\" x | fold -w 99; echo", "mkdir -p out && head -c '"$((art_mb * 1000000))"' /dev/urandom >out/big.bin && sha256sum out/big.bin"],
  "artifacts": [{"paths": ["out/big.bin"]}]}')
gl POST /_control/set '{"artifact_max_bytes": '"$((art_mb * 2000000))"', "inline_trace_max": 0}' >/dev/null
t0=$SECONDS
agent_once 20 || fail "big: agent --once exited non-zero"
tbig=$((SECONDS - t0))
gl POST /_control/set '{"inline_trace_max": 1048576, "artifact_max_bytes": 104857600}' >/dev/null
check "$id" "big" <<EOF
assert j["status"] == "success" and not j["errors"], (j["status"], j["errors"])
assert j["final"]["checksum"]["match"] and not j["trace"]["leaks"], j["final"]
n = $out_mb * 1000000
t = open(j["trace"]["path"], "rb").read()
assert len(t) == j["trace"]["size"] and len(t) > n, (len(t), j["trace"]["size"])
line = b"x" * 99 + b"\n"
want = line * (n // 99) + b"x" * (n % 99) + b"\n"
i = t.find(line)
assert i >= 0 and t[i:i + len(want)] == want, "the output is not byte-identical in the trace"
import hashlib, re, zipfile
a = j["artifacts"][-1]
assert a["status"] == 201 and a["sizes"].get("out/big.bin") == $art_mb * 1000000 and "tdx-attestation.json" in a["names"], a
h = hashlib.sha256()
with zipfile.ZipFile(a["path"]).open("out/big.bin") as f:
    for b in iter(lambda: f.read(1 << 20), b""):
        h.update(b)
m = re.search(rb"^([0-9a-f]{64})  out/big.bin$", t, re.M)
assert m and m.group(1).decode() == h.hexdigest(), "the uploaded big.bin differs from the box's"
EOF
clean "big"
echo "ok: ${out_mb} MB of output byte-identical in the trace, a ${art_mb} MB artifact identical to the box's (${tbig} s), CVM deleted"

# ---- 10. SIGTERM: the running job is failed after --stop-timeout, the CVM deleted -----------
id=$(enqueue '{"script": ["echo graceful; sleep 60; echo not-reached"]}')
"$bin" agent --config "$cfg" --stop-timeout 1 >"$tmp/agent.out" 2>"$tmp/agent.err" &
apid=$!
trace_has "$id" $'\ngraceful'
kill -TERM "$apid"
t0=$SECONDS
for _ in $(seq 200); do kill -0 "$apid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$apid" 2>/dev/null && fail "SIGTERM: the agent did not stop within 20 s"
wait "$apid" || { apid=; fail "SIGTERM: the agent exited non-zero"; }
apid=
check "$id" "SIGTERM" <<'EOF'
assert j["status"] == "failed" and j["final"].get("failure_reason") == "runner_system_failure", j["final"]
assert b"graceful" in t and b"not-reached" not in t.replace(b"echo not-reached", b"")
assert j["final"]["checksum"]["match"], j["final"]
EOF
clean "SIGTERM"
echo "ok: SIGTERM with --stop-timeout 1: the running job failed/runner_system_failure, agent exited 0 in $((SECONDS - t0)) s, CVM deleted"

# ---- 11. a refused runner token: a clear error, no retry loop, no CVM -----------------------
p0=$(calls provision)
"$PY" - "$cfg" "$tmp/bad.json" <<'EOF'
import json, os, sys
c = json.load(open(sys.argv[1]))
c["gitlab"][0]["token"] = "glrt-wrong"
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as f:
    json.dump(c, f)
EOF
t0=$SECONDS
"$bin" agent --config "$tmp/bad.json" --once --wait 5 >"$tmp/agent.out" 2>"$tmp/agent.err" &&
	fail "refused token: the agent exited 0"
[ $((SECONDS - t0)) -le 4 ] || fail "refused token: the agent took $((SECONDS - t0)) s to give up (a retry loop?)"
grep -q "runner token was refused" "$tmp/agent.err" || fail "refused token: no clear message"
[ "$(calls provision)" -eq "$p0" ] || fail "refused token: a CVM was provisioned"
clean "refused token"
echo "ok: a refused runner token stops the agent with a clear error; nothing provisioned"

echo "PASS (phala, ${SECONDS} s)"
