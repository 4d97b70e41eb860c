#!/usr/bin/env bash
# test_gitlab_agent.sh - `tdx-runner agent --once` against the GitLab runner-API
# test server (tests/integration/gitlab_server.py: the real contract, a real git
# repo over smart HTTP) on the local executor (real sshd, guest agent, rsync).
# Checks what the server recorded: final state, failure_reason, exit code, the
# trace byte for byte (masks applied, checksum), artifacts zip with the
# attestation bundle, zero leaked boxes; and that a refused gate sends nothing.
set -euo pipefail
bin=${TDXR_BIN:?TDXR_BIN not set}
src=${TDXR_SOURCE_DIR:?TDXR_SOURCE_DIR not set}
for t in /usr/sbin/sshd rsync ssh-keygen python3 git curl; do
	command -v "$t" >/dev/null 2>&1 || [ -x "$t" ] || { echo "SKIP: $t is not installed"; exit 0; }
done
[ -x /usr/lib/git-core/git-http-backend ] || command -v git-http-backend >/dev/null 2>&1 ||
	[ -x "$(git --exec-path)/git-http-backend" ] || { echo "SKIP: git-http-backend missing"; exit 0; }
tmp=$(mktemp -d /tmp/tdxr-gl-XXXXXX)
state=$tmp/s
srv_pid=
cleanup() {
	[ -n "${KEEP_TMP:-}" ] && { echo "kept $tmp"; [ -n "$srv_pid" ] && kill "$srv_pid"; return; }
	"$bin" reap --all --config "$tmp/cfg.json" >/dev/null 2>&1 || true
	[ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$tmp/agent.err" ] && tail -n 30 "$tmp/agent.err"; exit 1; }
box_procs() { grep -ls "$state/boxe[s]/" /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null | wc -l; }

# A project repository (bare, served by the test server over smart HTTP).
mkdir -p "$tmp/work"
(
	cd "$tmp/work"
	git init -q -b main
	git config user.email t@example.com
	git config user.name test
	printf 'hello from the repo\n' >README
	mkdir -p src
	printf 'int main(void) { return 0; }\n' >src/main.c
	git add README src/main.c
	git commit -qm "initial commit"
)
git clone -q --bare "$tmp/work" "$tmp/repo.git"

runner_token=glrt-testRunnerToken0123456789
python3 "$src/tests/integration/gitlab_server.py" --runner-token "$runner_token" --repo "$tmp/repo.git" \
	--project test/gitlab-test --state-dir "$tmp/srv" --trace-update-interval 1 \
	>"$tmp/srv.out" 2>"$tmp/srv.err" </dev/null &
srv_pid=$!
for _ in $(seq 100); do grep -q '^PORT ' "$tmp/srv.out" 2>/dev/null && break; sleep 0.05; done
port=$(awk '/^PORT /{print $2}' "$tmp/srv.out")
[ -n "$port" ] || { cat "$tmp/srv.err"; fail "gitlab_server did not start"; }
url=http://127.0.0.1:$port

umask 077
printf '{"state_dir": "%s", "executor": {"kind": "local"}, "gitlab": [{"url": "%s", "token": "%s"}]}' \
	"$state" "$url" "$runner_token" >"$tmp/cfg.json"
printf '{"state_dir": "%s", "executor": {"kind": "local"}, "policy": {"allow_simulated": false}, "gitlab": [{"url": "%s", "token": "%s"}]}' \
	"$state" "$url" "$runner_token" >"$tmp/strict.json"
umask 022

enqueue() { curl -sf -X POST -H 'Content-Type: application/json' --data "$1" "$url/_control/enqueue" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
job() { curl -sf "$url/_control/job/$1"; }
run_agent() { # config
	"$bin" agent --config "$1" --once --wait 20 >"$tmp/agent.out" 2>"$tmp/agent.err"
}

# 1. success: script output, masked secret split by the shell, artifacts + bundle.
secret='s3cr3t-Value-0123456789'
id=$(enqueue '{"script": ["echo start", "cat README", "printf s3cr3t-; sleep 1.5; printf \"Value-0123456789\\n\"", "echo $MY_SECRET", "mkdir -p out && echo built >out/result.txt && echo junk >out/skip.tmp"],
  "after_script": ["echo after"],
  "variables": [{"key": "MY_SECRET", "value": "'"$secret"'", "masked": true}, {"key": "PLAIN", "value": "visible"},
                {"key": "CONF", "value": "file-content", "file": true}],
  "artifacts": [{"paths": ["out/"], "exclude": ["out/*.tmp"], "when": "on_success"}]}')
run_agent "$tmp/cfg.json" || fail "agent --once exited non-zero for a successful job"
job "$id" >"$tmp/job.json"; cp "$tmp/job.json" "$tmp/job-$id.json"
python3 - "$tmp/job.json" "$secret" <<'EOF' || fail "job 1 (success) as recorded by the server"
import base64, json, sys, zlib
j = json.load(open(sys.argv[1])); secret = sys.argv[2].encode()
assert j["status"] == "success", (j["status"], j["final"], j["errors"])
assert not j["errors"], j["errors"]
t = base64.b64decode(j["trace"]["b64"])
assert b"hello from the repo" in t, t[-2000:]
assert secret not in t and b"[MASKED]" in t, "secret not masked"
assert t.count(b"[MASKED]") >= 2, t.count(b"[MASKED]")
assert b"after" in t and b"section_start:" in t and b"attested" in t, t[-3000:]
assert j["token"].encode() not in t, "job token leaked into the trace"
assert j["trace"]["crc32"] == "crc32:%08x" % (zlib.crc32(t) & 0xffffffff)
assert not j["trace"]["leaks"], j["trace"]["leaks"]
arts = j["artifacts"]
assert len(arts) == 1, arts
a = arts[0]
names = set(a.get("members") or a.get("names") or [])
assert "tdx-attestation.json" in names and "out/result.txt" in names, names
assert "out/skip.tmp" not in names, names
EOF
[ "$(box_procs)" -eq 0 ] || fail "box processes left after job 1"
[ -z "$(ls -A "$state/leases" 2>/dev/null)" ] || fail "claims left after job 1"
echo "ok: success, masked secret split by the shell, after_script, artifacts with the bundle, released"

# 2. script failure: exit code, after_script still runs, bundle uploaded alone (no artifacts).
id=$(enqueue '{"script": ["echo failing", "exit 7"], "after_script": ["echo after-failure"]}')
run_agent "$tmp/cfg.json" || fail "agent --once exited non-zero for a failed job (it reached a final state)"
job "$id" >"$tmp/job.json"; cp "$tmp/job.json" "$tmp/job-$id.json"
python3 - "$tmp/job.json" <<'EOF' || fail "job 2 (script failure) as recorded by the server"
import base64, json, sys
j = json.load(open(sys.argv[1]))
assert j["status"] == "failed", j["status"]
u = j["final"]
assert u.get("failure_reason") == "script_failure" and u.get("exit_code") == 7, u
t = base64.b64decode(j["trace"]["b64"])
assert b"after-failure" in t and b"exit code 7" in t, t[-1500:]
names = set(j["artifacts"][0].get("members") or j["artifacts"][0].get("names") or [])
assert names == {"tdx-attestation.json"}, names
EOF
echo "ok: script failure -> failed/script_failure/exit 7, after_script ran, bundle uploaded alone"

# 3. gate refused: runner_system_failure, nothing synced into the box (it is gone too).
id=$(enqueue '{"script": ["echo should-not-run"]}')
run_agent "$tmp/strict.json" || fail "agent --once exited non-zero for a refused job"
job "$id" >"$tmp/job.json"; cp "$tmp/job.json" "$tmp/job-$id.json"
python3 - "$tmp/job.json" <<'EOF' || fail "job 3 (refused gate) as recorded by the server"
import base64, json, sys
j = json.load(open(sys.argv[1]))
assert j["status"] == "failed" and j["final"].get("failure_reason") == "runner_system_failure", j["final"]
t = base64.b64decode(j["trace"]["b64"])
assert b"should-not-run" not in t.replace(b"echo should-not-run", b"") and b"did not attest" in t, t[-1500:]
assert not j["fetches"], "the source was fetched for a box that did not attest"
EOF
[ "$(box_procs)" -eq 0 ] || fail "box processes left after a refused gate"
echo "ok: refused gate -> runner_system_failure, no source fetched or sent, box destroyed"

# 4. cancel mid-step: the remote command stops, the box is released.
id=$(enqueue '{"script": ["echo long-running; sleep 60; echo not-reached"]}')
"$bin" agent --config "$tmp/cfg.json" --once --wait 20 >"$tmp/agent.out" 2>"$tmp/agent.err" &
apid=$!
for _ in $(seq 300); do job "$id" | grep -q 'long-running\|bG9uZy1ydW5uaW5n' && break; sleep 0.1; done
curl -sf -X POST -H 'Content-Type: application/json' --data '{"status": "canceled"}' "$url/_control/job/$id/cancel" >/dev/null
for _ in $(seq 200); do kill -0 "$apid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$apid" 2>/dev/null && fail "the agent did not stop the canceled job within 20 s"
wait "$apid" || true
[ "$(box_procs)" -eq 0 ] || fail "box processes left after cancel"
[ -z "$(ls -A "$state/leases" 2>/dev/null)" ] || fail "claims left after cancel"
echo "ok: cancel mid-step stops the command and releases the box"

# 6. a flapping trace API (500s, a reset, a forced 416, a lost answer) and a final update
#    answered 202 twice then 500 once: the trace still arrives once, in order, byte for byte.
fault() { curl -sf -X POST -H 'Content-Type: application/json' --data "$1" "$url/_control/fault" >/dev/null; }
fault '{"op": "trace", "status": 500, "count": 2}'
fault '{"op": "trace", "mode": "reset", "count": 1}'
fault '{"op": "trace", "status": 416, "count": 1}'
fault '{"op": "trace", "when": "after", "mode": "close", "count": 1}'
fault '{"op": "update", "status": 500, "count": 1}'
fault '{"op": "artifacts", "status": 503, "count": 1, "retry_after": 1}'
id=$(enqueue '{"script": ["for i in $(seq 1 2000); do echo line-$i; done", "sleep 2", "for i in $(seq 2001 4000); do echo line-$i; done"], "final_202": 2}')
curl -sf -X POST -H 'Content-Type: application/json' --data '{"final_202": 2}' "$url/_control/job/$id/set" >/dev/null
run_agent "$tmp/cfg.json" || fail "agent --once failed under a flapping trace API"
job "$id" >"$tmp/job.json"
python3 - "$tmp/job.json" <<'EOF2' || fail "job 6 (flapping API) as recorded by the server"
import base64, json, sys, re
j = json.load(open(sys.argv[1]))
assert j["status"] == "success", (j["status"], j["final"], j["errors"])
assert not j["errors"], j["errors"]
t = base64.b64decode(j["trace"]["b64"]).decode()
nums = [int(m) for m in re.findall(r"^line-(\d+)$", t, re.M)]
assert nums == list(range(1, 4001)), "lines lost, duplicated or out of order: %d lines" % len(nums)
assert j["final"]["checksum"]["match"], j["final"]
assert j["artifacts"] and j["artifacts"][-1]["status"] == 201, j["artifacts"]
EOF2
curl -sf -X POST "$url/_control/faults/clear" >/dev/null
echo "ok: flapping trace API (500, reset, 416, lost answer), final 202/500, artifacts 503: trace byte-identical"

# 7. job timeout: the command is stopped, job_execution_timeout, after_script still runs.
id=$(enqueue '{"script": ["echo before-timeout; sleep 60"], "after_script": ["echo after-timeout"], "timeout": 3}')
run_agent "$tmp/cfg.json" || fail "agent --once failed for a job that timed out"
job "$id" >"$tmp/job.json"
python3 - "$tmp/job.json" <<'EOF2' || fail "job 7 (timeout) as recorded by the server"
import base64, json, sys
j = json.load(open(sys.argv[1]))
assert j["status"] == "failed" and j["final"].get("failure_reason") == "job_execution_timeout", j["final"]
t = base64.b64decode(j["trace"]["b64"])
assert b"before-timeout" in t and b"after-timeout" in t, t[-1000:]
EOF2
[ "$(box_procs)" -eq 0 ] || fail "box processes left after a timeout"
echo "ok: job timeout -> job_execution_timeout, after_script ran, released"

# 8. the agent is killed (-9) mid-job and restarted: the restart releases the box, finishes the
#    trace with a notice and reports the job failed; zero boxes left.
id=$(enqueue '{"script": ["echo before-crash; sleep 60"]}')
"$bin" agent --config "$tmp/cfg.json" --once --wait 20 >"$tmp/agent.out" 2>"$tmp/agent.err" &
apid=$!
for _ in $(seq 300); do job "$id" | python3 -c '
import base64,json,sys; j=json.load(sys.stdin); sys.exit(0 if b"before-crash" in base64.b64decode(j["trace"].get("b64","")) else 1)' && break; sleep 0.1; done
kill -9 "$apid"; wait "$apid" 2>/dev/null || true
[ "$(box_procs)" -gt 0 ] || fail "expected the killed agent's box to still run"
"$bin" agent --config "$tmp/cfg.json" --once --wait 1 >"$tmp/agent.out" 2>"$tmp/agent.err" || true
job "$id" >"$tmp/job.json"
python3 - "$tmp/job.json" <<'EOF2' || fail "job 8 (agent killed, restarted) as recorded by the server"
import base64, json, sys
j = json.load(open(sys.argv[1]))
assert j["status"] == "failed" and j["final"].get("failure_reason") == "runner_system_failure", j["final"]
t = base64.b64decode(j["trace"]["b64"])
assert b"before-crash" in t and b"agent stopped while this job was running" in t, t[-800:]
assert j["final"]["checksum"]["match"], j["final"]
EOF2
[ "$(box_procs)" -eq 0 ] || fail "box processes left after the restart"
[ -z "$(ls -A "$state/leases" 2>/dev/null)" ] || fail "claims left after the restart"
echo "ok: agent kill -9 mid-job, restart: box released, job failed on the server with the whole trace"

# 9. big: 1 GiB of output and a 200 MB artifact (streamed from disk both ways; the agent's
#    memory does not grow with either).
id=$(enqueue '{"script": ["head -c 1073741824 /dev/zero | tr \"\\0\" x | fold -w 99", "mkdir -p out && head -c 200000000 /dev/urandom >out/big.bin"],
  "artifacts": [{"paths": ["out/big.bin"]}]}')
curl -sf -X POST -H 'Content-Type: application/json' --data '{"artifact_max_bytes": 400000000, "inline_trace_max": 0}' "$url/_control/set" >/dev/null
# (under ASan, a small quarantine: freed chunks would otherwise count up to 256 MB of RSS)
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4" \
	"$bin" agent --config "$tmp/cfg.json" --once --wait 20 >"$tmp/agent.out" 2>"$tmp/agent.err" &
apid=$!
hwm=0
while kill -0 "$apid" 2>/dev/null; do
	h=$(awk '/^VmHWM:/{print $2}' "/proc/$apid/status" 2>/dev/null || echo 0)
	[ -n "$h" ] && [ "$h" -gt "$hwm" ] && hwm=$h
	sleep 0.2
done
wait "$apid" || fail "agent --once failed for the big job"
# the trace is file-backed and artifacts stream from disk: far below the 1.2 GB that went through
[ "$hwm" -lt 200000 ] || fail "the agent's peak RSS was ${hwm} kB for 1 GiB of output"
job "$id" >"$tmp/job.json"
python3 - "$tmp/job.json" <<'EOF2' || fail "job 9 (big output, big artifact) as recorded by the server"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["status"] == "success" and not j["errors"], (j["status"], j["errors"])
assert j["trace"]["size"] > 1073741824, j["trace"]["size"]
assert j["final"]["checksum"]["match"], j["final"]
a = j["artifacts"][-1]
assert a["sizes"].get("out/big.bin") == 200000000 and "tdx-attestation.json" in a["names"], a
EOF2
curl -sf -X POST -H 'Content-Type: application/json' --data '{"inline_trace_max": 1048576}' "$url/_control/set" >/dev/null
echo "ok: 1 GiB of output and a 200 MB artifact (agent peak RSS ${hwm} kB)"

# 10. SIGTERM: no new jobs, the running one is cancelled after --stop-timeout, reported, released.
id=$(enqueue '{"script": ["echo graceful; sleep 60"]}')
"$bin" agent --config "$tmp/cfg.json" --stop-timeout 1 >"$tmp/agent.out" 2>"$tmp/agent.err" &
apid=$!
for _ in $(seq 300); do job "$id" | python3 -c '
import base64,json,sys; j=json.load(sys.stdin); sys.exit(0 if b"graceful" in base64.b64decode(j["trace"].get("b64","")) else 1)' && break; sleep 0.1; done
kill -TERM "$apid"
for _ in $(seq 200); do kill -0 "$apid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$apid" 2>/dev/null && fail "the agent did not stop within 20 s of SIGTERM"
wait "$apid" || fail "the agent exited non-zero after SIGTERM"
job "$id" | python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["status"] == "failed" and j["final"]["failure_reason"] == "runner_system_failure", j["final"]' ||
	fail "the job cancelled by SIGTERM is not failed on the server"
[ "$(box_procs)" -eq 0 ] || fail "box processes left after SIGTERM"
echo "ok: SIGTERM cancels the running job after --stop-timeout, reports it, releases"

# 5. a bad runner token is a clear error, not a retry loop.
printf '{"state_dir": "%s", "gitlab": [{"url": "%s", "token": "glrt-wrong"}]}' "$state" "$url" >"$tmp/bad.json"
chmod 600 "$tmp/bad.json"
"$bin" agent --config "$tmp/bad.json" --once --wait 5 >"$tmp/agent.out" 2>"$tmp/agent.err" && fail "a refused token exited 0"
grep -q "runner token was refused" "$tmp/agent.err" || fail "no clear message for a refused token"
echo "ok: refused runner token stops with a clear error"
echo PASS
