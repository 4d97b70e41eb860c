#!/usr/bin/env bash
# test_github_phala.sh - `tdx-runner agent --once` with executor.kind "phala" serving GitHub
# Actions: github_server.py (the REST contract, the stand-in runner's /_runner/ side and the
# pinned stand-in runner tarball, tests/integration/fake_runner/ - NOT actions/runner) and
# phala_server.py --boxes (every CVM a real local box: sshd in a mount namespace, stunnel4
# behind the SNI router, the guest agent with the simulator PKI whose collateral
# pcs_server.py serves; the set-up is cvm_env.sh, shared with cvm_e2e.sh and
# test_gitlab_phala.sh). Cases: success (the job ran on our JIT runner inside the phala box,
# commit status on its sha, $TDX_ATTESTATION_FILE there); a declared output bound into the
# end quote (the release asset verifies offline with --subject); a refused gate (wrong app
# id, tampered event log: no generate-jitconfig, zero bytes into the box by its inotify
# record, the CVM deleted); a runner that never picks up a job (runner deleted, CVM deleted);
# agent kill -9 mid-job, restart (no CVM, no box process, no runner registration once GitHub
# lets the runner go); Phala API 500s during the lease (retried, success); a failing release
# job whose bundle is attached after a failed upload left a starter asset; a runner that took
# ANOTHER queued job than its own (claim_order lifo: the status goes on the job it ran, bound
# by runner_name); a secondary rate limit (retry-after honoured); GitHub App auth (check run,
# not status, every request on the installation token or the JWT); organisation scope with
# webhook demand (forged signature 401, replay 409, no runs listed before the JIT config, the
# job runs) and /healthz + /metrics. After every case, without `reap`: zero live CVMs, box
# processes, claims and runner records, and `registered == []` on the GitHub server. The
# server's `errors` (contract violations, ignored rate limits) must stay empty. SKIPs exactly
# when cvm_env.sh does.
# shellcheck disable=SC2016 # the job steps are expanded by bash in the box, not here
set -euo pipefail
E=phala
bin=${TDXR_BIN:?TDXR_BIN not set}
src=${TDXR_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
here=$src/tests/integration
SECONDS=0

fail() {
	echo "FAIL: $*"
	[ -f "${tmp:-/nonexistent}/agent.err" ] && sed 's/^/  agent: /' "$tmp/agent.err" | tail -30
	[ -f "${tmp:-/nonexistent}/gh.err" ] && sed 's/^/  github: /' "$tmp/gh.err" | tail -10
	[ -f "${tmp:-/nonexistent}/srv.log" ] && sed 's/^/  phala: /' "$tmp/srv.log" | tail -15
	exit 1
}

apid=
gh_pid=
cvm_cleanup_hook() {
	[ -n "$apid" ] && kill -9 "$apid" 2>/dev/null
	exec 8>&- # the GitHub server sees EOF on stdin and exits
	[ -n "$gh_pid" ] && { sleep 0.2; kill "$gh_pid" 2>/dev/null; }
	return 0
}
CVM_TMP_TAG=ghphala
# the checks (SKIP), the Phala server with its boxes, $cfg, the helpers: cvm_env.sh
# shellcheck source=tests/integration/cvm_env.sh
. "$here/cvm_env.sh"

# ---- the GitHub server -------------------------------------------------------------------
token=ghp_phalaTestToken0123456789abcdefAB
repo=octo-org/octo-repo
mkfifo "$tmp/gh.in"
# an App key too (case 10): the token entry still gets a commit status, the App entry a check run
openssl genrsa -out "$tmp/app.pem" 2048 2>/dev/null && chmod 600 "$tmp/app.pem"
openssl rsa -in "$tmp/app.pem" -pubout -out "$tmp/app.pub.pem" 2>/dev/null
"$PY" "$here/github_server.py" --token "$token" --repo "$repo" --state-dir "$tmp/gh" --watch-stdin \
	--app-key-pub "$tmp/app.pub.pem" --app-id 4711 --installation-id 4242 \
	<"$tmp/gh.in" >"$tmp/gh.out" 2>"$tmp/gh.err" &
gh_pid=$!
exec 8>"$tmp/gh.in"
for _ in $(seq 100); do grep -q '^PORT ' "$tmp/gh.out" 2>/dev/null && break; sleep 0.05; done
grep -q '^PORT ' "$tmp/gh.out" || fail "github_server.py did not start"
url=http://127.0.0.1:$(awk '/^PORT /{print $2}' "$tmp/gh.out")

# gh METHOD PATH [JSON]: the GitHub server's control API (prints the answer)
gh() {
	"$PY" -c 'import sys, urllib.request
m, u, d = sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None
r = urllib.request.Request(u, data=d.encode() if d is not None else None, method=m,
                           headers={"Content-Type": "application/json"})
sys.stdout.write(urllib.request.urlopen(r, timeout=30).read().decode())' "$1" "$url$2" ${3+"$3"}
}
# enqueue SPEC: prints "JOB_ID HEAD_SHA"
enqueue() { gh POST /_control/enqueue "$1" | "$PY" -c 'import json, sys; d = json.load(sys.stdin); print(d["jobs"][0]["id"], d["head_sha"])'; }
jit_count() { gh GET /_control/state | "$PY" -c 'import json, sys; print(sum(1 for r in json.load(sys.stdin)["requests"] if r["op"] == "jitconfig"))'; }
cancel_job() { gh POST "/_control/job/$1/cancel" '{}' >/dev/null; }

# the CVM config of cvm_env.sh plus the GitHub entry (0600: it holds the token)
sha=$(gh GET /_control/state | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["runner_tarball"]["sha256"])')
"$PY" - "$cfg" "$url" "$token" "$repo" "$sha" <<'EOF'
import json, os, sys
p, url, tok, repo, sha = sys.argv[1:6]
c = json.load(open(p))
c["github"] = [{"api_url": url, "uploads_url": url, "repository": repo, "token": tok,
                "labels": ["self-hosted", "tdx"],
                "runner": {"tarball_url": url + "/_dl/actions-runner.tar.gz", "sha256": sha}}]
fd = os.open(p + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as f:
    json.dump(c, f, indent=1)
os.replace(p + ".new", p)
EOF

# variant OUT PYTHON: a copy of $cfg (0600) after PYTHON ran on it as c (g = its GitHub entry)
variant() {
	"$PY" - "$cfg" "$1" "$2" <<'EOF'
import json, os, sys
src, out, code = sys.argv[1:4]
c = json.load(open(src)); g = c["github"][0]
exec(code)
fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as f:
    json.dump(c, f, indent=1)
EOF
}
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# check JOB WHAT: runs the python assertions on stdin with st = the server's state, j = the
# job's view (with its log), log = the job's log, cvms = the Phala server's CVMs
check() {
	gh GET /_control/state >"$tmp/state.json"
	gh GET "/_control/job/$1" >"$tmp/job.json"
	q 's["cvms"]' >"$tmp/cvms.txt"
	"$PY" -c 'import ast, json, sys
st = json.load(open(sys.argv[1])); j = json.load(open(sys.argv[2])); log = j.get("log") or ""
cvms = ast.literal_eval(open(sys.argv[3]).read())
exec(sys.stdin.read())' "$tmp/state.json" "$tmp/job.json" "$tmp/cvms.txt" ||
		fail "$2: as recorded by the GitHub server (job log tail: $("$PY" -c 'import json, sys; print((json.load(open(sys.argv[1])).get("log") or "")[-1200:])' "$tmp/job.json"))"
}
agent_once() { "$bin" agent --config "$cfg" --once --wait 20 >"$tmp/agent.out" 2>"$tmp/agent.err"; }
# clean WHAT: what the agent itself left (no reap): no CVM, box process or claim (leftovers),
# no runner record of ours, no runner registered on the GitHub server
clean() {
	leftovers "$1: left by the agent"
	local r
	for r in "$state"/github/*; do
		[ -e "$r" ] && fail "$1: a runner record is left: $r"
	done
	gh GET /_control/runners | "$PY" -c 'import json, sys; r = json.load(sys.stdin); assert r["registered"] == [], r["registered"]' ||
		fail "$1: stale runner registrations on the GitHub server"
}
# new_cvm BEFORE: the one CVM created since the ids BEFORE
new_cvm() {
	local id n=0 out=
	for id in $(cvm_ids); do
		case " $1 " in *" $id "*) continue ;; esac
		n=$((n + 1))
		out=$id
	done
	[ "$n" -eq 1 ] || fail "expected one new CVM, got $n"
	echo "$out"
}

# ---- 1. success: the job runs on our JIT runner inside the phala box ---------------------
before=$(cvm_ids)
read -r job sha1 <<<"$(enqueue '{"labels": ["self-hosted", "tdx"], "steps": [
  "echo hello-from-the-phala-box",
  "echo \"cwd=$PWD\"; echo \"box=${TDXR_BOX:-none}\"",
  "test -s \"$TDX_ATTESTATION_FILE\"",
  "python3 -c \"import json, os; b = json.load(open(os.environ[\\\"TDX_ATTESTATION_FILE\\\"])); print(\\\"bundle-executor=\\\" + b[\\\"meta\\\"][\\\"executor\\\"])\"",
  "test -z \"${ACTIONS_RUNNER_INPUT_JITCONFIG:-}\""]}')"
agent_once || fail "success: agent --once exited non-zero"
cid=$(new_cvm "$before")
check "$job" "success" <<EOF
assert j["status"] == "completed" and j["conclusion"] == "success", (j["status"], j["conclusion"])
rn = j["runner_name"] or ""
assert rn.startswith("tdxr-l-"), rn
assert "hello-from-the-phala-box" in log, "the job's output is not in its log"
assert "cwd=$work_root/.tdx-runner/runner\n" in log, "the runner did not run in $work_root/.tdx-runner/runner (the box's /var/volatile)"
assert "box=$boxes/b/p$cid/" in log, "the job did not run in the session of CVM $cid's box"
assert "bundle-executor=phala" in log, "\$TDX_ATTESTATION_FILE is not the phala lease's bundle"
st_ = [s for s in st["statuses"] if s["sha"] == "$sha1" and s["context"] == "tdx-attestation"]
assert st_ and st_[-1]["state"] == "success", (st["statuses"], st["check_runs"])
assert [r for r in st["runners"] if r["name"] == rn and r["deleted"]], "the runner is not retired"
assert not st["errors"], st["errors"]
EOF
grep -q 'hello-from-the-phala-box' "$tmp/agent.err" || fail "success: the runner's output did not reach the agent's log"
read -r ent wr <<<"$(work_of "$cid")"
[ "$wr" -gt 0 ] || fail "success: the box recorded no writes ($ent entries, $wr writes): the recorder is blind"
clean "success"
echo "ok: success on phala: the job ran on its JIT runner inside CVM $cid's box, \$TDX_ATTESTATION_FILE there, commit status on its sha, CVM deleted"

# ---- 2. provenance: a declared output bound into the end quote -------------------------
gh POST /_control/release '{"tag": "v1.0"}' >/dev/null
before=$(cvm_ids)
read -r job _ <<<"$(enqueue '{"event": "release", "head_branch": "v1.0", "labels": ["self-hosted", "tdx"], "steps": [
  "mkdir -p dist && printf \"release-artifact-phala\\n\" > dist/app.txt",
  "echo \"$PWD/dist/app.txt\" >> \"$TDX_RUNNER_SUBJECTS_FILE\""]}')"
agent_once || fail "provenance: agent --once exited non-zero"
cid=$(new_cvm "$before")
check "$job" "provenance" <<EOF
assert j["status"] == "completed" and j["conclusion"] == "success", (j["status"], j["conclusion"])
a = [a for a in st["assets"] if a["name"] == "tdx-attestation-%s.json" % "$job" and a.get("state") == "uploaded"]
assert a, [(x["name"], x.get("state")) for x in st["assets"]]
b = json.load(open(a[0]["path"]))
assert b["meta"]["executor"] == "phala", b["meta"]
assert cvms["$cid"]["app_id"] in json.dumps(b), "the bundle does not name CVM $cid's app id"
open(sys.argv[1] + ".asset", "w").write(a[0]["path"])
EOF
asset=$(cat "$tmp/state.json.asset")
printf 'release-artifact-phala\n' >"$tmp/app.txt"
"$bin" verify "$asset" --allow-simulated --subject "$tmp/app.txt" >"$tmp/verify.out" 2>&1 ||
	{ cat "$tmp/verify.out"; fail "provenance: the release asset does not verify with --subject"; }
printf 'release-artifact-phalA\n' >"$tmp/app.txt"
"$bin" verify "$asset" --allow-simulated --subject "$tmp/app.txt" --json >"$tmp/verify.out" 2>&1 &&
	fail "provenance: a changed output verified"
grep -q '"subject"' "$tmp/verify.out" || { cat "$tmp/verify.out"; fail "provenance: the refusal does not name the subject step"; }
grep -q 'bound into the end quote' "$tmp/agent.err" || fail "provenance: no end quote in the agent log"
clean "provenance"
echo "ok: a declared output is bound into the phala box's end quote; the release asset verifies offline with --subject, a changed file does not"

# ---- 3. refused gate: no JIT config, zero bytes into the box, the CVM deleted -----------
for f in wrong-app-id:identity tamper-eventlog:rtmr_replay; do
	before=$(cvm_ids)
	jit0=$(jit_count)
	box_fault "${f%%:*}"
	read -r job _ <<<"$(enqueue '{"labels": ["self-hosted", "tdx"], "steps": ["echo should-not-run"]}')"
	agent_once && { box_fault none; fail "${f%%:*}: agent --once exited 0 for a box that did not attest"; }
	box_fault none
	check "$job" "${f%%:*}" <<EOF
assert j["status"] == "queued", j["status"]
jit = sum(1 for r in st["requests"] if r["op"] == "jitconfig")
assert jit == $jit0, ("a JIT config was generated for a box that did not attest", jit - $jit0)
assert not [r for r in st["runners"] if not r["deleted"]], "a runner is registered"
EOF
	grep -q "${f##*:}" "$tmp/agent.err" || fail "${f%%:*}: the refusal does not name the step ${f##*:}"
	grep -q 'should-not-run' "$tmp/agent.err" && fail "${f%%:*}: the job ran"
	zero_bytes "${f%%:*}" "$before"
	cancel_job "$job"
	clean "${f%%:*}"
	echo "ok: ${f%%:*} -> refused at ${f##*:}: no generate-jitconfig, zero bytes reached the box, CVM deleted"
done

# ---- 4. a runner that never picks up a job: runner deleted, CVM deleted -----------------
before=$(cvm_ids)
read -r job _ <<<"$(enqueue '{"labels": ["self-hosted", "tdx"], "steps": ["echo held"], "hold": true}')"
TDXR_GITHUB_PICKUP_TIMEOUT_S=3 agent_once || fail "pick-up timeout: agent --once exited non-zero"
cid=$(new_cvm "$before")
gh GET /_control/runners | "$PY" -c '
import json, sys; r = json.load(sys.stdin); d = [x for x in r["runners"] if x["deleted"]]
assert d and d[-1]["deleted"]["by"] == "api" and not d[-1]["job_id"], d[-1:]' ||
	fail "pick-up timeout: the idle runner was not deleted by the agent"
grep -q 'never picked up a job' "$tmp/agent.err" || fail "pick-up timeout: no log line for the idle runner"
grep -q 'Listening for Jobs' "$tmp/agent.err" || fail "pick-up timeout: the runner never started in the box"
clean "pick-up timeout"
cancel_job "$job"
echo "ok: a runner that never picked up a job is deleted from GitHub, CVM $cid deleted"

# ---- 5. agent kill -9 mid-job, then restart ------------------------------------------------
read -r job _ <<<"$(enqueue '{"labels": ["self-hosted", "tdx"], "steps": ["echo before-crash", "sleep 60"]}')"
"$bin" agent --config "$cfg" --once --wait 20 >"$tmp/agent.out" 2>"$tmp/agent.err" &
apid=$!
for _ in $(seq 300); do grep -q before-crash "$tmp/agent.err" && break; sleep 0.1; done
grep -q before-crash "$tmp/agent.err" || fail "kill -9: the job never started"
kill -9 "$apid"
wait "$apid" 2>/dev/null || true
apid=
mv "$tmp/agent.err" "$tmp/agent-killed.err"
[ "$(live_cvms)" -eq 1 ] || fail "kill -9: expected the dead agent's CVM to outlive it ($(live_cvms) live)"
[ "$(box_procs)" -gt 0 ] || fail "kill -9: expected the dead agent's box to still run"
# GitHub refuses to delete a runner it counts as busy (422) until it declares it lost: the
# restarted agent reaps the CVM at start-up and retries the delete while it polls
gh POST /_control/set '{"runner_lost_timeout": 2}' >/dev/null
"$bin" agent --config "$cfg" --once --wait 30 >"$tmp/agent.out" 2>"$tmp/agent.err" &
apid=$!
for _ in $(seq 300); do grep -q 'runner .* of a dead agent deleted' "$tmp/agent.err" && break; sleep 0.1; done
kill -TERM "$apid" 2>/dev/null || true
wait "$apid" 2>/dev/null || true
apid=
grep -q 'runner .* of a dead agent deleted' "$tmp/agent.err" || fail "kill -9: the restart did not delete the dead agent's runner"
gh POST /_control/set '{"runner_lost_timeout": 30}' >/dev/null
check "$job" "kill -9, restart" <<'EOF'
assert j["status"] == "completed" and j["conclusion"] == "failure", (j["status"], j["conclusion"])
assert j["finished_by"] == "lost", j["finished_by"]
EOF
clean "kill -9, restart"
echo "ok: agent kill -9 mid-job, restart: CVM deleted by the start-up reap, the dead agent's runner deleted once GitHub let it go"

# ---- 6. Phala API 500s during the lease: retried, the job succeeds -----------------------
p0=$(calls provision)
s0=$(calls state)
fault "op=provision&status=500&count=2"
fault "op=state&status=500&count=2"
read -r job _ <<<"$(enqueue '{"labels": ["self-hosted", "tdx"], "steps": ["echo through-the-faults"]}')"
agent_once || fail "api faults: agent --once exited non-zero"
clear_faults
check "$job" "api faults" <<'EOF'
assert j["status"] == "completed" and j["conclusion"] == "success", (j["status"], j["conclusion"])
assert "through-the-faults" in log
EOF
[ "$(calls provision)" -eq $((p0 + 3)) ] || fail "api faults: provision not retried twice ($p0 -> $(calls provision))"
[ "$(calls state)" -ge $((s0 + 3)) ] || fail "api faults: state not retried"
clean "api faults"
echo "ok: Phala API 500s on provision and state during the lease are retried; the job succeeds"

# ---- 7. a failing release job; the asset upload fails once, leaving a starter asset -------
gh POST /_control/release '{"tag": "v2.0"}' >/dev/null
gh POST /_control/fault '{"op": "asset_upload", "status": 502, "count": 1, "leave_starter": true}' >/dev/null
before=$(cvm_ids)
read -r job sha7 <<<"$(enqueue '{"event": "release", "head_branch": "v2.0", "labels": ["self-hosted", "tdx"], "steps": [
  "echo failing-in-the-phala-box", "exit 3", "echo not-reached"]}')"
agent_once || fail "failing release job: agent --once exited non-zero"
gh POST /_control/faults/clear '{}' >/dev/null
cid=$(new_cvm "$before")
check "$job" "failing release job" <<EOF
assert j["status"] == "completed" and j["conclusion"] == "failure", (j["status"], j["conclusion"])
assert "failing-in-the-phala-box" in log and "not-reached" not in log, log[-600:]
name = "tdx-attestation-%s.json" % "$job"
up = [a for a in st["assets"] if a["name"] == name and a.get("state") == "uploaded"]
assert len(up) == 1, [(a["name"], a.get("state")) for a in st["assets"]]
assert [r for r in st["requests"] if r["op"] == "asset_upload" and r["fault"] == 502], "the failed upload never happened"
assert not [a for a in st["assets"] if a["name"] == name and a.get("state") == "starter"], "the starter asset is left"
b = json.load(open(up[0]["path"]))
assert b["verdict"]["ok"] and b["meta"]["executor"] == "phala", (b["verdict"], b["meta"])
assert cvms["$cid"]["app_id"] in json.dumps(b), "the bundle does not name CVM $cid's app id"
st_ = [s for s in st["statuses"] if s["sha"] == "$sha7" and s["context"] == "tdx-attestation"]
assert st_ and st_[-1]["state"] == "success", "the attestation status follows the box, not the job: %r" % st_
EOF
clean "failing release job"
echo "ok: a failing release job on phala: conclusion failure, the bundle attached after a failed upload left a starter asset"

# ---- 8. the runner takes ANOTHER queued job than its own (lifo): bound by runner_name ------
gh POST /_control/set '{"claim_order": "lifo"}' >/dev/null
read -r jobA shaA <<<"$(enqueue '{"labels": ["self-hosted", "tdx"], "steps": ["echo job-A"]}')"
read -r jobB shaB <<<"$(enqueue '{"labels": ["self-hosted", "tdx"], "steps": ["echo job-B"]}')"
agent_once || fail "binding: agent --once exited non-zero"
gh POST /_control/set '{"claim_order": "fifo"}' >/dev/null
check "$jobB" "binding" <<EOF
assert j["status"] == "completed" and j["conclusion"] == "success", (j["status"], j["conclusion"])
assert st["jobs"]["$jobA"]["status"] == "queued", st["jobs"]["$jobA"]["status"]
rn = j["runner_name"]
ours = [r for r in st["runners"] if r["name"] == rn]
assert ours and ours[-1]["deleted"], "job B did not run on a runner of ours that is now retired"
shas = [s["sha"] for s in st["statuses"] if s["context"] == "tdx-attestation"]
assert "$shaB" in shas, ("the status is not on the job that ran", shas)
assert "$shaA" not in shas, ("a status on a job that did not run here", shas)
EOF
grep -q 'job-B' "$tmp/agent.err" || fail "binding: job B's output is not in the agent log"
clean "binding"
# the other job is ours too: run it, so nothing stays queued
agent_once || fail "binding: agent --once exited non-zero for the first job"
check "$jobA" "binding, the first job" <<EOF
assert j["status"] == "completed" and j["conclusion"] == "success", (j["status"], j["conclusion"])
assert "$shaA" in [s["sha"] for s in st["statuses"] if s["context"] == "tdx-attestation"]
EOF
clean "binding, the first job"
echo "ok: a phala runner that took another queued job than its own is bound to the job it ran (status on that sha only)"

# ---- 9. rate limiting (secondary, retry-after) on the runs listing is honoured -----------
gh POST /_control/fault '{"op": "runs", "rate_limit": "secondary", "retry_after": 1, "count": 1}' >/dev/null
read -r job _ <<<"$(enqueue '{"labels": ["self-hosted", "tdx"], "steps": ["echo after-rate-limit"]}')"
agent_once || fail "rate limit: agent --once exited non-zero"
gh POST /_control/faults/clear '{}' >/dev/null
check "$job" "rate limit" <<'EOF'
assert j["status"] == "completed" and j["conclusion"] == "success", (j["status"], j["conclusion"])
assert "after-rate-limit" in log
assert [r for r in st["requests"] if r["op"] == "runs" and r["fault"] == "secondary"], "the rate limit never fired"
assert not [e for e in st["errors"] if "rate" in e.get("code", "")], st["errors"]
EOF
clean "rate limit"
echo "ok: a secondary rate limit (retry-after) is honoured; the job runs on phala"

# ---- 10. GitHub App auth (RS256 JWT -> installation token): a check run, not a status ------
variant "$tmp/app.json" "del g['token']; g['app'] = {'id': 4711, 'installation_id': 4242, 'private_key_file': '$tmp/app.pem'}"
read -r job sha10 <<<"$(enqueue '{"labels": ["self-hosted", "tdx"], "steps": ["echo as-an-app"]}')"
r0=$(gh GET /_control/state | "$PY" -c 'import json, sys; print(max(r["seq"] for r in json.load(sys.stdin)["requests"]))')
"$bin" agent --config "$tmp/app.json" --once --wait 20 >"$tmp/agent.out" 2>"$tmp/agent.err" ||
	fail "App auth: agent --once exited non-zero"
check "$job" "App auth" <<EOF
assert j["status"] == "completed" and j["conclusion"] == "success", (j["status"], j["conclusion"])
assert "as-an-app" in log
cr = [c for c in st["check_runs"] if c["head_sha"] == "$sha10" and c["name"] == "tdx-attestation"]
assert cr and cr[-1]["conclusion"] == "success" and "attested" in cr[-1]["output"]["title"], st["check_runs"]
assert not [s for s in st["statuses"] if s["sha"] == "$sha10"], "a commit status as well as the check run"
assert st["tokens"]["installation_issued"] >= 1, st["tokens"]
assert not [r for r in st["requests"] if r["seq"] > $r0 and r["op"] and r["auth"] not in ("installation", "jwt")], "a request without App auth"
assert not st["errors"], st["errors"]
EOF
clean "App auth"
echo "ok: GitHub App auth on phala: installation token from an RS256 JWT, check run tdx-attestation on the commit, no status"

# ---- 11. organisation scope, webhook demand; /metrics and /healthz --------------------------
# demand only from signed workflow_job deliveries: a forged signature is refused (401) and
# leases nothing, a replayed delivery is refused (409), the job runs in a phala box
wport=$(free_port)
mport=$(free_port)
variant "$tmp/org.json" "del g['repository']; g['organization'] = 'octo-org'; g['webhook'] = {'listen': '127.0.0.1:$wport', 'secret': 'whsec-0123456789'}; c['metrics'] = {'listen': '127.0.0.1:$mport'}"
gh POST /_control/set "{\"webhook_url\": \"http://127.0.0.1:$wport/github/webhook\", \"webhook_secret\": \"whsec-0123456789\"}" >/dev/null
before=$(cvm_ids)
r0=$(gh GET /_control/state | "$PY" -c 'import json, sys; print(max(r["seq"] for r in json.load(sys.stdin)["requests"]))')
"$bin" agent --config "$tmp/org.json" --once --wait 30 >"$tmp/agent.out" 2>"$tmp/agent.err" &
apid=$!
mget() { "$PY" -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "http://127.0.0.1:$mport$1" 2>/dev/null; }
for _ in $(seq 100); do mget /healthz >/dev/null && break; sleep 0.1; done
mget /healthz | grep -q '"status":"ok"' || fail "org webhook: /healthz does not answer ok"
ndeliv() { gh GET /_control/deliveries | "$PY" -c 'import json, sys; print(len(json.load(sys.stdin)))'; }
d0=$(ndeliv)
read -r job _ <<<"$(enqueue '{"labels": ["self-hosted", "tdx"], "steps": ["echo via-webhook"], "hold": true}')"
# the signed queued delivery went out at enqueue; a forged one and a replay follow
gh POST /_control/webhook "{\"job_id\": $job, \"action\": \"queued\", \"signature\": \"bad\"}" >/dev/null
first=$(gh GET "/_control/deliveries?min=$((d0 + 2))&timeout=10" | "$PY" -c "import json, sys; print(json.load(sys.stdin)[$d0]['id'])")
gh POST "/_control/deliveries/$first/redeliver" '{}' >/dev/null
gh GET "/_control/deliveries?min=$((d0 + 3))&timeout=10" >"$tmp/deliv.json" || fail "org webhook: the deliveries did not complete"
mget /metrics >"$tmp/metrics.txt" || fail "org webhook: /metrics does not answer"
grep -q '^tdxr_webhook_deliveries_total{result="queued"} 1' "$tmp/metrics.txt" ||
	{ cat "$tmp/metrics.txt"; fail "org webhook: /metrics lacks the queued delivery"; }
gh POST "/_control/job/$job/set" '{"hold": false}' >/dev/null
wait "$apid" || { apid=; fail "org webhook: agent --once exited non-zero"; }
apid=
"$PY" - "$tmp/deliv.json" "$d0" <<'EOF' || fail "org webhook: the deliveries as recorded by the GitHub server"
import json, sys
d = json.load(open(sys.argv[1]))[int(sys.argv[2]):int(sys.argv[2]) + 3]
codes = [(x["signature"], x["redelivery"], x["status_code"]) for x in d]
assert codes[0][2] in (200, 202), codes
assert codes[1][0] == "bad" and codes[1][2] == 401, codes
assert codes[2][1] and codes[2][2] == 409, codes
EOF
cid=$(new_cvm "$before")
check "$job" "org webhook" <<EOF
assert j["status"] == "completed" and j["conclusion"] == "success", (j["status"], j["conclusion"])
assert "via-webhook" in log
# the demand came from the delivery: up to the JIT config, no runs were listed (later the
# agent lists them to find the job its runner took: the runner_name binding)
ops = [(r["op"], r["path"]) for r in st["requests"] if r["seq"] > $r0 and r["op"]]
n = [o for o, _ in ops].index("jitconfig")
assert ops[n][1] == "/orgs/octo-org/actions/runners/generate-jitconfig", ops[n]
assert not [o for o in ops[:n] if o[0] in ("runs", "run", "jobs")], ("polled for demand", ops[:n])
assert not st["errors"], st["errors"]
EOF
grep -q 'via-webhook' "$tmp/agent.err" || fail "org webhook: the job's output is not in the agent log"
clean "org webhook"
echo "ok: organisation scope on phala, webhook demand: forged signature 401, replay 409, the job ran in CVM $cid's box; /healthz ok, /metrics counts the delivery"

echo "PASS (github on phala, ${SECONDS} s)"
