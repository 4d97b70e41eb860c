#!/usr/bin/env bash
# test_gitlab_server.sh - self-test of tests/integration/gitlab_server.py, the GitLab
# runner-API stand-in the agent's GitLab client is tested against, driven with curl and git
# the way a runner drives GitLab:
# verify and jobs/request (204 + X-GitLab-Last-Update, 201 job JSON shaped like the
# shared sample, 400/403 on a missing/wrong runner token), a clone and a pipeline-ref fetch
# over smart HTTP with the job token (and 401 with a wrong one, 403 on push), trace PATCH
# continuity (202 + Range, 416 on a gap or a resend, 400/403 on bad headers, injected
# 500/429/416/reset and a lost response), a masked secret split across two patches flagged,
# artifact zips (201, same content again 201, other content 400, over the limit 413, not a
# zip flagged), the final PUT (202 then 200, set per job or in the spec; checksum and
# bytesize verdicts; a final PUT before the whole trace recorded as errors), cancel
# (canceled -> 403, canceling -> 202) and two-phase commit. Everything is checked through
# /_control/state and /_control/job/ID.
# Trust: talks to 127.0.0.1 only; all files live in one temp dir removed at exit.
# Prints "SKIP: reason" when python3, curl or git is missing. Env: TDXR_SHARED_TESTDATA;
# TDXR_GLS_KEEP=1 keeps the temp dir (server state, payloads) for debugging.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=${TDXR_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
testdata=${TDXR_SHARED_TESTDATA:-$src/../shared/testdata}

skip() {
	echo "SKIP: $*"
	exit 0
}

command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
command -v curl >/dev/null 2>&1 || skip "curl is not installed"
command -v git >/dev/null 2>&1 || skip "git is not installed"

T=$(mktemp -d /tmp/tdxr-glsrv.XXXXXX)
srv_pid=
fails=0
cleanup() {
	if [[ -n $srv_pid ]]; then
		kill "$srv_pid" 2>/dev/null
		wait "$srv_pid" 2>/dev/null
	fi
	if [[ -n ${TDXR_GLS_KEEP:-} ]]; then echo "kept $T"; else rm -rf "$T"; fi
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

export HOME=$T GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0 GIT_ASKPASS=/bin/false

# ---- a bare repository with two commits ---------------------------------------
git init -q --bare -b main "$T/repo.git" || skip "git init failed"
git init -q -b main "$T/work"
(
	cd "$T/work" &&
		echo one >a.txt && git add a.txt && git -c user.name=T -c user.email=t@example.com commit -qm one &&
		echo two >b.txt && git add b.txt && git -c user.name=T -c user.email=t@example.com commit -qm "two
body line" && git push -q "$T/repo.git" main
) || skip "could not prepare the test repository"
head_sha=$(git -C "$T/repo.git" rev-parse HEAD)
parent_sha=$(git -C "$T/repo.git" rev-parse HEAD~1)

# ---- server --------------------------------------------------------------------
python3 "$here/gitlab_server.py" --runner-token glrt-good --repo "$T/repo.git" --state-dir "$T/state" \
	--trace-update-interval 1 --artifact-max-bytes 1048576 >"$T/port" 2>"$T/server.err" &
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

# req METHOD PATH [curl args...]: body -> $T/b, headers -> $T/h, prints the status
req() {
	local m=$1 p=$2
	shift 2
	curl -s -o "$T/b" -D "$T/h" -w '%{http_code}' -X "$m" "$@" "$U$p"
}
hdr() { grep -i "^$1:" "$T/h" | head -1 | cut -d: -f2- | tr -d '\r' | sed 's/^ //'; }
ctl() { # ctl METHOD PATH [JSON] -> $T/c
	curl -s -o "$T/c" -w '%{http_code}' -X "$1" ${3:+-d "$3"} "$U/_control$2"
}
state() { curl -s -o "$T/s" "$U/_control/state"; }
jobv() { curl -s -o "$T/j" "$U/_control/job/$1"; }
# rb [last_update] [extra features]: a jobs/request body like the shared sample's
rb() {
	local lu=${1:-} f=${2:-}
	printf '{"token":"glrt-good","system_id":"s_0123456789ab","info":{"name":"tdx-runner","version":"0.1.0","revision":"0000000","platform":"linux","architecture":"amd64","executor":"tdx-runner","shell":"bash","features":{"variables":true,"artifacts":true,"masking":true,"trace_checksum":true,"trace_size":true,"cancelable":true,"return_exit_code":true%s}}%s}' \
		"${f:+,$f}" "${lu:+,\"last_update\":\"$lu\"}"
}
jpost() { req POST "$1" -H 'Content-Type: application/json' -d "$2"; }
patch() { # patch JOB TOKEN RANGE DATA -> status
	req PATCH "/api/v4/jobs/$1/trace" -H "JOB-TOKEN: $2" -H "Content-Range: $3" -H 'Content-Type: text/plain' \
		--data-binary "$4"
}
put() { req PUT "/api/v4/jobs/$1" -H 'Content-Type: application/json' -d "$2"; }
crc() { python3 -c 'import sys,zlib; d=open(sys.argv[1],"rb").read(); print("crc32:%08x" % zlib.crc32(d), len(d))' "$1"; }

# ---- verify, empty queue, runner token ---------------------------------------------
check "verify with the runner token: 200 + token" \
	'[[ $(jpost /api/v4/runners/verify "{\"token\":\"glrt-good\"}") == 200 && $(js "$T/b" "d[\"token\"]") == glrt-good ]]'
check "verify with a wrong token: 403" '[[ $(jpost /api/v4/runners/verify "{\"token\":\"glrt-bad\"}") == 403 ]]'
check "empty queue: 204 with X-GitLab-Last-Update" '[[ $(jpost /api/v4/jobs/request "$(rb)") == 204 && -n $(hdr X-GitLab-Last-Update) ]]'
lu=$(hdr X-GitLab-Last-Update)
check "echoed last_update: 204, same value" '[[ $(jpost /api/v4/jobs/request "$(rb "$lu")") == 204 && $(hdr X-GitLab-Last-Update) == "$lu" ]]'
check "jobs/request without token: 400" '[[ $(jpost /api/v4/jobs/request "{\"info\":{}}") == 400 ]]'
check "jobs/request with a wrong runner token: 403" \
	'[[ $(jpost /api/v4/jobs/request "$(rb "$lu" | sed s/glrt-good/glrt-bad/)") == 403 ]]'

# ---- job A: enqueue, request, payload shape ----------------------------------------
spec='{"script":["echo building","make test"],"after_script":["echo after"],"timeout":600,
 "variables":[{"key":"SECRET","value":"s3cr3t-value-XYZ","masked":true},{"key":"PLAIN","value":"v"},
 {"key":"CFG","value":"file contents\n","file":true}],
 "artifacts":[{"name":"out","paths":["out/"],"when":"always","expire_in":"7d"}]}'
check "enqueue job A" '[[ $(ctl POST /enqueue "$spec") == 200 ]]'
A=$(js "$T/c" 'd["id"]')
check "jobs/request with the new queue: 201 job JSON" '[[ $(jpost /api/v4/jobs/request "$(rb "$lu")") == 201 ]]'
cp "$T/b" "$T/jobA.json"
TA=$(js "$T/jobA.json" 'd["token"]')
check "job id and token" '[[ $(js "$T/jobA.json" "d[\"id\"]") == "$A" && $TA == glcbt-* ]]'
check "repo_url carries gitlab-ci-token:<job token>" \
	'[[ $(js "$T/jobA.json" "d[\"git_info\"][\"repo_url\"]") == "http://gitlab-ci-token:$TA@127.0.0.1:$port/test/gitlab-test.git" ]]'
check "sha is the repo HEAD, before_sha its parent" \
	'[[ $(js "$T/jobA.json" "d[\"git_info\"][\"sha\"]") == "$head_sha" && $(js "$T/jobA.json" "d[\"git_info\"][\"before_sha\"]") == "$parent_sha" ]]'
check "refspecs: pipeline ref + branch, depth 20" \
	'[[ $(js "$T/jobA.json" "d[\"git_info\"][\"refspecs\"][0].startswith(\"+refs/pipelines/\") and d[\"git_info\"][\"refspecs\"][1] == \"+refs/heads/main:refs/remotes/origin/main\" and d[\"git_info\"][\"depth\"] == 20") == True ]]'
check "runner_info.timeout from the spec" '[[ $(js "$T/jobA.json" "d[\"runner_info\"][\"timeout\"]") == 600 ]]'
check "CI_JOB_TOKEN is the job token, masked" \
	'[[ $(js "$T/jobA.json" "[(v[\"value\"], v[\"masked\"]) for v in d[\"variables\"] if v[\"key\"] == \"CI_JOB_TOKEN\"] == [(\"$TA\", True)]") == True ]]'
check "user variables: masked, public, file" \
	'[[ $(js "$T/jobA.json" "{v[\"key\"]: (v[\"masked\"], v[\"public\"], v.get(\"file\", False)) for v in d[\"variables\"]}" ) == *"'"'"'SECRET'"'"': (True, False, False)"*"'"'"'CFG'"'"': (False, True, True)"* ]]'
check "CI_COMMIT_* from the real commit" \
	'[[ $(js "$T/jobA.json" "[{v[\"key\"]: v[\"value\"] for v in d[\"variables\"]}[k] for k in (\"CI_COMMIT_SHA\", \"CI_COMMIT_TITLE\", \"CI_COMMIT_BEFORE_SHA\", \"CI_SERVER_URL\")]") == "['"'"'$head_sha'"'"', '"'"'two'"'"', '"'"'$parent_sha'"'"', '"'"'$U'"'"']" ]]'
check "steps: script on_success, after_script always" \
	'[[ $(js "$T/jobA.json" "[(s[\"name\"], s[\"when\"], s[\"allow_failure\"], s[\"timeout\"]) for s in d[\"steps\"]]") == "[('"'"'script'"'"', '"'"'on_success'"'"', False, 600), ('"'"'after_script'"'"', '"'"'always'"'"', True, 600)]" ]]'
check "artifacts entry completed with type/format" \
	'[[ $(js "$T/jobA.json" "(d[\"artifacts\"][0][\"artifact_type\"], d[\"artifacts\"][0][\"artifact_format\"], d[\"artifacts\"][0][\"paths\"])") == "('"'"'archive'"'"', '"'"'zip'"'"', ['"'"'out/'"'"'])" ]]'
check "features: trace_sections + failure_reasons" \
	'[[ $(js "$T/jobA.json" "d[\"features\"][\"trace_sections\"] is True and \"script_failure\" in d[\"features\"][\"failure_reasons\"]") == True ]]'
sample=$testdata/ci/gitlab/job_request_201.composite.json
if [[ -f $sample ]]; then
	check "payload has every top-level key of the shared composite sample" \
		'[[ $(python3 -c "import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); print(sorted(set(a) - set(b)))" "$sample" "$T/jobA.json") == "[]" ]]'
	check "git_info/job_info/runner_info keys match the sample" \
		'[[ $(python3 -c "import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); print([k for s in (\"git_info\",\"job_info\",\"runner_info\",\"features\") for k in a[s] if k not in b[s]])" "$sample" "$T/jobA.json") == "[]" ]]'
else
	echo "SKIP: shared sample $sample not found (shape comparison)"
fi
check "queue empty again: 204" '[[ $(jpost /api/v4/jobs/request "$(rb "$lu")") == 204 ]]'

# ---- git over smart HTTP with the job token ------------------------------------------
check "clone with the job token" \
	'git clone -q "http://gitlab-ci-token:$TA@127.0.0.1:$port/test/gitlab-test.git" "$T/clone" 2>"$T/git.err"'
check "clone is at the job sha" '[[ $(git -C "$T/clone" rev-parse HEAD 2>/dev/null) == "$head_sha" ]]'
pid_ref=$(js "$T/jobA.json" 'd["git_info"]["refspecs"][0][1:].split(":")[0]')
check "fetch the pipeline ref (refspec from the payload)" \
	'git -C "$T/clone" fetch -q origin "+$pid_ref:$pid_ref" 2>>"$T/git.err" && [[ $(git -C "$T/clone" rev-parse "$pid_ref") == "$head_sha" ]]'
ctl POST /enqueue '{"refspec_sha":true}' >/dev/null
jpost /api/v4/jobs/request "$(rb "$lu")" >/dev/null
TS=$(js "$T/b" 'd["token"]')
spec_sha=$(js "$T/b" 'd["git_info"]["refspecs"][0]')
check "refspec_sha: +<sha>:refs/pipelines/N, and the bare sha can be fetched" \
	'[[ $spec_sha == "+$head_sha:refs/pipelines/"* ]] && git -C "$T/clone" fetch -q "http://gitlab-ci-token:$TS@127.0.0.1:$port/test/gitlab-test.git" "$spec_sha" 2>>"$T/git.err"'
check "clone with a wrong token fails" \
	'! git clone -q "http://gitlab-ci-token:glcbt-wrong@127.0.0.1:$port/test/gitlab-test.git" "$T/clone2" 2>/dev/null'
check "push with the job token is refused" \
	'! git -C "$T/clone" push -q origin HEAD:refs/heads/evil 2>/dev/null'
check "unauthenticated info/refs: 401 + WWW-Authenticate Basic" \
	'[[ $(req GET "/test/gitlab-test.git/info/refs?service=git-upload-pack") == 401 && $(hdr WWW-Authenticate) == Basic* ]]'
jobv "$A"
check "fetches recorded for job A, wants include the sha" \
	'[[ $(js "$T/j" "any(\"$head_sha\" in f.get(\"wants\", []) for f in d[\"fetches\"]) and all(f[\"status\"] in (200, 403) for f in d[\"fetches\"])") == True ]]'
state
check "wrong git credentials recorded (401)" \
	'[[ $(js "$T/s" "any(e[\"code\"] == \"git_bad_credentials\" for e in d[\"errors\"]) and any(f[\"status\"] == 401 and f[\"user\"] == \"gitlab-ci-token\" for f in d[\"fetches\"])") == True ]]'

# ---- trace PATCH continuity -----------------------------------------------------------
: >"$T/sent"
send() { # send DATA: PATCH at the current size; on 202 append to $T/sent
	local n start code
	start=$(stat -c %s "$T/sent")
	n=${#1}
	code=$(patch "$A" "$TA" "$start-$((start + n - 1))" "$1")
	[[ $code == 202 ]] && printf '%s' "$1" >>"$T/sent"
	echo "$code"
}
check "first PATCH: 202, Range 0-6, Job-Status running, interval 1" \
	'[[ $(send "hello ") == 202 && $(hdr Range) == 0-6 && $(hdr Job-Status) == running && $(hdr X-GitLab-Trace-Update-Interval) == 1 ]]'
check "gap: 416 with Range 0-6" '[[ $(patch "$A" "$TA" 10-12 abc) == 416 && $(hdr Range) == 0-6 ]]'
check "resend of acknowledged bytes: 416 with Range 0-6" '[[ $(patch "$A" "$TA" 0-5 "hello ") == 416 && $(hdr Range) == 0-6 ]]'
check "no JOB-TOKEN: 403" '[[ $(req PATCH "/api/v4/jobs/$A/trace" -H "Content-Range: 6-8" -H "Content-Type: text/plain" --data-binary abc) == 403 ]]'
check "wrong JOB-TOKEN: 403" '[[ $(patch "$A" glcbt-wrong 6-8 abc) == 403 ]]'
check "no Content-Range: 400" '[[ $(req PATCH "/api/v4/jobs/$A/trace" -H "JOB-TOKEN: $TA" -H "Content-Type: text/plain" --data-binary abc) == 400 ]]'
ctl POST /fault "{\"op\":\"trace\",\"job\":$A,\"status\":500,\"count\":2}" >/dev/null
check "flap: 500, 500, then 202" '[[ $(send "world") == 500 && $(send "world") == 500 && $(send "world") == 202 ]]'
ctl POST /fault '{"op":"trace","status":429,"retry_after":2}' >/dev/null
check "429 with Retry-After" '[[ $(send "x") == 429 && $(hdr Retry-After) == 2 ]]'
ctl POST /fault '{"op":"trace","status":416}' >/dev/null
check "forced 416 carries the true Range" '[[ $(send "x") == 416 && $(hdr Range) == "0-$(stat -c %s "$T/sent")" ]]'
ctl POST /fault '{"op":"trace","mode":"reset"}' >/dev/null
start=$(stat -c %s "$T/sent")
curl -s -o /dev/null -X PATCH -H "JOB-TOKEN: $TA" -H "Content-Range: $start-$start" -H 'Content-Type: text/plain' --data-binary x "$U/api/v4/jobs/$A/trace"
rc=$?
check "connection reset: curl reports a receive error (rc=$rc)" '(( rc == 52 || rc == 56 ))'
ctl POST /fault '{"op":"trace","when":"after","status":500}' >/dev/null
start=$(stat -c %s "$T/sent")
check "lost response: stored but answered 500" '[[ $(patch "$A" "$TA" "$start-$((start + 1))" "!!") == 500 ]]'
printf '!!' >>"$T/sent"
check "resend after a lost response: 416 resync to the stored size" \
	'[[ $(patch "$A" "$TA" "$start-$((start + 1))" "!!") == 416 && $(hdr Range) == "0-$((start + 2))" ]]'
check "secret split across two patches: both accepted" '[[ $(send " s3cr3t-") == 202 && $(send "value-XYZ end") == 202 ]]'
jobv "$A"
check "stored trace is byte-identical to what was acknowledged" \
	'curl -s "$U/_control/job/$A/trace" | cmp -s - "$T/sent"'
check "secret_in_trace flagged at the right offset" \
	'[[ $(js "$T/j" "[e[\"message\"] for e in d[\"errors\"] if e[\"code\"] == \"secret_in_trace\"]") == *"SECRET appears unmasked at trace offset $(grep -bo "s3cr3t" "$T/sent" | cut -d: -f1)"* ]]'
check "errors so far: gap, resent_acked, push, tokens, leak; a lost-response resend is none" \
	'[[ $(js "$T/j" "sorted(set(e[\"code\"] for e in d[\"errors\"]))") == "['"'"'bad_job_token'"'"', '"'"'content_range_missing'"'"', '"'"'git_push'"'"', '"'"'secret_in_trace'"'"', '"'"'trace_gap'"'"', '"'"'trace_resent_acked'"'"']" ]]'

# ---- artifacts --------------------------------------------------------------------------
python3 - "$T" <<'PY'
import json, os, sys, zipfile
t = sys.argv[1]
with zipfile.ZipFile(os.path.join(t, "a.zip"), "w") as z:
    z.writestr("out/result.txt", "result\n")
    z.writestr("tdx-attestation.json", json.dumps({"quote": "00", "event_log": []}))
with zipfile.ZipFile(os.path.join(t, "b.zip"), "w") as z:
    z.writestr("other.txt", "x")
with zipfile.ZipFile(os.path.join(t, "big.zip"), "w", zipfile.ZIP_STORED) as z:
    z.writestr("big.bin", os.urandom(1536 * 1024))
open(os.path.join(t, "notzip.zip"), "wb").write(b"this is not a zip file\n")
PY
up() { # up JOB TOKEN FILE [artifact_type]
	req POST "/api/v4/jobs/$1/artifacts?artifact_format=zip&artifact_type=${4:-archive}&expire_in=7d" \
		-H "JOB-TOKEN: $2" -F "file=@$3;filename=artifacts.zip"
}
check "archive upload: 201" '[[ $(up "$A" "$TA" "$T/a.zip") == 201 ]]'
check "same archive again (a retried upload): 201" '[[ $(up "$A" "$TA" "$T/a.zip") == 201 ]]'
check "second, different archive: 400" '[[ $(up "$A" "$TA" "$T/b.zip") == 400 && $(js "$T/b" "d[\"message\"]") == "another artifact of the same type already exists" ]]'
check "upload over --artifact-max-bytes: 413" '[[ $(up "$A" "$TA" "$T/big.zip") == 413 ]]'
check "upload with a wrong JOB-TOKEN: 403" '[[ $(up "$A" glcbt-wrong "$T/a.zip") == 403 ]]'
check "multipart form fields instead of query parameters: accepted (junit as zip)" \
	'[[ $(req POST "/api/v4/jobs/$A/artifacts" -H "JOB-TOKEN: $TA" -F "file=@$T/b.zip" -F artifact_type=junit -F artifact_format=zip -F expire_in=1d) == 201 ]]'
jobv "$A"
check "stored archive: names, attestation present and JSON" \
	'[[ $(js "$T/j" "[(a[\"names\"], a[\"attestation\"][\"present\"], a[\"attestation\"][\"json_ok\"], a[\"size\"] == os.path.getsize(\"$T/a.zip\")) for a in d[\"artifacts\"] if a[\"stored\"] and a[\"type\"] == \"archive\"]") == "[(['"'"'out/result.txt'"'"', '"'"'tdx-attestation.json'"'"'], True, True, True)]" ]]'
check "artifact statuses in order: 201 201 400 413 201" \
	'[[ $(js "$T/j" "[a[\"status\"] for a in d[\"artifacts\"]]") == "[201, 201, 400, 413, 201]" ]]'
check "the stored archive is the uploaded file" \
	'cmp -s "$(js "$T/j" "d[\"artifacts\"][0][\"path\"]")" "$T/a.zip"'

# ---- final PUT: 202 then 200, checksum verdict ---------------------------------------------
ctl POST "/job/$A/set" '{"final_202":1}' >/dev/null
read -r sum size < <(crc "$T/sent")
fin="{\"token\":\"$TA\",\"state\":\"success\",\"checksum\":\"$sum\",\"output\":{\"checksum\":\"$sum\",\"bytesize\":$size},\"exit_code\":0}"
check "PUT running keeps the job running: 200" '[[ $(put "$A" "{\"token\":\"$TA\",\"state\":\"running\",\"output\":{}}") == 200 && $(hdr Job-Status) == running ]]'
check "final PUT without token in the body: 400" '[[ $(put "$A" "{\"state\":\"success\"}") == 400 ]]'
check "final PUT: 202 with X-GitLab-Trace-Update-Interval" '[[ $(put "$A" "$fin") == 202 && $(hdr X-GitLab-Trace-Update-Interval) == 1 ]]'
check "final PUT again: 200, Job-Status success" '[[ $(put "$A" "$fin") == 200 && $(hdr Job-Status) == success ]]'
check "PATCH after the final state: 403, Job-Status success" '[[ $(patch "$A" "$TA" "$size-$size" x) == 403 && $(hdr Job-Status) == success ]]'
check "wait endpoint returns the final job" '[[ $(curl -s -o "$T/w" -w "%{http_code}" "$U/_control/job/$A/wait?timeout=2") == 200 && $(js "$T/w" "d[\"status\"]") == success ]]'
jobv "$A"
check "checksum verdict: match, bytesize equal" \
	'[[ $(js "$T/j" "(d[\"final\"][\"state\"], d[\"final\"][\"checksum\"][\"match\"], d[\"final\"][\"checksum\"][\"bytesize_sent\"] == d[\"trace\"][\"size\"], d[\"final\"][\"exit_code\"])") == "('"'"'success'"'"', True, True, 0)" ]]'
check "request after the job ended recorded as job_not_running" \
	'[[ $(js "$T/j" "any(e[\"code\"] == \"job_not_running\" for e in d[\"errors\"])") == True ]]'

# ---- job B: final PUT before the whole trace arrived; not-a-zip archive ------------------
ctl POST /enqueue '{"script":["false"]}' >/dev/null
B=$(js "$T/c" 'd["id"]')
jpost /api/v4/jobs/request "$(rb "$lu")" >/dev/null
TB=$(js "$T/b" 'd["token"]')
check "job B: PATCH 10 bytes" '[[ $(patch "$B" "$TB" 0-9 0123456789) == 202 ]]'
check "job B: non-zip archive accepted (201) but flagged" '[[ $(up "$B" "$TB" "$T/notzip.zip") == 201 ]]'
printf '0123456789abcdefghij' >"$T/full"
read -r sum size < <(crc "$T/full")
check "job B: final PUT claiming 20 bytes: 200" \
	'[[ $(put "$B" "{\"token\":\"$TB\",\"state\":\"failed\",\"failure_reason\":\"script_failure\",\"exit_code\":1,\"checksum\":\"$sum\",\"output\":{\"checksum\":\"$sum\",\"bytesize\":$size}}") == 200 ]]'
jobv "$B"
check "job B: checksum and bytesize mismatch and not-a-zip recorded" \
	'[[ $(js "$T/j" "sorted(e[\"code\"] for e in d[\"errors\"])") == "['"'"'artifact_not_zip'"'"', '"'"'bytesize_mismatch'"'"', '"'"'checksum_mismatch'"'"']" ]]'
check "job B: final failed/script_failure/exit 1" \
	'[[ $(js "$T/j" "(d[\"status\"], d[\"final\"][\"failure_reason\"], d[\"final\"][\"exit_code\"])") == "('"'"'failed'"'"', '"'"'script_failure'"'"', 1)" ]]'

# ---- cancel --------------------------------------------------------------------------------
ctl POST /enqueue '{"script":["sleep 100"]}' >/dev/null
C=$(js "$T/c" 'd["id"]')
jpost /api/v4/jobs/request "$(rb "$lu")" >/dev/null
TC=$(js "$T/b" 'd["token"]')
ctl POST "/job/$C/cancel" >/dev/null
check "canceled job: PATCH 403 with Job-Status canceled" '[[ $(patch "$C" "$TC" 0-2 abc) == 403 && $(hdr Job-Status) == canceled ]]'
check "canceled job: PUT 403 with Job-Status canceled" '[[ $(put "$C" "{\"token\":\"$TC\",\"state\":\"running\"}") == 403 && $(hdr Job-Status) == canceled ]]'
ctl POST /enqueue '{"script":["sleep 100"]}' >/dev/null
D=$(js "$T/c" 'd["id"]')
jpost /api/v4/jobs/request "$(rb "$lu" '"cancel_gracefully":true')" >/dev/null
TD=$(js "$T/b" 'd["token"]')
ctl POST "/job/$D/cancel" >/dev/null
check "graceful cancel: PATCH 202 with Job-Status canceling" '[[ $(patch "$D" "$TD" 0-2 abc) == 202 && $(hdr Job-Status) == canceling ]]'
read -r sum size < <(printf abc >"$T/d" && crc "$T/d")
check "graceful cancel: final PUT 200, job ends canceled" \
	'[[ $(put "$D" "{\"token\":\"$TD\",\"state\":\"failed\",\"failure_reason\":\"script_failure\",\"checksum\":\"$sum\",\"output\":{\"checksum\":\"$sum\",\"bytesize\":$size}}") == 200 && $(hdr Job-Status) == canceled ]]'

# ---- two-phase commit -----------------------------------------------------------------
ctl POST /enqueue '{"script":["true"],"final_202":1}' >/dev/null
E=$(js "$T/c" 'd["id"]')
jpost /api/v4/jobs/request "$(rb "$lu" '"two_phase_job_commit":true')" >/dev/null
TE=$(js "$T/b" 'd["token"]')
fin="{\"token\":\"$TE\",\"state\":\"success\",\"output\":{\"checksum\":\"crc32:00000000\",\"bytesize\":0}}"
check "two-phase: final PUT before accepting: 400" '[[ $(put "$E" "$fin") == 400 ]]'
check "two-phase: keep-alive PUT pending: 200 Job-Status pending" '[[ $(put "$E" "{\"token\":\"$TE\",\"state\":\"pending\"}") == 200 && $(hdr Job-Status) == pending ]]'
check "two-phase: clone works while waiting for the ack" \
	'git clone -q "http://gitlab-ci-token:$TE@127.0.0.1:$port/test/gitlab-test.git" "$T/clone3" 2>/dev/null'
check "two-phase: accept with PUT running: 200 Job-Status running" '[[ $(put "$E" "{\"token\":\"$TE\",\"state\":\"running\"}") == 200 && $(hdr Job-Status) == running ]]'
check "two-phase: final PUT now: 202 (spec final_202=1), then 200" '[[ $(put "$E" "$fin") == 202 && $(put "$E" "$fin") == 200 ]]'
jobv "$E"
check "two-phase: misuse recorded, job success" \
	'[[ $(js "$T/j" "(d[\"status\"], [e[\"code\"] for e in d[\"errors\"]])") == "('"'"'success'"'"', ['"'"'two_phase_not_acked'"'"'])" ]]'

# ---- the record ------------------------------------------------------------------------
state
check "requests recorded in order, with statuses" \
	'[[ $(js "$T/s" "[r[\"seq\"] for r in d[\"requests\"]] == sorted(r[\"seq\"] for r in d[\"requests\"]) and d[\"requests\"][0][\"op\"] == \"verify\" and d[\"requests\"][0][\"status\"] == 200") == True ]]'
check "injected faults are marked on their requests" \
	'[[ $(js "$T/s" "sorted(set(str(r[\"fault\"]) for r in d[\"requests\"] if r[\"fault\"]))") == "['"'"'416'"'"', '"'"'429'"'"', '"'"'500'"'"', '"'"'after:500'"'"', '"'"'reset'"'"']" ]]'
check "runner token errors recorded" \
	'[[ $(js "$T/s" "sorted(set(e[\"code\"] for e in d[\"errors\"] if e[\"job\"] is None))") == "['"'"'bad_runner_token'"'"', '"'"'git_bad_credentials'"'"', '"'"'runner_token_missing'"'"']" ]]'
check "no request left a fault queued" '[[ $(js "$T/s" "d[\"faults\"]") == "[]" ]]'

if ((fails)); then
	echo "--- server stderr"
	tail -20 "$T/server.err"
	echo "$fails check(s) failed"
	exit 1
fi
echo "all gitlab_server checks passed"
