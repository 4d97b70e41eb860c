#!/usr/bin/env bash
# test_github_agent.sh - `tdx-runner agent --once` serving GitHub Actions against the GitHub
# contract server (tests/integration/github_server.py) on the local executor, with the
# stand-in runner (tests/integration/fake_runner/, a STAND-IN for actions/runner) delivered
# as a pinned tarball behind a redirect. Checks what the server recorded: the job ran on our
# JIT runner, the check run on the right commit (also when the runner took another job than
# the one it was made for), the release asset (also after a failed upload left a starter),
# no JIT config for a box that did not attest, a runner that never picked up a job is
# deleted, kill -9 + restart leaves no box and no runner registration; zero stale
# registrations and zero box processes after every case.
set -euo pipefail
bin=${TDXR_BIN:?TDXR_BIN not set}
src=${TDXR_SOURCE_DIR:?TDXR_SOURCE_DIR not set}
for t in /usr/sbin/sshd rsync ssh-keygen python3 curl tar; do
	command -v "$t" >/dev/null 2>&1 || [ -x "$t" ] || { echo "SKIP: $t is not installed"; exit 0; }
done
tmp=$(mktemp -d /tmp/tdxr-gh-XXXXXX)
state=$tmp/s
srv_pid=
cleanup() {
	"$bin" reap --all --config "$tmp/cfg.json" >/dev/null 2>&1 || true
	[ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$tmp/agent.err" ] && tail -n 40 "$tmp/agent.err"; exit 1; }
box_procs() { grep -ls "$state/boxe[s]/" /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null | wc -l; }

token=ghp_testToken0123456789abcdefABCDEF
repo=octo-org/octo-repo
openssl genrsa -out "$tmp/app.pem" 2048 2>/dev/null && chmod 600 "$tmp/app.pem"
openssl rsa -in "$tmp/app.pem" -pubout -out "$tmp/app.pub.pem" 2>/dev/null
python3 "$src/tests/integration/github_server.py" --token "$token" --repo "$repo" --state-dir "$tmp/srv" \
	--app-key-pub "$tmp/app.pub.pem" --app-id 4711 --installation-id 4242  >"$tmp/srv.out" 2>"$tmp/srv.err" </dev/null &
srv_pid=$!
for _ in $(seq 100); do grep -q '^PORT ' "$tmp/srv.out" 2>/dev/null && break; sleep 0.05; done
port=$(awk '/^PORT /{print $2}' "$tmp/srv.out")
[ -n "$port" ] || { cat "$tmp/srv.err"; fail "github_server did not start"; }
url=http://127.0.0.1:$port
sha=$(curl -sf "$url/_control/state" | python3 -c 'import json,sys; print(json.load(sys.stdin)["runner_tarball"]["sha256"])')

mkcfg() { # file policy-extra
	umask 077
	printf '{"state_dir": "%s", "executor": {"kind": "local"}%s, "github": [{"api_url": "%s", "uploads_url": "%s", "repository": "%s", "token": "%s", "labels": ["self-hosted", "tdx"], "runner": {"tarball_url": "%s/_dl/actions-runner.tar.gz", "sha256": "%s"}}]}' \
		"$state" "$2" "$url" "$url" "$repo" "$token" "$url" "$sha" >"$1"
	umask 022
}
mkcfg "$tmp/cfg.json" ""
umask 077
printf '{"state_dir": "%s", "executor": {"kind": "local"}, "github": [{"api_url": "%s", "uploads_url": "%s", "repository": "%s", "app": {"id": 4711, "installation_id": 4242, "private_key_file": "%s"}, "runner": {"tarball_url": "%s/_dl/actions-runner.tar.gz", "sha256": "%s"}}]}' \
	"$state" "$url" "$url" "$repo" "$tmp/app.pem" "$url" "$sha" >"$tmp/app.json"
umask 022
mkcfg "$tmp/strict.json" ', "policy": {"allow_simulated": false}'

ctl() { curl -sf -X POST -H 'Content-Type: application/json' --data "$2" "$url/_control/$1"; }
enqueue() { ctl enqueue "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["jobs"][0]["id"], d["head_sha"], d["run_id"])'; }
gstate() { curl -sf "$url/_control/state"; }
run_agent() { "$bin" agent --config "$1" --once --wait 20 >"$tmp/agent.out" 2>"$tmp/agent.err"; }
clean() { # after every case: zero registrations, zero boxes, zero claims
	curl -sf "$url/_control/runners" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["registered"] == [], r["registered"]' ||
		fail "$1: stale runner registrations"
	[ "$(box_procs)" -eq 0 ] || fail "$1: box processes left"
	[ -z "$(ls -A "$state/leases" 2>/dev/null)" ] || fail "$1: lease claims left"
}

# 1. success: the job runs on our JIT runner in the box; check run on its commit.
read -r job sha1 run <<<"$(enqueue '{"labels": ["self-hosted", "tdx"], "steps": ["echo hello-from-the-box", "test -f \"$TDX_ATTESTATION_FILE\"", "test -z \"${ACTIONS_RUNNER_INPUT_JITCONFIG:-}\""]}')"
run_agent "$tmp/cfg.json" || fail "agent --once failed for a successful job"
gstate >"$tmp/state.json"
python3 - "$tmp/state.json" "$job" "$sha1" <<'EOF' || fail "case 1 (success) as recorded by the server"
import json, sys
st = json.load(open(sys.argv[1])); job = sys.argv[2]; sha = sys.argv[3]
j = st["jobs"][job]
assert j["status"] == "completed" and j["conclusion"] == "success", (j["status"], j["conclusion"])
assert (j["runner_name"] or "").startswith("tdxr-l-"), j["runner_name"]
# a token cannot create check runs: the agent falls back to a commit status
cr = [c for c in st["statuses"] if c["sha"] == sha and c["context"] == "tdx-attestation"]
assert cr and cr[-1]["state"] == "success", (st["statuses"], st["check_runs"])
assert not st["errors"], st["errors"]
EOF
grep -q 'hello-from-the-box' "$tmp/agent.err" || fail "the runner's output did not reach the agent's log"
clean "case 1"
echo "ok: a job runs on its own JIT runner in an attested box; check run on its commit; nothing left"

# 2. the runner takes ANOTHER queued job than the one it was created for: bound by runner_name.
ctl set '{"claim_order": "lifo"}' >/dev/null
read -r jobA shaA runA <<<"$(enqueue '{"labels": ["self-hosted", "tdx"], "steps": ["echo job-A"]}')"
read -r jobB shaB runB <<<"$(enqueue '{"labels": ["self-hosted", "tdx"], "steps": ["echo job-B"]}')"
run_agent "$tmp/cfg.json" || fail "agent --once failed (binding case)"
gstate >"$tmp/state.json"
python3 - "$tmp/state.json" "$jobB" "$shaB" "$shaA" <<'EOF' || fail "case 2 (binding) as recorded by the server"
import json, sys
st = json.load(open(sys.argv[1])); jb, shab, shaa = sys.argv[2], sys.argv[3], sys.argv[4]
assert st["jobs"][jb]["status"] == "completed", st["jobs"][jb]["status"]
shas = [c["sha"] for c in st["statuses"] if c["context"] == "tdx-attestation"]
assert shab in shas, ("the check run is not on the job that ran", shas)
assert shaa not in shas, ("a check run on a job that did not run here", shas)
EOF
ctl set '{"claim_order": "fifo"}' >/dev/null
# the other job is still queued: run it too (it is ours), so nothing is left queued
run_agent "$tmp/cfg.json" || fail "agent --once failed for the second job"
clean "case 2"
echo "ok: a runner that ran another job than its own is bound to the job it ran"

# 3. a failing job and a release: the bundle is attached as a release asset, even after a
#    failed upload left a starter asset behind.
ctl release '{"tag": "v1.0"}' >/dev/null
ctl fault '{"op": "asset_upload", "status": 502, "count": 1, "leave_starter": true}' >/dev/null
read -r job sha3 run <<<"$(enqueue '{"event": "release", "head_branch": "v1.0", "labels": ["self-hosted", "tdx"], "steps": ["echo building-release"], "conclusion": "failure"}')"
run_agent "$tmp/cfg.json" || fail "agent --once failed for a release job"
gstate >"$tmp/state.json"
python3 - "$tmp/state.json" "$job" <<'EOF' || fail "case 3 (release asset) as recorded by the server"
import json, sys
st = json.load(open(sys.argv[1])); job = sys.argv[2]
assert st["jobs"][job]["conclusion"] == "failure", st["jobs"][job]["conclusion"]
names = [(a["name"], a.get("state")) for a in st["assets"]]
assert ("tdx-attestation-%s.json" % job, "uploaded") in names, names
a = [a for a in st["assets"] if a["name"] == "tdx-attestation-%s.json" % job][0]
b = json.load(open(a["path"]))
assert b["verdict"]["ok"] and b["meta"]["executor"] == "local", b["verdict"]
EOF
ctl faults/clear '{}' >/dev/null
clean "case 3"
echo "ok: failing release job: bundle attached to the release (a starter asset from a failed upload was replaced)"

# 3b. provenance: the job declares an output in $TDX_RUNNER_SUBJECTS_FILE; the release asset's
#     bundle carries the end quote binding it, and verifies offline with --subject.
ctl release '{"tag": "v2.0"}' >/dev/null
read -r job sha3b run <<<"$(enqueue '{"event": "release", "head_branch": "v2.0", "labels": ["self-hosted", "tdx"], "steps": ["mkdir -p dist && printf \"release-artifact-v2\\n\" > dist/app.txt", "echo \"$PWD/dist/app.txt\" >> \"$TDX_RUNNER_SUBJECTS_FILE\""]}')"
run_agent "$tmp/cfg.json" || fail "agent --once failed for the provenance job"
asset=$(gstate | python3 -c "import json,sys; st=json.load(sys.stdin); print([a['path'] for a in st['assets'] if a['name'] == 'tdx-attestation-$job.json' and a.get('state') == 'uploaded'][0])") ||
	fail "no release asset for the provenance job"
printf 'release-artifact-v2\n' >"$tmp/app.txt"
"$bin" verify "$asset" --allow-simulated --subject "$tmp/app.txt" >"$tmp/verify.out" 2>&1 || { cat "$tmp/verify.out"; fail "the release bundle does not verify with --subject"; }
printf 'release-artifact-v3\n' >"$tmp/app.txt"
"$bin" verify "$asset" --allow-simulated --subject "$tmp/app.txt" --json >"$tmp/verify.out" 2>&1 && fail "a changed output verified"
grep -q '"subject"' "$tmp/verify.out" || { cat "$tmp/verify.out"; fail "the refusal does not name the subject step"; }
grep -q 'bound into the end quote' "$tmp/agent.err" || fail "no end quote in the agent log"
clean "case 3b"
echo "ok: a declared output is bound into an end quote; the release bundle verifies offline with --subject, a changed file does not"

# 4. gate failure: no JIT config is ever generated, the box is destroyed.
jit_before=$(gstate | python3 -c 'import json,sys; print(len([r for r in json.load(sys.stdin)["requests"] if r["op"] == "jitconfig"]))')
read -r job sha4 run <<<"$(enqueue '{"labels": ["self-hosted", "tdx"], "steps": ["echo should-not-run"]}')"
"$bin" agent --config "$tmp/strict.json" --once --wait 20 >"$tmp/agent.out" 2>"$tmp/agent.err" || true
gstate >"$tmp/state.json"
python3 - "$tmp/state.json" "$job" "$jit_before" <<'EOF' || fail "case 4 (refused gate) as recorded by the server"
import json, sys
st = json.load(open(sys.argv[1])); job = sys.argv[2]; before = int(sys.argv[3])
jit = [r for r in st["requests"] if r["op"] == "jitconfig"]
assert st["jobs"][job]["status"] == "queued", st["jobs"][job]["status"]
assert len(jit) == before, ("a JIT config was generated for a box that did not attest", len(jit) - before)
EOF
grep -q 'allow_simulated' "$tmp/agent.err" || fail "the refusal does not name the policy"
clean "case 4"
echo "ok: a box that does not attest gets no JIT config and is destroyed"
# that job stays queued: let it run now so it does not linger
run_agent "$tmp/cfg.json" || fail "agent --once failed for the job after the refusal"
clean "case 4b"

# 5. a runner that never picks up a job is deleted and its box released.
read -r job sha5 run <<<"$(enqueue '{"labels": ["self-hosted", "tdx"], "steps": ["echo held"], "hold": true}')"
TDXR_GITHUB_PICKUP_TIMEOUT_S=3 run_agent "$tmp/cfg.json" || fail "agent --once failed when no job was picked up"
curl -sf "$url/_control/runners" | python3 -c '
import json,sys; r=json.load(sys.stdin); d=[x for x in r["runners"] if x["deleted"]]
assert d and d[-1]["deleted"]["by"] == "api" and not d[-1]["job_id"], d[-1:]' || fail "the idle runner was not deleted by the agent"
grep -q 'never picked up a job' "$tmp/agent.err" || fail "no log line for the idle runner"
clean "case 5"
ctl job/"$job"/cancel '{}' >/dev/null
echo "ok: a runner that never picked up a job is deleted, its box released"

# 6. kill -9 mid-job, restart: no box and no runner registration left.
read -r job sha6 run <<<"$(enqueue '{"labels": ["self-hosted", "tdx"], "steps": ["echo before-crash", "sleep 60"]}')"
"$bin" agent --config "$tmp/cfg.json" --once --wait 20 >"$tmp/agent.out" 2>"$tmp/agent.err" &
apid=$!
for _ in $(seq 300); do grep -q before-crash "$tmp/agent.err" && break; sleep 0.1; done
grep -q before-crash "$tmp/agent.err" || fail "the job never started (kill -9 case)"
kill -9 "$apid"; wait "$apid" 2>/dev/null || true
# GitHub refuses to delete a runner it still counts as busy (422) until it declares it lost:
# the restarted agent keeps trying while it polls.
ctl set '{"runner_lost_timeout": 3}' >/dev/null
"$bin" agent --config "$tmp/cfg.json" --once --wait 15 >"$tmp/agent.out" 2>"$tmp/agent.err" || true
grep -q 'runner .* of a dead agent deleted' "$tmp/agent.err" || fail "the restart did not delete the dead agent's runner"
clean "case 6"
echo "ok: agent kill -9 mid-job, restart: no box, no runner registration left"

# 7. rate limiting on the runs listing is honoured (reset / retry-after), then the job runs.
ctl fault '{"op": "runs", "rate_limit": "secondary", "retry_after": 1, "count": 1}' >/dev/null
read -r job sha7 run <<<"$(enqueue '{"labels": ["self-hosted", "tdx"], "steps": ["echo after-rate-limit"]}')"
run_agent "$tmp/cfg.json" || fail "agent --once failed under rate limiting"
gstate | python3 -c "
import json,sys; st=json.load(sys.stdin); j=st['jobs']['$job']
assert j['status'] == 'completed', j['status']
assert not [e for e in st['errors'] if 'rate' in e.get('code','')], st['errors']" || fail "case 7 (rate limit)"
clean "case 7"
echo "ok: rate limiting honoured"

# 9. GitHub App auth (RS256 JWT -> installation token): a check run, not a status.
read -r job sha9 run <<<"$(enqueue '{"labels": ["self-hosted", "tdx"], "steps": ["echo as-an-app"]}')"
run_agent "$tmp/app.json" || fail "agent --once failed with App auth"
gstate | python3 -c "
import json,sys; st=json.load(sys.stdin)
assert st['jobs']['$job']['status'] == 'completed', st['jobs']['$job']['status']
cr = [c for c in st['check_runs'] if c['head_sha'] == '$sha9' and c['name'] == 'tdx-attestation']
assert cr and cr[-1]['conclusion'] == 'success' and 'attested' in cr[-1]['output']['title'], st['check_runs']
assert st['tokens']['installation_issued'] >= 1, st['tokens']
assert not st['errors'], st['errors']" || fail "case 9 (App auth, check run)"
clean "case 9"
echo "ok: GitHub App auth: installation token from an RS256 JWT, check run tdx-attestation on the commit"

# 10. organisation scope: demand only from signed workflow_job webhooks (no polling); a bad
#     signature is refused (401) and leases nothing; a replayed delivery is refused (409);
#     /metrics and /healthz answer on the metrics address.
wport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
umask 077
printf '{"state_dir": "%s", "executor": {"kind": "local"}, "metrics": {"listen": "127.0.0.1:%s"}, "github": [{"api_url": "%s", "uploads_url": "%s", "organization": "octo-org", "token": "%s", "runner": {"tarball_url": "%s/_dl/actions-runner.tar.gz", "sha256": "%s"}, "webhook": {"listen": "127.0.0.1:%s", "secret": "whsec-0123456789"}}]}' \
	"$state" "$mport" "$url" "$url" "$token" "$url" "$sha" "$wport" >"$tmp/org.json"
umask 022
ctl set "{\"webhook_url\": \"http://127.0.0.1:$wport/github/webhook\", \"webhook_secret\": \"whsec-0123456789\"}" >/dev/null
"$bin" agent --config "$tmp/org.json" --once --wait 30 >"$tmp/agent.out" 2>"$tmp/agent.err" &
apid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$mport/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$mport/healthz" | grep -q '"status":"ok"' || fail "/healthz does not answer ok"
ndeliv() { curl -s "$url/_control/deliveries" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
base=$(ndeliv)
read -r job sha10 run <<<"$(enqueue '{"labels": ["self-hosted", "tdx"], "steps": ["echo via-webhook"], "hold": true}')"
# the queued delivery (signed correctly) went out at enqueue; a forged one and a replay follow
ctl webhook "{\"job_id\": $job, \"action\": \"queued\", \"signature\": \"bad\"}" >/dev/null
first=$(curl -sf "$url/_control/deliveries?min=$((base + 2))&timeout=10" | python3 -c "import json,sys; d=json.load(sys.stdin); print(d[$base]['id'])")
ctl "deliveries/$first/redeliver" '{}' >/dev/null
curl -sf "$url/_control/deliveries?min=$((base + 3))&timeout=10" >"$tmp/deliv.json" || fail "webhook deliveries did not complete"
curl -sf "http://127.0.0.1:$mport/metrics" >"$tmp/metrics.txt" || fail "/metrics does not answer"
grep -q '^tdxr_webhook_deliveries_total{result="queued"} 1' "$tmp/metrics.txt" || { cat "$tmp/metrics.txt"; fail "/metrics lacks the queued delivery"; }
curl -sf -X POST -H 'Content-Type: application/json' --data '{"hold": false}' "$url/_control/job/$job/set" >/dev/null
wait "$apid" || fail "agent --once (webhook demand) exited non-zero"
python3 - "$tmp/deliv.json" "$base" <<'EOF2' || fail "case 10 (webhook deliveries)"
import json, sys
d = json.load(open(sys.argv[1]))[int(sys.argv[2]):int(sys.argv[2]) + 3]
codes = [(x["signature"], x["redelivery"], x["status_code"]) for x in d]
assert codes[0][2] in (200, 202), codes
assert codes[1][0] == "bad" and codes[1][2] == 401, codes
assert codes[2][1] and codes[2][2] == 409, codes
EOF2
gstate | python3 -c "import json,sys; st=json.load(sys.stdin); assert st['jobs']['$job']['status'] == 'completed', st['jobs']['$job']['status']" ||
	fail "case 10: the webhook-queued job did not run"
grep -q 'via-webhook' "$tmp/agent.err" || fail "case 10: the job's output is not in the agent log"
clean "case 10"
echo "ok: organisation scope, webhook demand: forged signature 401, replay 409, job ran; /healthz ok"

# 11. publish by hand: `tdx-runner publish --github-release OWNER/REPO@TAG BUNDLE` re-verifies the
#     bundle, then attaches it with the entry's credentials; a tampered bundle is not published.
ctl release '{"tag": "v3.0"}' >/dev/null
"$bin" simulate --out "$tmp/sim.json" >/dev/null 2>&1 || fail "simulate failed"
"$bin" publish --config "$tmp/cfg.json" --github-release "$repo@v3.0" "$tmp/sim.json" 2>"$tmp/pub.err" &&
	fail "publish accepted a simulated bundle without --allow-simulated"
grep -q 'does not verify' "$tmp/pub.err" || { cat "$tmp/pub.err"; fail "publish refusal unclear"; }
"$bin" publish --config "$tmp/cfg.json" --github-release "$repo@v3.0" --allow-simulated "$tmp/sim.json" >"$tmp/pub.out" 2>&1 ||
	{ cat "$tmp/pub.out"; fail "publish failed"; }
python3 - "$tmp/sim.json" "$tmp/sim-bad.json" <<'EOF2'
import json, sys
b = json.load(open(sys.argv[1])); q = b["quote"]
b["quote"] = q[:200] + ("0" if q[200] != "0" else "1") + q[201:]
json.dump(b, open(sys.argv[2], "w"))
EOF2
"$bin" publish --config "$tmp/cfg.json" --github-release "$repo@v3.0" --allow-simulated --name bad.json "$tmp/sim-bad.json" 2>/dev/null &&
	fail "publish uploaded a tampered bundle"
gstate | python3 -c "
import json,sys; st=json.load(sys.stdin); names=[a['name'] for a in st['assets'] if a.get('state') == 'uploaded']
assert 'sim.json' in names and 'bad.json' not in names, names" || fail "case 11 (publish)"
echo "ok: publish --github-release attaches a verified bundle, refuses a tampered one"

# 8. jobs whose labels are not all ours are left alone.
read -r job sha8 run <<<"$(enqueue '{"labels": ["self-hosted", "gpu"], "steps": ["echo not-ours"]}')"
"$bin" agent --config "$tmp/cfg.json" --once --wait 3 >"$tmp/agent.out" 2>"$tmp/agent.err" && fail "took a job with a label we do not serve"
gstate | python3 -c "import json,sys; st=json.load(sys.stdin); assert st['jobs']['$job']['status'] == 'queued'" || fail "case 8"
clean "case 8"
echo "ok: a job with a label we do not serve is left alone"
echo PASS
