#!/usr/bin/env bash
# test_github_server.sh - self-test of tests/integration/github_server.py (the GitHub REST
# stand-in the agent's GitHub client is tested against) and of the stand-in runner
# tests/integration/fake_runner/run.sh, driven with curl the way a runner manager drives GitHub:
# headers and auth (User-Agent 403, no/bad token 401, static token, App JWT good/bad signature/
# expired/too long/wrong iss -> installation token, expired installation token), queued runs and
# jobs shaped like the shared samples, ETag/If-None-Match 304 not counted against the rate limit,
# generate-jitconfig validation (422/409/404, org scope), the runner tarball (302, SHA-256), the
# fake runner taking a DIFFERENT job than the one its runner was made for, GITHUB_* env and
# GITHUB_ENV, a failing job (exit 0), the runner delete rules (204/404/422 while busy), cancel,
# idle timeout (124), deleted registration (1), root refusal, check-run validation, release asset
# upload + duplicate 422 + a 502 that leaves a 'starter' asset, webhook signatures checked with an
# independent HMAC and the docs' test vector, a replayed delivery keeping its GUID, primary and
# secondary rate limits (and a client that ignores them recorded). Everything is checked through
# /_control/state. Trust: 127.0.0.1 only; one temp dir removed at exit.
# Prints "SKIP: reason" when python3 or curl is missing (App-JWT checks are skipped without
# python3-cryptography). Env: TDXR_SHARED_TESTDATA; TDXR_GHS_KEEP=1 keeps the temp dir.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=${TDXR_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
testdata=${TDXR_SHARED_TESTDATA:-$src/../shared/testdata}
gh=$testdata/ci/github

skip() {
	echo "SKIP: $*"
	exit 0
}

command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
command -v curl >/dev/null 2>&1 || skip "curl is not installed"
# resolve python3 once: a version-manager shim (pyenv) costs ~150 ms per call
PYBIN=$(python3 -c 'import os,sys; print(os.path.dirname(sys.executable))' 2>/dev/null)
[[ -n $PYBIN && -x $PYBIN/python3 ]] && export PATH="$PYBIN:$PATH"
have_crypto=1
python3 -c 'import cryptography' 2>/dev/null || have_crypto=0

T=$(mktemp -d /tmp/tdxr-ghsrv.XXXXXX)
srv_pid=
hook_pid=
bg_pid=
fails=0
cleanup() {
	for p in $bg_pid $srv_pid $hook_pid; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	if [[ -n ${TDXR_GHS_KEEP:-} ]]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

ok() { echo "ok: $*"; }
fail() {
	echo "FAIL: $*"
	fails=$((fails + 1))
}
check() { # check "what" 'shell expression'
	if eval "$2"; then ok "$1"; else fail "$1"; fi
}
# js FILE EXPR: evaluate a python expression over the JSON document d in FILE
js() { python3 -c 'import json,os,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

# ---- helpers: App key + JWT maker, webhook receiver ------------------------------
cat >"$T/jwt.py" <<'EOF'
# jwt.py KEY ISS IAT_OFFSET EXP_OFFSET [tamper|hs256]: an App JWT, RS256 unless told
import base64, json, sys, time
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
def b(x): return base64.urlsafe_b64encode(x).rstrip(b"=").decode()
key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
now = int(time.time())
alg = "HS256" if sys.argv[5:] == ["hs256"] else "RS256"
h = b(json.dumps({"alg": alg, "typ": "JWT"}).encode())
p = b(json.dumps({"iss": int(sys.argv[2]), "iat": now + int(sys.argv[3]), "exp": now + int(sys.argv[4])}).encode())
sig = key.sign((h + "." + p).encode(), padding.PKCS1v15(), hashes.SHA256())
if sys.argv[5:] == ["tamper"]:
    sig = bytes([sig[0] ^ 1]) + sig[1:]
print(h + "." + p + "." + b(sig))
EOF
cat >"$T/hook.py" <<'EOF'
# hook.py OUT: a webhook receiver; each POST -> one JSON line {headers, body_b64}; answers 200
import base64, json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with open(sys.argv[1], "a") as f:
            f.write(json.dumps({"headers": dict(self.headers), "body_b64": base64.b64encode(body).decode()}) + "\n")
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
s = HTTPServer(("127.0.0.1", 0), H)
print("PORT %d" % s.server_address[1], flush=True)
s.serve_forever()
EOF
# verify OUT SECRET: every received delivery -> "guid action job_id signature_ok" lines
cat >"$T/verify.py" <<'EOF'
import base64, hashlib, hmac, json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    body = base64.b64decode(d["body_b64"])
    h = {k.lower(): v for k, v in d["headers"].items()}
    want = "sha256=" + hmac.new(sys.argv[2].encode(), body, hashlib.sha256).hexdigest()
    got = h.get("x-hub-signature-256", "")
    p = json.loads(body)
    print(h["x-github-delivery"], p["action"], p["workflow_job"]["id"],
          "good" if hmac.compare_digest(want, got) else "bad", h.get("x-github-event"))
EOF

python3 "$T/hook.py" "$T/hooks.jsonl" >"$T/hook.port" 2>"$T/hook.err" &
hook_pid=$!

app_args=()
if ((have_crypto)); then
	python3 -c '
import sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)
def pem(k):
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
k, o = key(), key()
open(sys.argv[1], "wb").write(pem(k))
open(sys.argv[2], "wb").write(k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
open(sys.argv[3], "wb").write(pem(o))' "$T/app.pem" "$T/app.pub.pem" "$T/other.pem" || skip "could not make an RSA key"
	app_args=(--app-key-pub "$T/app.pub.pem" --app-id 1234 --installation-id 4242)
else
	echo "note: python3-cryptography missing: App JWT checks skipped"
fi

for _ in $(seq 1 100); do
	[[ -s $T/hook.port ]] && break
	sleep 0.05
done
hook_port=$(awk '/^PORT /{print $2; exit}' "$T/hook.port")
[[ -n $hook_port ]] || {
	echo "FAIL: webhook receiver did not start"
	exit 1
}

# ---- server --------------------------------------------------------------------------
HOOK_SECRET="It's a Secret to Everybody"
python3 "$here/github_server.py" --token ghp_static --token ghp_second --repo octo-org/octo-repo "${app_args[@]}" \
	--state-dir "$T/state" --webhook-url "http://127.0.0.1:$hook_port/hook" --webhook-secret "$HOOK_SECRET" \
	--runner-lost-timeout 5 >"$T/port" 2>"$T/server.err" &
srv_pid=$!
for _ in $(seq 1 100); do
	[[ -s $T/port ]] && break
	sleep 0.05
done
port=$(awk '/^PORT /{print $2; exit}' "$T/port")
[[ -n $port ]] || {
	cat "$T/server.err"
	echo "FAIL: server did not start"
	exit 1
}
U=http://127.0.0.1:$port
R=/repos/octo-org/octo-repo
TOK=ghp_static

# req METHOD PATH [curl args...]: GitHub headers with $TOK; body -> $T/b, headers -> $T/h; prints status
# (empty TOK: no Authorization; APIV overrides the API version; UA overrides the User-Agent)
req() {
	local m=$1 p=$2
	shift 2
	rm -f "$T/b"
	curl -s -o "$T/b" -D "$T/h" -w '%{http_code}' -X "$m" -H "User-Agent: ${UA-tdxr-test}" \
		-H 'Accept: application/vnd.github+json' -H "X-GitHub-Api-Version: ${APIV:-2022-11-28}" \
		${TOK:+-H "Authorization: Bearer $TOK"} "$@" "$U$p"
}
jreq() { req "$1" "$2" -H 'Content-Type: application/json' -d "$3"; }
hdr() { grep -i "^$1:" "$T/h" | head -1 | cut -d: -f2- | tr -d '\r' | sed 's/^ //'; }
ctl() { # ctl METHOD PATH [JSON] -> $T/c, prints status
	curl -s -o "$T/c" -w '%{http_code}' -X "$1" ${3:+-d "$3"} "$U/_control$2"
}
state() { curl -s -o "$T/s" "$U/_control/state"; }
errcodes() { state && js "$T/s" '" ".join(sorted(set(e["code"] for e in d["errors"])))'; }
ctl POST /reset >/dev/null

# ---- headers and static-token auth ------------------------------------------------------
check "no User-Agent: 403, recorded" '[[ $(UA= req GET $R/actions/runs) == 403 && $(errcodes) == user_agent_missing ]]'
ctl POST /reset >/dev/null
check "no Authorization: 401 Requires authentication" \
	'[[ $(TOK= req GET $R/actions/runs) == 401 && $(js "$T/b" "d[\"message\"]") == "Requires authentication" ]]'
check "wrong token: 401 Bad credentials" '[[ $(TOK=ghp_wrong req GET $R/actions/runs) == 401 && $(js "$T/b" "d[\"message\"]") == "Bad credentials" ]]'
check "unsupported X-GitHub-Api-Version: 400" '[[ $(APIV=2099-01-01 req GET $R/actions/runs) == 400 ]]'
check "static token: 200 with x-ratelimit-* headers" \
	'[[ $(req GET $R/actions/runs) == 200 && $(hdr x-ratelimit-limit) == 5000 && -n $(hdr x-ratelimit-remaining) && -n $(hdr x-ratelimit-reset) && $(hdr x-ratelimit-resource) == core ]]'
check "unknown repository: 404" '[[ $(req GET /repos/nobody/nothing/actions/runs) == 404 ]]'
check "header and auth violations recorded" '[[ $(errcodes) == "api_version auth_missing bad_token" ]]'
ctl POST /reset >/dev/null

# ---- GitHub App: JWT -> installation token ---------------------------------------------
if ((have_crypto)); then
	jwt() { python3 "$T/jwt.py" "${K:-$T/app.pem}" "${ISS:-1234}" "$@"; }
	check "JWT (iat-60, exp+540): 201 installation token with expires_at" \
		'[[ $(TOK=$(jwt -60 540) req POST /app/installations/4242/access_tokens) == 201 && $(js "$T/b" "d[\"token\"][:4]") == ghs_ && -n $(js "$T/b" "d[\"expires_at\"]") ]]'
	ITOK=$(js "$T/b" 'd["token"]')
	check "installation token lists jobs" '[[ $(TOK=$ITOK req GET $R/actions/runs) == 200 ]]'
	check "JWT for another installation: 404" '[[ $(TOK=$(jwt -60 540) req POST /app/installations/999/access_tokens) == 404 ]]'
	check "JWT signed by another key: 401" '[[ $(TOK=$(K=$T/other.pem jwt -60 540) req POST /app/installations/4242/access_tokens) == 401 ]]'
	check "JWT with a flipped signature byte: 401" '[[ $(TOK=$(jwt -60 540 tamper) req POST /app/installations/4242/access_tokens) == 401 ]]'
	check "expired JWT: 401" '[[ $(TOK=$(jwt -700 -120) req POST /app/installations/4242/access_tokens) == 401 ]]'
	check "JWT living 11 minutes (exp - iat > 600): 401 too far in the future" \
		'[[ $(TOK=$(jwt -60 600) req POST /app/installations/4242/access_tokens) == 401 && $(js "$T/b" "\"too far\" in d[\"message\"]") == True ]]'
	check "JWT issued in the future (beyond skew): 401" '[[ $(TOK=$(jwt 120 500) req POST /app/installations/4242/access_tokens) == 401 ]]'
	check "JWT with the wrong iss: 401" '[[ $(TOK=$(ISS=999 jwt -60 540) req POST /app/installations/4242/access_tokens) == 401 ]]'
	check "JWT on a repository endpoint: 401" '[[ $(TOK=$(jwt -60 540) req GET $R/actions/runs) == 401 ]]'
	check "static token on the access_tokens endpoint: 401" '[[ $(req POST /app/installations/4242/access_tokens) == 401 ]]'
	check "JWT finds the repository's installation" '[[ $(TOK=$(jwt -60 540) req GET $R/installation) == 200 && $(js "$T/b" "d[\"id\"]") == 4242 ]]'
	ctl POST /tokens/expire >/dev/null
	check "expired installation token: 401 Bad credentials" '[[ $(TOK=$ITOK req GET $R/actions/runs) == 401 ]]'
	check "JWT errors recorded by kind" \
		'[[ $(errcodes) == "jwt_expected jwt_expired jwt_iat jwt_iss jwt_lifetime jwt_on_api jwt_signature token_expired unknown_installation" ]]'
	TOK=$(jwt -60 540) req POST /app/installations/4242/access_tokens >/dev/null
	ITOK=$(js "$T/b" 'd["token"]')
	ctl POST /reset >/dev/null
else
	ITOK=
fi

# ---- queued runs and jobs, ETag ---------------------------------------------------------------
SHA=f83a356604ae3c5d03e1b46ef4d1ca77d64a90b0
ctl POST /enqueue '{"head_sha":"'$SHA'","jobs":[
 {"name":"A","labels":["self-hosted","tdx"],"steps":[{"name":"write","run":"echo \"A $GITHUB_SHA\" > out-A.txt"}]},
 {"name":"B","labels":["self-hosted","TDX"],"env":{"JOBVAR":"jv"},"steps":[
   {"name":"set env","run":"echo FOO=from-env-file >> \"$GITHUB_ENV\""},
   {"name":"write","run":"printf \"%s\\n\" \"$GITHUB_SHA\" \"$GITHUB_REPOSITORY\" \"$GITHUB_RUN_ID\" \"$GITHUB_JOB\" \"$FOO\" \"$JOBVAR\" \"${ACTIONS_RUNNER_INPUT_JITCONFIG:-none}\" > out-B.txt; echo step-output-B"}]}]}' >/dev/null
RUN=$(js "$T/c" 'd["run_id"]')
JA=$(js "$T/c" 'd["jobs"][0]["id"]')
JB=$(js "$T/c" 'd["jobs"][1]["id"]')
check "ids above 2^32 (job ids are today)" '(( JA > 4294967296 ))'
check "runs?status=queued lists the run" \
	'[[ $(req GET "$R/actions/runs?status=queued") == 200 && $(js "$T/b" "[r[\"id\"] for r in d[\"workflow_runs\"]] == [$RUN] and d[\"total_count\"] == 1") == True ]]'
check "runs?status=completed does not" '[[ $(req GET "$R/actions/runs?status=completed") == 200 && $(js "$T/b" "d[\"total_count\"]") == 0 ]]'
check "jobs of the run: queued, labels, no runner" \
	'[[ $(req GET "$R/actions/runs/$RUN/jobs") == 200 && $(js "$T/b" "[(j[\"status\"], j[\"labels\"], j[\"runner_name\"]) for j in d[\"jobs\"]]") == "[('"'"'queued'"'"', ['"'"'self-hosted'"'"', '"'"'tdx'"'"'], None), ('"'"'queued'"'"', ['"'"'self-hosted'"'"', '"'"'TDX'"'"'], None)]" ]]'
cp "$T/b" "$T/jobs.json"
if [[ -d $gh ]]; then
	check "job keys are a superset of the shared sample's (2022-11-28)" \
		'[[ $(python3 -c "import json,sys; s=json.load(open(sys.argv[1]))[\"jobs\"][0]; o=json.load(open(sys.argv[2]))[\"jobs\"][0]; print(sorted(set(s)-set(o)))" "$gh/rest_list_jobs_for_run.api-2022-11-28.json" "$T/jobs.json") == "[]" ]]'
	check "top-level keys match the sample" \
		'[[ $(python3 -c "import json,sys; print(sorted(json.load(open(sys.argv[1]))) == sorted(json.load(open(sys.argv[2]))))" "$gh/rest_list_jobs_for_run.api-2022-11-28.json" "$T/jobs.json") == True ]]'
	check "webhook workflow_job keys are a superset of the octokit sample's" \
		'[[ $(python3 -c "import json,sys; s=json.load(open(sys.argv[1]))[\"workflow_job\"]; o=json.load(open(sys.argv[2]))[\"jobs\"][0]; print(sorted(set(s)-set(o)))" "$gh/webhook_workflow_job.queued.octokit.json" "$T/jobs.json") == "[]" ]]'
else
	echo "SKIP: sample shape checks ($gh absent)"
fi
check "single job by id" '[[ $(req GET "$R/actions/jobs/$JA") == 200 && $(js "$T/b" "d[\"id\"]") == "$JA" ]]'
req GET "$R/actions/jobs/$JA" >/dev/null
etag=$(hdr ETag)
rem=$(hdr x-ratelimit-remaining)
check "If-None-Match with the ETag: 304, empty body, not counted" \
	'[[ $(req GET "$R/actions/jobs/$JA" -H "If-None-Match: $etag") == 304 && ! -s $T/b && $(hdr x-ratelimit-remaining) == "$rem" ]]'
check "a stale ETag: 200" '[[ $(req GET "$R/actions/jobs/$JA" -H "If-None-Match: W/\"0000\"") == 200 ]]'
check "pagination: per_page=1 gives a Link rel=next" '[[ $(req GET "$R/actions/runs/$RUN/jobs?per_page=1") == 200 && $(hdr Link) == *rel=\"next\"* ]]'

# ---- generate-jitconfig ---------------------------------------------------------------------
gen() { jreq POST "$1/actions/runners/generate-jitconfig" "$2"; }
check "generate-jitconfig: 201 runner + encoded_jit_config" \
	'[[ $(gen $R "{\"name\":\"tdxr-a\",\"runner_group_id\":1,\"labels\":[\"self-hosted\",\"tdx\"],\"work_folder\":\"_work\"}") == 201 && $(js "$T/b" "(d[\"runner\"][\"name\"], d[\"runner\"][\"status\"], d[\"runner\"][\"busy\"])") == "('"'"'tdxr-a'"'"', '"'"'offline'"'"', False)" ]]'
cp "$T/b" "$T/jit-a.json"
JIT_A=$(js "$T/jit-a.json" 'd["encoded_jit_config"]')
RID_A=$(js "$T/jit-a.json" 'd["runner"]["id"]')
check "encoded_jit_config decodes like GitHub's (.runner/.credentials/.credentials_rsaparams)" \
	'[[ $(python3 -c "import base64,json,sys; o=json.loads(base64.b64decode(sys.argv[1])); r=json.loads(base64.b64decode(o[\".runner\"])); print(sorted(o), r[\"AgentName\"])" "$JIT_A") == "['"'"'.credentials'"'"', '"'"'.credentials_rsaparams'"'"', '"'"'.runner'"'"'] tdxr-a" ]]'
[[ -d $gh ]] && check "runner keys are a superset of the docs sample's" \
	'[[ $(python3 -c "import json,sys; s=json.load(open(sys.argv[1]))[\"runner\"]; o=json.load(open(sys.argv[2]))[\"runner\"]; print(sorted(set(s)-set(o)))" "$gh/rest_generate_jitconfig_201.docs.json" "$T/jit-a.json") == "[]" ]]'
check "same name again: 409" '[[ $(gen $R "{\"name\":\"tdxr-a\",\"runner_group_id\":1,\"labels\":[\"tdx\"]}") == 409 ]]'
check "missing runner_group_id: 422" '[[ $(gen $R "{\"name\":\"tdxr-x\",\"labels\":[\"tdx\"]}") == 422 ]]'
check "empty labels: 422" '[[ $(gen $R "{\"name\":\"tdxr-x\",\"runner_group_id\":1,\"labels\":[]}") == 422 ]]'
check "unknown runner group (org scope): 404" '[[ $(gen /orgs/octo-org "{\"name\":\"tdxr-x\",\"runner_group_id\":7,\"labels\":[\"tdx\"]}") == 404 ]]'
ctl POST /runner_group '{"org":"octo-org","id":7,"name":"tdx"}' >/dev/null
check "a runner group added by control: 201, group name in the JIT config" \
	'[[ $(gen /orgs/octo-org "{\"name\":\"tdxr-g7\",\"runner_group_id\":7,\"labels\":[\"nomatch\"]}") == 201 && $(python3 -c "import base64,json,sys; o=json.loads(base64.b64decode(sys.argv[1])); print(json.loads(base64.b64decode(o[\".runner\"]))[\"PoolName\"])" "$(js "$T/b" "d[\"encoded_jit_config\"]")") == tdx ]]'
req DELETE "/orgs/octo-org/actions/runners/$(js "$T/b" 'd["runner"]["id"]')" >/dev/null
check "org-scope generate-jitconfig: 201" '[[ $(gen /orgs/octo-org "{\"name\":\"tdxr-org\",\"runner_group_id\":1,\"labels\":[\"self-hosted\",\"tdx\"]}") == 201 ]]'
JIT_ORG=$(js "$T/b" 'd["encoded_jit_config"]')
check "runners list (repo scope) shows tdxr-a" '[[ $(req GET "$R/actions/runners") == 200 && $(js "$T/b" "[r[\"name\"] for r in d[\"runners\"]]") == "['"'"'tdxr-a'"'"']" ]]'
check "jitconfig violations recorded" '[[ $(errcodes) == "jitconfig_group jitconfig_invalid runner_name_conflict" ]]'
ctl POST /reset >/dev/null

# ---- the runner tarball: redirect + SHA-256 ------------------------------------------------------
state
tsha=$(js "$T/s" 'd["runner_tarball"]["sha256"]')
check "tarball URL answers 302 elsewhere" \
	'[[ $(curl -s -o /dev/null -w "%{http_code} %{redirect_url}" "$U/_dl/actions-runner.tar.gz") == "302 $U/_dl/blob/$tsha/"* ]]'
curl -sfL -o "$T/runner.tgz" "$U/_dl/actions-runner.tar.gz"
check "followed redirect gives the tarball with the SHA-256 in state" '[[ $(sha256sum "$T/runner.tgz" | cut -d" " -f1) == "$tsha" ]]'
check "sending the token to the storage host: 400, recorded" \
	'[[ $(curl -s -o /dev/null -w "%{http_code}" -L --location-trusted -H "Authorization: Bearer x" "$U/_dl/actions-runner.tar.gz") == 400 && $(errcodes) == auth_forwarded_to_storage ]]'
ctl POST /set '{"tarball_corrupt":true}' >/dev/null
check "tarball_corrupt: the download no longer matches" '[[ $(curl -sL "$U/_dl/actions-runner.tar.gz" | sha256sum | cut -d" " -f1) != "$tsha" ]]'
ctl POST /set '{"tarball_corrupt":false}' >/dev/null
mkdir -p "$T/runner" "$T/ws"
tar -xzf "$T/runner.tgz" -C "$T/runner"
check "tarball holds run.sh (executable) and the helper" '[[ -x $T/runner/run.sh && -f $T/runner/fake_runner.py ]]'
ctl POST /reset >/dev/null
RUN_SH=$T/runner/run.sh
export RUNNER_ALLOW_RUNASROOT=1

# ---- the stand-in runner takes any matching job -------------------------------------------------------
ctl POST /set '{"claim_order":"lifo"}' >/dev/null
(cd "$T/ws" && ACTIONS_RUNNER_INPUT_JITCONFIG=$JIT_A TDXR_FAKE_RUNNER_IDLE_TIMEOUT=5 "$RUN_SH" >"$T/run-a.out" 2>&1)
rc=$?
check "runner tdxr-a (made for job A) exits 0" '[[ $rc == 0 ]]'
check "it printed Running job: B (lifo order: a different job)" 'grep -q "Running job: B$" "$T/run-a.out"'
check "it printed the step output" 'grep -q "^step-output-B$" "$T/run-a.out"'
check "the step ran in the current directory with GITHUB_* env, GITHUB_ENV, job env, no ACTIONS_RUNNER_INPUT_*" \
	'[[ $(tr "\n" " " <"$T/ws/out-B.txt") == "$SHA octo-org/octo-repo $RUN B from-env-file jv none " ]]'
check "job B: completed success, runner_name tdxr-a" \
	'[[ $(req GET "$R/actions/jobs/$JB") == 200 && $(js "$T/b" "(d[\"status\"], d[\"conclusion\"], d[\"runner_name\"], d[\"runner_id\"])") == "('"'"'completed'"'"', '"'"'success'"'"', '"'"'tdxr-a'"'"', $RID_A)" ]]'
check "job B steps: Set up job, 2 steps, Complete job, all success" \
	'[[ $(js "$T/b" "[(s[\"number\"], s[\"conclusion\"]) for s in d[\"steps\"]]") == "[(1, '"'"'success'"'"'), (2, '"'"'success'"'"'), (3, '"'"'success'"'"'), (4, '"'"'success'"'"')]" ]]'
check "job A still queued" '[[ $(req GET "$R/actions/jobs/$JA") == 200 && $(js "$T/b" "d[\"status\"]") == queued ]]'
check "run is in_progress (one job done, one queued): status=queued no longer lists it" \
	'[[ $(req GET "$R/actions/runs?status=queued") == 200 && $(js "$T/b" "d[\"total_count\"]") == 0 ]]'
check "the ephemeral runner is gone after its job: DELETE 404" '[[ $(req DELETE "$R/actions/runners/$RID_A") == 404 ]]'
curl -s -o "$T/log" "$U/_control/job/$JB/log"
check "job log reached the server" 'grep -q "step-output-B" "$T/log" && grep -q "##\[group\]Run write" "$T/log"'
check "jobs/{id}/logs: 302 to the log" '[[ $(req GET "$R/actions/jobs/$JB/logs") == 302 && $(curl -s "$(hdr Location)") == *step-output-B* ]]'

# org runner (labels self-hosted,tdx) with --jitconfig on argv takes job A, whose step fails
ctl POST /enqueue '{"head_sha":"'$SHA'","name":"F","labels":["tdx"],"conclusion":"failure","steps":[{"run":"echo before-failure"}]}' >/dev/null
JF=$(js "$T/c" 'd["jobs"][0]["id"]')
ctl POST /set '{"claim_order":"fifo"}' >/dev/null
(cd "$T/ws" && TDXR_FAKE_RUNNER_IDLE_TIMEOUT=5 "$RUN_SH" --jitconfig "$JIT_ORG" >"$T/run-org.out" 2>&1)
rc=$?
check "org runner via --jitconfig took job A (fifo), exit 0" '[[ $rc == 0 ]] && grep -q "Running job: A$" "$T/run-org.out"'
check "job A's file written in the runner's cwd" '[[ $(cat "$T/ws/out-A.txt") == "A $SHA" ]]'
gen $R '{"name":"tdxr-f","runner_group_id":1,"labels":["self-hosted","tdx"]}' >/dev/null
JIT_F=$(js "$T/b" 'd["encoded_jit_config"]')
(cd "$T/ws" && ACTIONS_RUNNER_INPUT_JITCONFIG=$JIT_F TDXR_FAKE_RUNNER_IDLE_TIMEOUT=5 "$RUN_SH" >"$T/run-f.out" 2>&1)
rc=$?
check "failing job: runner still exits 0 and says Failed" '[[ $rc == 0 ]] && grep -q "Job F completed with result: Failed" "$T/run-f.out"'
check "failing job: conclusion failure in the API" '[[ $(req GET "$R/actions/jobs/$JF") == 200 && $(js "$T/b" "(d[\"conclusion\"], d[\"runner_name\"])") == "('"'"'failure'"'"', '"'"'tdxr-f'"'"')" ]]'

# ---- runner delete rules, cancel, idle timeout, deleted registration, root --------------------------------
gen $R '{"name":"tdxr-c","runner_group_id":1,"labels":["self-hosted","tdx"]}' >/dev/null
RID_C=$(js "$T/b" 'd["runner"]["id"]')
check "DELETE an idle runner: 204" '[[ $(req DELETE "$R/actions/runners/$RID_C") == 204 ]]'
check "DELETE it again: 404" '[[ $(req DELETE "$R/actions/runners/$RID_C") == 404 ]]'
gen $R '{"name":"tdxr-d","runner_group_id":1,"labels":["self-hosted","tdx"]}' >/dev/null
RID_D=$(js "$T/b" 'd["runner"]["id"]')
JIT_D=$(js "$T/b" 'd["encoded_jit_config"]')
ctl POST /enqueue '{"head_sha":"'$SHA'","name":"S","labels":["tdx"],"steps":[{"run":"echo sleeping; sleep 30"},{"name":"after","if":"always()","run":"echo cleanup-ran"}]}' >/dev/null
JS=$(js "$T/c" 'd["jobs"][0]["id"]')
(cd "$T/ws" && ACTIONS_RUNNER_INPUT_JITCONFIG=$JIT_D TDXR_FAKE_RUNNER_IDLE_TIMEOUT=5 "$RUN_SH" >"$T/run-d.out" 2>&1) &
bg_pid=$!
check "job S goes in_progress" '[[ $(curl -s -o /dev/null -w "%{http_code}" "$U/_control/job/$JS/wait?status=in_progress&timeout=10") == 200 ]]'
check "DELETE the busy runner: 422" '[[ $(req DELETE "$R/actions/runners/$RID_D") == 422 ]]'
check "runners list shows it busy and online" \
	'[[ $(req GET "$R/actions/runners?name=tdxr-d") == 200 && $(js "$T/b" "(d[\"runners\"][0][\"busy\"], d[\"runners\"][0][\"status\"])") == "(True, '"'"'online'"'"')" ]]'
ctl POST "/job/$JS/cancel" >/dev/null
check "cancel: job ends cancelled" '[[ $(curl -s -o "$T/j" -w "%{http_code}" "$U/_control/job/$JS/wait?timeout=10") == 200 && $(js "$T/j" "d[\"conclusion\"]") == cancelled ]]'
wait "$bg_pid"
rc=$?
bg_pid=
check "cancelled job: runner exits 0, always() step ran" '[[ $rc == 0 ]] && grep -q "cleanup-ran" "$T/run-d.out" && grep -q "result: Canceled" "$T/run-d.out"'
check "then the runner is gone: DELETE 404" '[[ $(req DELETE "$R/actions/runners/$RID_D") == 404 ]]'
# the runner dies mid-job (box gone): after runner_lost_timeout the job fails, the runner is retired
gen $R '{"name":"tdxr-k","runner_group_id":1,"labels":["self-hosted","tdx"]}' >/dev/null
JIT_K=$(js "$T/b" 'd["encoded_jit_config"]')
ctl POST /enqueue '{"head_sha":"'$SHA'","name":"K","labels":["tdx"],"steps":[{"run":"echo $$ > '"$T"'/step.pid; sleep 30"}]}' >/dev/null
JK=$(js "$T/c" 'd["jobs"][0]["id"]')
ctl POST /set '{"runner_lost_timeout":1}' >/dev/null
(cd "$T/ws" && ACTIONS_RUNNER_INPUT_JITCONFIG=$JIT_K exec "$RUN_SH" >/dev/null 2>&1) &
bg_pid=$!
curl -s -o /dev/null "$U/_control/job/$JK/wait?status=in_progress&timeout=10"
for _ in $(seq 1 50); do [[ -s $T/step.pid ]] && break; sleep 0.1; done
{
	kill -9 "$bg_pid"
	wait "$bg_pid"
} 2>/dev/null
bg_pid=
[[ -s $T/step.pid ]] && kill -9 -- "-$(cat "$T/step.pid")" 2>/dev/null
check "runner killed mid-job: the job fails (lost communication), the runner is retired" \
	'[[ $(curl -s -o "$T/j" -w "%{http_code}" "$U/_control/job/$JK/wait?timeout=10") == 200 && $(js "$T/j" "(d[\"conclusion\"], d[\"finished_by\"])") == "('"'"'failure'"'"', '"'"'lost'"'"')" ]] && grep -q "lost communication" <(curl -s "$U/_control/job/$JK/log")'
ctl POST /set '{"runner_lost_timeout":30}' >/dev/null
gen $R '{"name":"tdxr-idle","runner_group_id":1,"labels":["self-hosted","gpu"]}' >/dev/null
RID_I=$(js "$T/b" 'd["runner"]["id"]')
JIT_I=$(js "$T/b" 'd["encoded_jit_config"]')
(cd "$T/ws" && "$RUN_SH" --jitconfig "$JIT_I" --idle-timeout 0.5 >"$T/run-i.out" 2>&1)
rc=$?
check "no matching job within the idle timeout: exit 124" '[[ $rc == 124 ]]'
(cd "$T/ws" && TDXR_FAKE_RUNNER_REAL_EXIT_CODES=1 "$RUN_SH" --jitconfig "$JIT_I" --idle-timeout 0.3 >/dev/null 2>&1)
rc1=$?
check "TDXR_FAKE_RUNNER_REAL_EXIT_CODES=1: exit 0 like the real run.sh" '[[ $rc1 == 0 ]]'
check "an idle registration shows as stale" \
	'[[ $(ctl GET /runners) == 200 && $(js "$T/c" "d[\"stale\"]") == "['"'"'tdxr-idle'"'"']" ]]'
req DELETE "$R/actions/runners/$RID_I" >/dev/null
(cd "$T/ws" && "$RUN_SH" --jitconfig "$JIT_I" --idle-timeout 2 >"$T/run-del.out" 2>&1)
rc=$?
check "runner whose registration was deleted: exit 1" '[[ $rc == 1 ]] && grep -q "deleted" "$T/run-del.out"'
check "bad JIT config: exit 1" '[[ $(cd "$T/ws" && "$RUN_SH" --jitconfig "not-base64!" >/dev/null 2>&1; echo $?) == 1 ]]'
check "unknown option: exit 1" '[[ $(cd "$T/ws" && "$RUN_SH" --bogus >/dev/null 2>&1; echo $?) == 1 ]]'
if [[ $(id -u) == 0 ]]; then
	check "as root without RUNNER_ALLOW_RUNASROOT: refused (exit 1)" \
		'[[ $(cd "$T/ws" && env -u RUNNER_ALLOW_RUNASROOT "$RUN_SH" --jitconfig "$JIT_I" 2>/dev/null | grep -c "Must not run interactively with sudo") == 1 ]]'
fi
check "0 registered runners left" '[[ $(ctl GET /runners) == 200 && $(js "$T/c" "d[\"registered\"]") == "[]" ]]'

# ---- check runs -------------------------------------------------------------------------------------
cr() { TOK=${ITOK:-$TOK} jreq POST "$R/check-runs" "$1"; }
check "check run with a static (non-App) token: 403" '[[ $(jreq POST "$R/check-runs" "{\"name\":\"x\",\"head_sha\":\"$SHA\"}") == 403 ]]'
if [[ -n $ITOK ]]; then
	check "check run without name: 422" '[[ $(cr "{\"head_sha\":\"$SHA\"}") == 422 ]]'
	check "check run on an unknown sha: 422" '[[ $(cr "{\"name\":\"x\",\"head_sha\":\"0123456789012345678901234567890123456789\"}") == 422 ]]'
	check "status completed without conclusion: 422" '[[ $(cr "{\"name\":\"x\",\"head_sha\":\"$SHA\",\"status\":\"completed\"}") == 422 ]]'
	check "bad conclusion: 422" '[[ $(cr "{\"name\":\"x\",\"head_sha\":\"$SHA\",\"conclusion\":\"great\"}") == 422 ]]'
	check "output without summary: 422" '[[ $(cr "{\"name\":\"x\",\"head_sha\":\"$SHA\",\"conclusion\":\"success\",\"output\":{\"title\":\"t\"}}") == 422 ]]'
	check "valid check run: 201, conclusion implies completed" \
		'[[ $(cr "{\"name\":\"tdx-attestation\",\"head_sha\":\"$SHA\",\"conclusion\":\"success\",\"output\":{\"title\":\"UpToDate\",\"summary\":\"verified\",\"text\":\"mrtd ...\"}}") == 201 && $(js "$T/b" "(d[\"status\"], d[\"name\"])") == "('"'"'completed'"'"', '"'"'tdx-attestation'"'"')" ]]'
	check "check-run violations recorded" '[[ $(errcodes) == "check_run_invalid check_run_sha" ]]'
fi
ctl POST /reset >/dev/null

# ---- releases and assets ------------------------------------------------------------------------------------------
ctl POST /release '{"tag":"v1.0"}' >/dev/null
ctl POST /release '{"tag":"v2.0-draft","draft":true}' >/dev/null
REL=$(js "$T/c" 'd["id"]')
check "draft release is not found by tag" '[[ $(req GET "$R/releases/tags/v2.0-draft") == 404 ]]'
check "release by tag: 200, upload_url is a template on this server" \
	'[[ $(req GET "$R/releases/tags/v1.0") == 200 && $(js "$T/b" "d[\"upload_url\"]") == "$U$R/releases/"*"/assets{?name,label}" ]]'
REL1=$(js "$T/b" 'd["id"]')
up=$(js "$T/b" 'd["upload_url"].split("{")[0]')
head -c 200000 /dev/urandom >"$T/bundle.bin"
asha=$(sha256sum "$T/bundle.bin" | cut -d' ' -f1)
upload() { # upload NAME -> status
	curl -s -o "$T/b" -D "$T/h" -w '%{http_code}' -X POST -H 'User-Agent: tdxr-test' \
		-H 'Accept: application/vnd.github+json' -H 'X-GitHub-Api-Version: 2022-11-28' \
		-H "Authorization: Bearer $TOK" -H 'Content-Type: application/octet-stream' \
		--data-binary "@$T/bundle.bin" "$up?name=$1"
}
check "asset upload: 201 uploaded, size and sha256 digest" \
	'[[ $(upload tdx-attestation.json) == 201 && $(js "$T/b" "(d[\"state\"], d[\"size\"], d[\"digest\"])") == "('"'"'uploaded'"'"', 200000, '"'"'sha256:$asha'"'"')" ]]'
check "the stored asset downloads byte-exact" '[[ $(curl -sL "$(js "$T/b" "d[\"browser_download_url\"]")" | sha256sum | cut -d" " -f1) == "$asha" ]]'
check "same name again: 422 already_exists" '[[ $(upload tdx-attestation.json) == 422 && $(js "$T/b" "d[\"errors\"][0][\"code\"]") == already_exists ]]'
ctl POST /fault '{"op":"asset_upload","status":502}' >/dev/null
check "injected 502 once, then 201" '[[ $(upload statement.json) == 502 && $(upload statement.json) == 201 ]]'
ctl POST /fault '{"op":"asset_upload","status":502,"leave_starter":true}' >/dev/null
check "a 502 that leaves a starter asset: the retry gets 422" '[[ $(upload quote.bin) == 502 && $(upload quote.bin) == 422 ]]'
req GET "$R/releases/$REL1/assets" >/dev/null
sid=$(js "$T/b" '[a["id"] for a in d if a["name"] == "quote.bin"][0]')
check "the starter asset is listed, can be deleted (204), then the upload works" \
	'[[ $(js "$T/b" "[a[\"state\"] for a in d if a[\"name\"] == \"quote.bin\"]") == "['"'"'starter'"'"']" && $(req DELETE "$R/releases/assets/$sid") == 204 && $(upload quote.bin) == 201 ]]'
check "draft release accepts uploads by id" '[[ $(curl -s -o /dev/null -w "%{http_code}" -X POST -H "User-Agent: t" -H "Accept: application/vnd.github+json" -H "X-GitHub-Api-Version: 2022-11-28" -H "Authorization: Bearer $TOK" -H "Content-Type: application/json" --data-binary "{}" "$U$R/releases/$REL/assets?name=a.json") == 201 ]]'
check "asset violations recorded" '[[ $(errcodes) == asset_duplicate ]]'
ctl POST /reset >/dev/null

# ---- webhooks -----------------------------------------------------------------------------------------
python3 - "$here" "$gh/webhook_signature_vector.docs.json" >"$T/vec" 2>&1 <<'EOF'
import json, os, sys
sys.path.insert(0, sys.argv[1])
import github_server
if not os.path.exists(sys.argv[2]):
    print("absent"); sys.exit(0)
v = json.load(open(sys.argv[2]))
print(github_server.sign(v["secret"], v["body"]) == v["expected"])
EOF
if [[ $(cat "$T/vec") == absent ]]; then
	echo "SKIP: webhook signature vector absent"
else
	check "the server's signing matches the docs' test vector" '[[ $(cat "$T/vec") == True ]]'
fi
ndel=$(curl -s "$U/_control/deliveries" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
curl -s -o "$T/d" "$U/_control/deliveries?min=$ndel&timeout=10"
python3 "$T/verify.py" "$T/hooks.jsonl" "$HOOK_SECRET" >"$T/v"
check "job B's deliveries: queued, in_progress, completed, all correctly signed (independent HMAC)" \
	'[[ $(awk -v j="$JB" "\$3 == j {print \$2, \$4, \$5}" "$T/v" | tr "\n" ,) == "queued good workflow_job,in_progress good workflow_job,completed good workflow_job," ]]'
check "every delivery has a distinct GUID" '[[ $(cut -d" " -f1 "$T/v" | sort | uniq -d | wc -l) == 0 ]]'
did=$(js "$T/d" '[x["id"] for x in d if x["job_id"] == '"$JB"' and x["action"] == "in_progress"][0]')
guid=$(js "$T/d" '[x["guid"] for x in d if x["job_id"] == '"$JB"' and x["action"] == "in_progress"][0]')
ctl POST "/deliveries/$did/redeliver" >/dev/null
ctl POST /webhook '{"job_id":'"$JB"',"action":"completed","signature":"bad"}' >/dev/null
curl -s -o "$T/d" "$U/_control/deliveries?min=$((ndel + 2))&timeout=10"
python3 "$T/verify.py" "$T/hooks.jsonl" "$HOOK_SECRET" >"$T/v"
check "redelivery: same GUID, same body, good signature" \
	'[[ $(grep -c "^$guid in_progress $JB good" "$T/v") == 2 && $(js "$T/d" "len(set(x[\"body_sha256\"] for x in d if x[\"guid\"] == \"$guid\"))") == 1 ]]'
check "a badly signed delivery fails verification" '[[ $(tail -1 "$T/v" | cut -d" " -f2,4) == "completed bad" ]]'
check "deliveries record the receiver's status" '[[ $(js "$T/d" "set(x[\"status_code\"] for x in d)") == "{200}" ]]'

# ---- rate limits --------------------------------------------------------------------------------------------
# primary limit on the static token's bucket, secondary on the installation token's, waited out together
ctl POST /fault '{"op":"runs","rate_limit":"primary","reset_in":2}' >/dev/null
check "primary rate limit: 403, x-ratelimit-remaining 0 and a reset in the future" \
	'[[ $(req GET $R/actions/runs) == 403 && $(hdr x-ratelimit-remaining) == 0 && $(hdr x-ratelimit-reset) -ge $(date +%s) ]]'
reset=$(hdr x-ratelimit-reset)
check "an immediate retry is refused and recorded" '[[ $(req GET $R/actions/runs) == 403 && $(errcodes) == rate_limit_ignored ]]'
ST=${ITOK:-ghp_second}
ctl POST /fault '{"op":"job","rate_limit":"secondary","status":429,"retry_after":1}' >/dev/null
check "secondary rate limit: 429 with retry-after" '[[ $(TOK=$ST req GET "$R/actions/jobs/$JA") == 429 && $(hdr retry-after) == 1 ]]'
t_sec=$(date +%s.%N)
while (($(date +%s) < reset)); do sleep 0.1; done
check "after x-ratelimit-reset: 200 again" '[[ $(req GET $R/actions/runs) == 200 ]]'
python3 -c 'import sys,time; time.sleep(max(0, float(sys.argv[1]) + 1.05 - time.time()))' "$t_sec"
check "after retry-after: 200" '[[ $(TOK=$ST req GET "$R/actions/jobs/$JA") == 200 ]]'
ctl POST /fault '{"op":"any","status":503,"count":2}' >/dev/null
check "5xx fault on any op, twice, then 200" '[[ $(req GET "$R/actions/runners") == 503 && $(req GET "$R/actions/runs") == 503 && $(req GET "$R/actions/runs") == 200 ]]'
ctl POST /fault '{"op":"runs","mode":"reset"}' >/dev/null
check "connection reset fault" '[[ $(req GET $R/actions/runs) == 000 ]]'

# ---- the record ------------------------------------------------------------------------------------------
state
check "faults are marked on their requests" \
	'[[ $(js "$T/s" "sorted(set(str(r[\"fault\"]) for r in d[\"requests\"] if r[\"fault\"]))") == "['"'"'503'"'"', '"'"'primary'"'"', '"'"'reset'"'"', '"'"'secondary'"'"']" ]]'
check "no fault left queued" '[[ $(js "$T/s" "d[\"faults\"]") == "[]" ]]'
check "only the deliberate rate-limit violation in errors" '[[ $(errcodes) == rate_limit_ignored ]]'
check "no secret leaked into logs or assets" '[[ $(js "$T/s" "[e for e in d[\"errors\"] if e[\"code\"].startswith(\"secret_in\")]") == "[]" ]]'

if ((fails)); then
	echo "--- server stderr"
	tail -20 "$T/server.err"
	echo "$fails check(s) failed"
	exit 1
fi
echo "all github_server checks passed"
