#!/usr/bin/env bash
# shellcheck disable=SC2016 # job scripts in single quotes: bash in the box expands them
# test_gitlab_executor_phala.sh - `tdx-runner gitlab-executor` driven the way gitlab-runner's
# custom executor drives it (each stage a new process with CUSTOM_ENV_*, JOB_RESPONSE_FILE,
# the exit-code variables and gitlab-runner-shaped stage scripts, as in
# test_gitlab_executor.sh, whose helper gitlab_executor_helpers.py it shares), but with
# executor.kind "phala": the CVMs come from phala_server.py --boxes (real local boxes, the
# set-up is cvm_env.sh), the jobs and the git repository from gitlab_server.py.
# Cases: config JSON; prepare twice = one CVM; get_sources syncs the commit into the box's
# work directory (no .git; the job token in no argv, no lease file, no box file); script
# success / failure (exit code file) / after_script; SIGTERM stops the remote command;
# cleanup releases (zero CVMs on the server, zero box processes, zero claims); a gate refusal
# at prepare (box fault wrong-app-id): system failure, zero bytes into the box, CVM deleted.
# SKIPs exactly when cvm_env.sh does. Test-only: everything binds 127.0.0.1.
set -euo pipefail
E=phala
bin=${TDXR_BIN:?TDXR_BIN not set}
src=${TDXR_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
here=$src/tests/integration
SECONDS=0

fail() {
	echo "FAIL: $*"
	[ -f "${tmp:-/nonexistent}/gl.err" ] && sed 's/^/  gitlab: /' "$tmp/gl.err" | tail -10
	[ -f "${tmp:-/nonexistent}/srv.log" ] && sed 's/^/  phala: /' "$tmp/srv.log" | tail -15
	exit 1
}
gl_pid=
psp=
cvm_cleanup_hook() {
	[ -n "$psp" ] && kill "$psp" 2>/dev/null
	[ -n "$gl_pid" ] && kill "$gl_pid" 2>/dev/null
	return 0
}
CVM_TMP_TAG=glexecphala
# the checks (SKIP), the Phala server with its boxes, $cfg, the helpers: cvm_env.sh
# shellcheck source=tests/integration/cvm_env.sh
. "$here/cvm_env.sh"
gep() { "$PY" "$here/gitlab_executor_helpers.py" "$@"; }
# glget PATH / glpost PATH: gitlab_server.py's control API
glget() { "$PY" -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=30).read().decode())' "$gl$1"; }
glpost() {
	"$PY" -c 'import sys, urllib.request
r = urllib.request.Request(sys.argv[1], data=b"{}", method="POST", headers={"Content-Type": "application/json"})
urllib.request.urlopen(r, timeout=30).read()' "$gl$1"
}

# ---- the project and the GitLab server ----------------------------------------------------
git init -q "$tmp/work"
(
	cd "$tmp/work"
	git checkout -q -b main
	printf 'hello from the repo\n' >README
	mkdir -p "sub dir"
	printf 'nested\n' >"sub dir/file.txt"
	git add README "sub dir/file.txt"
	git -c user.name=t -c user.email=t@example.com commit -q -m "first"
)
git clone -q --bare "$tmp/work" "$tmp/proj.git"
sha=$(git -C "$tmp/proj.git" rev-parse HEAD)
"$PY" "$here/gitlab_server.py" --runner-token glrt-test --project grp/proj --repo "$tmp/proj.git" \
	--state-dir "$tmp/gl" >"$tmp/gl.out" 2>"$tmp/gl.err" </dev/null &
gl_pid=$!
for _ in $(seq 100); do grep -q '^PORT ' "$tmp/gl.out" 2>/dev/null && break; sleep 0.05; done
grep -q '^PORT ' "$tmp/gl.out" || fail "gitlab_server.py did not start"
gl=http://127.0.0.1:$(awk '/^PORT /{print $2}' "$tmp/gl.out")

# new_job N: a queued job taken the way gitlab-runner takes it; env file $tmp/jN.env
new_job() {
	glpost /_control/enqueue
	gep request "$gl" glrt-test "$tmp/j$1.json" >"$tmp/j$1.id"
	gep env "$tmp/j$1.json" >"$tmp/j$1.env"
}
# ge N -- STAGE ARGS...: one driver stage for job N, gitlab-runner style
ge() {
	local n=$1
	shift 2
	(
		set +u
		# shellcheck disable=SC1090 # written by gitlab_executor_helpers.py env
		source "$tmp/j$n.env"
		export BUILD_FAILURE_EXIT_CODE=1 SYSTEM_FAILURE_EXIT_CODE=2 BUILD_EXIT_CODE_FILE="$tmp/j$n.exit"
		export TDX_RUNNER_CONFIG="$cfg"
		echo "$BASHPID" >"$tmp/driver.pid" # exec keeps the pid: the signal hits the driver itself
		exec "$bin" gitlab-executor "$@"
	)
}
# builds N: after `config`, the variables gitlab-runner derives from builds_dir
builds() {
	local bd
	bd=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['builds_dir'])" "$tmp/j$1.config")
	gep env "$tmp/j$1.json" "$bd" >"$tmp/j$1.env"
	echo "$bd/grp/proj"
}
script() { local n=$1 st=$2; shift 2; gep script "$tmp/j$n.json" "$(dirname "$(dirname "$proj")")" "$st" "$@" >"$tmp/j$n.$st.sh"; echo "$tmp/j$n.$st.sh"; }
# fetched_for JOB [USER]: how many fetches of the repository the GitLab server saw for JOB (by USER)
fetched_for() { glget /_control/state | "$PY" -c "import json,sys; print(sum(1 for x in json.load(sys.stdin)['fetches'] if x['job']==$1 and '${2:-}' in ('', x['user'])))"; }

# ---- 1. config ----------------------------------------------------------------------------
new_job 1
job1=$(cat "$tmp/j1.id")
token1=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['token'])" "$tmp/j1.json")
ge 1 -- config >"$tmp/j1.config" || fail "config failed"
"$PY" - "$tmp/j1.config" <<'EOF' || fail "config output: $(cat "$tmp/j1.config")"
import json, sys
c = json.load(open(sys.argv[1]))
assert c["builds_dir"] == "/var/volatile/tdx-runner-job/builds", c
assert c["cache_dir"].startswith("/") and c["builds_dir_is_shared"] is False, c
assert c["hostname"] == "tdx-runner-phala" and c["driver"]["name"] == "tdx-runner" and c["driver"]["version"], c
assert c["job_env"]["TDX_RUNNER"] == "1" and c["job_env"]["TDX_RUNNER_EXECUTOR"] == "phala", c
assert c["shell"] == "bash", c
EOF
proj=$(builds 1)
[ "$(live_cvms)" -eq 0 ] || fail "config leased a CVM"
echo "ok: config (phala builds_dir, hostname, job_env)"

# ---- 2. prepare twice: one CVM --------------------------------------------------------------
p0=$(calls provision)
ge 1 -- prepare >"$tmp/p1.out" 2>&1 || { cat "$tmp/p1.out"; fail "prepare failed"; }
grep -q "attested (SIMULATED" "$tmp/p1.out" || { cat "$tmp/p1.out"; fail "prepare shows no attestation summary"; }
[ "$(live_cvms)" -eq 1 ] || fail "after prepare: $(live_cvms) CVMs, want 1"
[ "$(claims)" -eq 1 ] || fail "after prepare: $(claims) claims, want 1"
lease=$("$bin" leases --config "$cfg" --json | "$PY" -c "
import json,sys; l=json.load(sys.stdin); assert l[0]['state']=='kept' and l[0]['job']=='gitlab-executor/$job1', l; print(l[0]['id'])")
cvm=$(cvm_ids)
ge 1 -- prepare >"$tmp/p2.out" 2>&1 || { cat "$tmp/p2.out"; fail "retried prepare failed"; }
grep -q "reusing lease $lease" "$tmp/p2.out" || { cat "$tmp/p2.out"; fail "retried prepare did not reuse $lease"; }
{ [ "$(live_cvms)" -eq 1 ] && [ "$(cvm_ids)" = "$cvm" ]; } || fail "a retried prepare leased another CVM ($(cvm_ids), was $cvm)"
[ "$(calls provision)" -eq $((p0 + 1)) ] || fail "provision called $(($(calls provision) - p0)) times, want 1"
[ "$(claims)" -eq 1 ] || fail "after a retried prepare: $(claims) claims, want 1"
vol=$boxes/b/p$cvm/volatile # the box's /var/volatile, seen from the host
[ -d "$vol" ] || fail "no box directory $vol"
echo "ok: prepare twice = one CVM, one claim (lease $lease reused)"

# ---- 3. get_sources: the commit in the box's work dir, no .git, the token nowhere ------------
( while :; do ps -eww -o args= 2>/dev/null; sleep 0.02; done ) >"$tmp/ps.log" &
psp=$!
ge 1 -- run "$(script 1 get_sources)" get_sources >"$tmp/gs.out" 2>&1 && rc=0 || rc=$?
kill "$psp"; wait "$psp" 2>/dev/null || true
psp=
[ "$rc" -eq 0 ] || { cat "$tmp/gs.out"; fail "get_sources exit $rc"; }
grep -q "fetched ${sha:0:12}" "$tmp/gs.out" || { cat "$tmp/gs.out"; fail "get_sources does not say what it synced"; }
# CI_PROJECT_DIR in the box is a symlink into the box's work root: follow it on the host side
link=$vol${proj#/var/volatile}
[ -L "$link" ] || fail "CI_PROJECT_DIR $proj is not a symlink in the box ($(ls -la "$(dirname "$link")" 2>&1))"
target=$(readlink "$link")
case "$target" in "$work_root" | "$work_root"/*) ;; *) fail "CI_PROJECT_DIR points to $target, not at or below $work_root" ;; esac
pd=$vol${target#/var/volatile}
[ "$(cat "$pd/README")" = "hello from the repo" ] || fail "README not in the box's work dir $target"
[ "$(cat "$pd/sub dir/file.txt")" = nested ] || fail "nested file not in the box's work dir"
[ -z "$(find "$vol" -name .git)" ] || fail "a .git reached the box: $(find "$vol" -name .git)"
"$bin" verify --allow-simulated "$pd/tdx-attestation.json" >/dev/null || fail "no valid bundle in the box's project dir"
grep -qF "$token1" "$tmp/ps.log" && fail "the job token appeared in a process's argv"
grep -q "gitlab-executor run .*get_sources" "$tmp/ps.log" || fail "the ps sampler never saw the driver"
grep -rlF "$token1" "$state" && fail "the job token is in a file under the state dir (leases, job record)"
grep -rlF "$token1" "$vol" && fail "the job token is in a file in the box"
[ "$(fetched_for "$job1" gitlab-ci-token)" -ge 1 ] || fail "the fetch did not authenticate with the job token"
echo "ok: get_sources syncs the commit into the box's work dir (no .git, bundle verifies); the token in no argv or file"

# ---- 4. script success, failure, after_script ----------------------------------------------
ge 1 -- run "$(script 1 prepare_script)" prepare_script >"$tmp/ps.out" 2>&1 || { cat "$tmp/ps.out"; fail "prepare_script failed"; }
ge 1 -- run "$(script 1 step_script 'cat README' 'echo "pwd=$(pwd -P)"' 'echo built >out.txt' 'echo to-stderr >&2' 'echo "token=$CI_JOB_TOKEN"')" step_script >"$tmp/b.out" 2>"$tmp/b.err" && rc=0 || rc=$?
[ "$rc" -eq 0 ] || { cat "$tmp/b.out" "$tmp/b.err"; fail "build script exit $rc"; }
grep -qx "hello from the repo" "$tmp/b.out" || fail "build output not streamed: $(cat "$tmp/b.out")"
grep -qx "pwd=$target" "$tmp/b.out" || fail "the script did not run in the box's work dir $target: $(cat "$tmp/b.out")"
[ "$(cat "$pd/out.txt")" = built ] || fail "the script's file is not in the box's work dir"
grep -qx "to-stderr" "$tmp/b.err" || fail "build stderr not on stderr"
grep -qF "$token1" "$tmp/b.out" "$tmp/b.err" && fail "the token reached the job log"
grep -qx 'token=\[MASKED\]' "$tmp/b.out" || fail "the job token printed by the script was not masked"
rm -f "$tmp/j1.exit"
ge 1 -- run "$(script 1 step_script 'echo failing' 'exit 3')" step_script >"$tmp/f.out" 2>&1 && rc=0 || rc=$?
[ "$rc" -eq 1 ] || { cat "$tmp/f.out"; fail "failing script: exit $rc, want BUILD_FAILURE_EXIT_CODE 1"; }
[ "$(cat "$tmp/j1.exit" 2>/dev/null)" = 3 ] || fail "BUILD_EXIT_CODE_FILE holds '$(cat "$tmp/j1.exit" 2>/dev/null)', want 3"
ge 1 -- run "$(script 1 after_script 'cat out.txt' 'echo after ran')" after_script >"$tmp/a.out" 2>&1 || { cat "$tmp/a.out"; fail "after_script failed"; }
{ grep -qx "built" "$tmp/a.out" && grep -qx "after ran" "$tmp/a.out"; } || fail "after_script output: $(cat "$tmp/a.out")"
{ [ "$(live_cvms)" -eq 1 ] && [ "$(cvm_ids)" = "$cvm" ]; } || fail "the run stages changed the CVMs ($(cvm_ids), was $cvm)"
echo "ok: script success (in the box), failure (exit code file), after_script after a failure"

# ---- 5. SIGTERM during a long script: the remote command is stopped --------------------------
s1=$(script 1 step_script 'sleep 317')
rm -f "$tmp/driver.pid"
ge 1 -- run "$s1" step_script >"$tmp/t.out" 2>&1 &
pid=$!
for _ in $(seq 300); do pgrep -f "sleep 31[7]" >/dev/null && break; sleep 0.05; done
pgrep -f "sleep 31[7]" >/dev/null || { cat "$tmp/t.out"; fail "the long script never started"; }
kill -TERM "$(cat "$tmp/driver.pid")"
wait "$pid" && rc=0 || rc=$?
[ "$rc" -eq 2 ] || { cat "$tmp/t.out"; fail "SIGTERM: exit $rc, want SYSTEM_FAILURE_EXIT_CODE 2"; }
grep -q "canceled" "$tmp/t.out" || { cat "$tmp/t.out"; fail "SIGTERM: no message"; }
for _ in $(seq 20); do pgrep -f "sleep 31[7]" >/dev/null || break; sleep 0.1; done
pgrep -f "sleep 31[7]" >/dev/null && fail "the remote command survived SIGTERM"
[ "$(live_cvms)" -eq 1 ] || fail "SIGTERM: the CVM is not kept for cleanup ($(live_cvms) live)"
echo "ok: SIGTERM stops the remote command in the box, exit SYSTEM_FAILURE_EXIT_CODE, CVM kept for cleanup"

# ---- 6. cleanup releases everything (no reap) ------------------------------------------------
ge 1 -- cleanup >"$tmp/c.out" 2>&1 || { cat "$tmp/c.out"; fail "cleanup failed"; }
leftovers "cleanup"
compgen -G "$state/gitlab-executor/$job1*" >/dev/null && fail "job files left after cleanup: $(ls "$state/gitlab-executor")"
ge 1 -- cleanup >/dev/null 2>&1 || fail "a second cleanup failed"
echo "ok: cleanup releases (zero CVMs on the server, zero box processes, zero claims, zero job files)"

# ---- 7. gate refusal at prepare (wrong app id): system failure, zero bytes, CVM deleted -------
new_job 2
job2=$(cat "$tmp/j2.id")
ge 2 -- config >"$tmp/j2.config" || fail "job 2 config failed"
proj=$(builds 2)
before=$(cvm_ids)
box_fault wrong-app-id
ge 2 -- prepare >"$tmp/g.out" 2>&1 && rc=0 || rc=$?
box_fault none
[ "$rc" -eq 2 ] || { cat "$tmp/g.out"; fail "refused gate: exit $rc, want SYSTEM_FAILURE_EXIT_CODE 2"; }
grep -q "prepare: gate: attestation refused at identity: app id" "$tmp/g.out" || { cat "$tmp/g.out"; fail "the refusal does not name the identity step"; }
zero_bytes "wrong-app-id" "$before"
leftovers "wrong-app-id"
[ ! -e "$state/gitlab-executor/$job2.lease" ] || fail "a refused prepare left a job record"
ge 2 -- run "$(script 2 get_sources)" get_sources >"$tmp/g2.out" 2>&1 && rc=0 || rc=$?
[ "$rc" -eq 2 ] || { cat "$tmp/g2.out"; fail "get_sources without a lease: exit $rc, want 2"; }
[ "$(fetched_for "$job2")" -eq 0 ] || fail "source was fetched for a job whose box did not attest"
ge 2 -- cleanup >/dev/null 2>&1 || fail "cleanup of a refused job failed"
leftovers "refused job cleanup"
echo "ok: wrong app id at prepare: system failure, nothing fetched, zero bytes into the box, CVM deleted"
echo "PASS (phala, ${SECONDS} s)"
