#!/usr/bin/env bash
# test_gitlab_executor.sh - `tdx-runner gitlab-executor` driven exactly the way
# gitlab-runner's custom executor drives it: each stage a new process with the
# job's variables as CUSTOM_ENV_*, JOB_RESPONSE_FILE, the exit-code variables,
# and stage scripts shaped like the ones gitlab-runner generates; jobs and the
# git repository (smart HTTP, job-token Basic auth) come from gitlab_server.py.
# Local executor (real sshd, guest agent, rsync through `tdx-runner rsh`).
# Cases: config JSON; prepare retried = one lease (also after a kill -9 mid-prepare);
# get_sources syncs the commit (no git in the box, token in no argv and no file);
# script success / failure (exit code file) / after_script; SIGTERM stops the
# remote command; cleanup releases (also after kill -9 of a stage); a gate refusal
# at prepare sends nothing and keeps nothing.
set -euo pipefail
bin=${TDXR_BIN:?TDXR_BIN not set}
here=$(cd "$(dirname "$0")" && pwd)
for t in /usr/sbin/sshd rsync ssh-keygen python3 git curl; do
	command -v "$t" >/dev/null 2>&1 || [ -x "$t" ] || { echo "SKIP: $t is not installed"; exit 0; }
done
[ -f "$here/gitlab_server.py" ] || { echo "SKIP: gitlab_server.py is not there"; exit 0; }
gep() { python3 "$here/gitlab_executor_helpers.py" "$@"; }
tmp=$(mktemp -d /tmp/tdxr-glexec-XXXXXX)
state=$tmp/s
srv_pid=
cleanup() {
	[ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null
	"$bin" reap --all --config "$tmp/cfg.json" >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
printf '{"state_dir": "%s"}' "$state" >"$tmp/cfg.json"
printf '{"state_dir": "%s", "policy": {"allow_simulated": false}}' "$state" >"$tmp/strict.json"
box_procs() { grep -ls "$state/boxe[s]/" /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null | wc -l; }
claims() { "$bin" leases --config "$tmp/cfg.json" --json | python3 -c "import json,sys; print(len(json.load(sys.stdin)))"; }

# The project: a bare repository served by the test GitLab.
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
# The interpreter itself (not a wrapper such as a pyenv shim), so $! is the server's pid.
py=$(python3 -c 'import sys; print(sys.executable)')
"$py" "$here/gitlab_server.py" --runner-token glrt-test --project grp/proj --repo "$tmp/proj.git" \
	--state-dir "$tmp/gl" >"$tmp/gl.out" 2>"$tmp/gl.err" </dev/null &
srv_pid=$!
for _ in $(seq 100); do grep -q '^PORT ' "$tmp/gl.out" 2>/dev/null && break; sleep 0.05; done
port=$(sed -n 's/^PORT //p' "$tmp/gl.out")
[ -n "$port" ] || { cat "$tmp/gl.err"; fail "gitlab_server did not start"; }
gl=http://127.0.0.1:$port

# new_job N: a queued job taken the way gitlab-runner takes it; env file $tmp/jN.env.
new_job() {
	local n=$1
	curl -fsS -X POST -d '{}' "$gl/_control/enqueue" >/dev/null
	gep request "$gl" glrt-test "$tmp/j$n.json" >"$tmp/j$n.id"
	gep env "$tmp/j$n.json" >"$tmp/j$n.env"
}
# ge N [VAR=value...] -- STAGE ARGS...: one driver stage for job N, gitlab-runner style.
ge() {
	local n=$1
	shift
	local extra=()
	while [ "$1" != "--" ]; do extra+=("$1"); shift; done
	shift
	(
		set +u
		source "$tmp/j$n.env"
		export BUILD_FAILURE_EXIT_CODE=1 SYSTEM_FAILURE_EXIT_CODE=2 BUILD_EXIT_CODE_FILE="$tmp/j$n.exit"
		export TDX_RUNNER_CONFIG="$tmp/cfg.json"
		[ ${#extra[@]} -eq 0 ] || export "${extra[@]}"
		echo "$BASHPID" >"$tmp/driver.pid" # exec keeps the pid: kill -9 hits the driver itself
		exec "$bin" gitlab-executor "$@"
	)
}
# builds N: after `config`, the variables gitlab-runner derives from builds_dir.
builds() {
	local n=$1 bd
	bd=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['builds_dir'])" "$tmp/j$n.config")
	gep env "$tmp/j$n.json" "$bd" >"$tmp/j$n.env"
	echo "$bd/grp/proj"
}
script() { local n=$1 st=$2; shift 2; gep script "$tmp/j$n.json" "$(dirname "$(dirname "$proj")")" "$st" "$@" >"$tmp/j$n.$st.sh"; echo "$tmp/j$n.$st.sh"; }

# 1. config prints the driver JSON
new_job 1
job1=$(cat "$tmp/j1.id")
token1=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['token'])" "$tmp/j1.json")
ge 1 -- config >"$tmp/j1.config" || fail "config failed"
python3 - "$tmp/j1.config" <<'EOF' || fail "config output: $(cat "$tmp/j1.config")"
import json, sys
c = json.load(open(sys.argv[1]))
assert c["builds_dir"].startswith("/") and c["builds_dir"].endswith("/builds"), c
assert c["cache_dir"].startswith("/") and c["builds_dir_is_shared"] is False, c
assert c["hostname"] and c["driver"]["name"] == "tdx-runner" and c["driver"]["version"], c
assert c["job_env"]["TDX_RUNNER"] == "1" and c["shell"] == "bash", c
EOF
proj=$(builds 1)
echo "ok: config"

# 2. prepare, retried without cleanup (and after a kill -9 mid-prepare): one lease per job
rm -f "$tmp/driver.pid"
TDXR_TEST_STALL_AT=ready ge 1 -- prepare >"$tmp/p0.out" 2>&1 &
pid=$!
for _ in $(seq 200); do grep -q "test stall at ready" "$tmp/p0.out" && break; sleep 0.05; done
grep -q "test stall at ready" "$tmp/p0.out" || { cat "$tmp/p0.out"; fail "prepare never reached ready"; }
kill -9 "$(cat "$tmp/driver.pid")"; wait "$pid" 2>/dev/null || true
ge 1 -- prepare >"$tmp/p1.out" 2>&1 || { cat "$tmp/p1.out"; fail "prepare failed"; }
grep -q "attested (SIMULATED" "$tmp/p1.out" || fail "prepare shows no attestation summary"
grep -q "released orphan lease" "$tmp/p1.out" || fail "the killed prepare's lease was not released"
[ "$(claims)" -eq 1 ] || fail "after prepare: $(claims) claims, want 1"
lease=$("$bin" leases --config "$tmp/cfg.json" --json | python3 -c "
import json,sys; l=json.load(sys.stdin); assert l[0]['state']=='kept' and l[0]['job']=='gitlab-executor/$job1', l; print(l[0]['id'])")
ge 1 -- prepare >"$tmp/p2.out" 2>&1 || { cat "$tmp/p2.out"; fail "retried prepare failed"; }
grep -q "reusing lease $lease" "$tmp/p2.out" || { cat "$tmp/p2.out"; fail "retried prepare did not reuse $lease"; }
[ "$(claims)" -eq 1 ] || fail "after a retried prepare: $(claims) claims, want 1"
echo "ok: prepare is idempotent (one lease per job, also after kill -9 mid-prepare)"

# 3. get_sources: the commit arrives through our fetch + sync; no git in the box; the token
#    is in no process's argv and in no file of ours
( while :; do ps -eww -o args= 2>/dev/null; sleep 0.02; done ) >"$tmp/ps.log" &
psp=$!
ge 1 -- run "$(script 1 get_sources)" get_sources >"$tmp/gs.out" 2>&1 && rc=0 || rc=$?
kill "$psp"; wait "$psp" 2>/dev/null || true
[ "$rc" -eq 0 ] || { cat "$tmp/gs.out"; fail "get_sources exit $rc"; }
grep -q "fetched ${sha:0:12}" "$tmp/gs.out" || { cat "$tmp/gs.out"; fail "get_sources does not say what it synced"; }
[ "$(cat "$proj/README")" = "hello from the repo" ] || fail "README not in CI_PROJECT_DIR"
[ "$(cat "$proj/sub dir/file.txt")" = nested ] || fail "nested file not in CI_PROJECT_DIR"
[ ! -e "$proj/.git" ] || fail "a .git reached the box"
"$bin" verify --allow-simulated "$proj/tdx-attestation.json" >/dev/null || fail "no valid bundle in the project dir"
grep -qF "$token1" "$tmp/ps.log" && fail "the job token appeared in a process's argv"
grep -q "gitlab-executor run .*get_sources" "$tmp/ps.log" || fail "the ps sampler never saw the driver"
grep -rlF "$token1" "$state" && fail "the job token is in a file under the state dir"
curl -fsS "$gl/_control/state" | python3 -c "
import json,sys; f=json.load(sys.stdin)['fetches']; assert any(x['job']==$job1 and x['user']=='gitlab-ci-token' for x in f), f" ||
	fail "the fetch did not authenticate with the job token"
echo "ok: get_sources syncs the commit and the bundle; the token stays out of argv and files"

# 4. a build script that succeeds, one that fails, after_script after the failure
ge 1 -- run "$(script 1 prepare_script)" prepare_script >"$tmp/ps.out" 2>&1 || { cat "$tmp/ps.out"; fail "prepare_script failed"; }
ge 1 -- run "$(script 1 step_script 'cat README' 'test -f tdx-attestation.json' 'echo built >out.txt' 'echo to-stderr >&2' 'echo "token=$CI_JOB_TOKEN"')" step_script >"$tmp/b.out" 2>"$tmp/b.err" && rc=0 || rc=$?
[ "$rc" -eq 0 ] || { cat "$tmp/b.out" "$tmp/b.err"; fail "build script exit $rc"; }
grep -qx "hello from the repo" "$tmp/b.out" || fail "build output not streamed: $(cat "$tmp/b.out")"
grep -qx "to-stderr" "$tmp/b.err" || fail "build stderr not on stderr"
grep -qF "$token1" "$tmp/b.out" "$tmp/b.err" && fail "the token reached the job log"
grep -qx 'token=\[MASKED\]' "$tmp/b.out" || fail "the job token printed by the script was not masked"
rm -f "$tmp/j1.exit"
ge 1 -- run "$(script 1 step_script 'echo failing' 'exit 3')" step_script >"$tmp/f.out" 2>&1 && rc=0 || rc=$?
[ "$rc" -eq 1 ] || { cat "$tmp/f.out"; fail "failing script: exit $rc, want BUILD_FAILURE_EXIT_CODE 1"; }
[ "$(cat "$tmp/j1.exit")" = 3 ] || fail "BUILD_EXIT_CODE_FILE holds '$(cat "$tmp/j1.exit" 2>/dev/null)', want 3"
ge 1 -- run "$(script 1 after_script 'cat out.txt' 'echo after ran')" after_script >"$tmp/a.out" 2>&1 || { cat "$tmp/a.out"; fail "after_script failed"; }
grep -qx "built" "$tmp/a.out" && grep -qx "after ran" "$tmp/a.out" || fail "after_script output: $(cat "$tmp/a.out")"
echo "ok: script success, failure (exit code file), after_script after a failure"

# 5. SIGTERM (cancel/timeout) during a long script: the remote command is stopped
s1=$(script 1 step_script 'sleep 317')
rm -f "$tmp/driver.pid"
ge 1 -- run "$s1" step_script >"$tmp/t.out" 2>&1 &
pid=$!
for _ in $(seq 200); do pgrep -f "sleep 31[7]" >/dev/null && break; sleep 0.05; done
pgrep -f "sleep 31[7]" >/dev/null || { cat "$tmp/t.out"; fail "the long script never started"; }
kill -TERM "$(cat "$tmp/driver.pid")"
wait "$pid" && rc=0 || rc=$?
[ "$rc" -eq 2 ] || { cat "$tmp/t.out"; fail "SIGTERM: exit $rc, want SYSTEM_FAILURE_EXIT_CODE 2"; }
grep -q "canceled" "$tmp/t.out" || fail "SIGTERM: no message"
sleep 0.3
pgrep -f "sleep 31[7]" >/dev/null && fail "the remote command survived SIGTERM"
echo "ok: SIGTERM stops the remote command, exit SYSTEM_FAILURE_EXIT_CODE"

# 6. cleanup releases everything
ge 1 -- cleanup >"$tmp/c.out" 2>&1 || { cat "$tmp/c.out"; fail "cleanup failed"; }
[ "$(claims)" -eq 0 ] || fail "claims left after cleanup"
[ "$(box_procs)" -eq 0 ] || fail "box processes left after cleanup"
[ -z "$(ls -A "$state/boxes")" ] || fail "box directory left after cleanup"
ls "$state/gitlab-executor" | grep -q "^$job1" && fail "job files left after cleanup: $(ls "$state/gitlab-executor")"
ge 1 -- cleanup >/dev/null 2>&1 || fail "a second cleanup failed"
echo "ok: cleanup releases (zero boxes, zero claims, zero job files)"

# 7. kill -9 of a run stage, then cleanup still releases
new_job 2
ge 2 -- config >"$tmp/j2.config"
proj=$(builds 2)
ge 2 -- prepare >"$tmp/p.out" 2>&1 || { cat "$tmp/p.out"; fail "job 2 prepare failed"; }
s2=$(script 2 step_script 'sleep 318')
rm -f "$tmp/driver.pid"
ge 2 -- run "$s2" step_script >"$tmp/k.out" 2>&1 &
pid=$!
for _ in $(seq 200); do pgrep -f "sleep 31[8]" >/dev/null && break; sleep 0.05; done
kill -9 "$(cat "$tmp/driver.pid")"; wait "$pid" 2>/dev/null || true
ge 2 -- cleanup >"$tmp/c2.out" 2>&1 || { cat "$tmp/c2.out"; fail "cleanup after kill -9 failed"; }
[ "$(claims)" -eq 0 ] || fail "claims left after cleanup of a killed stage"
[ "$(box_procs)" -eq 0 ] || fail "box processes left after cleanup of a killed stage"
pgrep -f "sleep 31[8]" >/dev/null && fail "the killed stage's command survived cleanup"
echo "ok: cleanup after kill -9 of a run stage releases"

# 8. a gate refusal at prepare: system failure, no source sent, nothing kept
new_job 3
job3=$(cat "$tmp/j3.id")
ge 3 TDX_RUNNER_CONFIG="$tmp/strict.json" -- config >"$tmp/j3.config"
proj=$(builds 3)
ge 3 TDX_RUNNER_CONFIG="$tmp/strict.json" -- prepare >"$tmp/g.out" 2>&1 && rc=0 || rc=$?
[ "$rc" -eq 2 ] || { cat "$tmp/g.out"; fail "refused gate: exit $rc, want SYSTEM_FAILURE_EXIT_CODE 2"; }
grep -q "allow_simulated is off" "$tmp/g.out" || { cat "$tmp/g.out"; fail "the refusal does not name the policy"; }
[ "$(claims)" -eq 0 ] || fail "a refused box left a claim"
[ "$(box_procs)" -eq 0 ] || fail "a refused box was kept running"
[ ! -e "$state/gitlab-executor/$job3.lease" ] || fail "a refused prepare left a job record"
ge 3 TDX_RUNNER_CONFIG="$tmp/strict.json" -- run "$(script 3 get_sources)" get_sources >"$tmp/g2.out" 2>&1 && rc=0 || rc=$?
[ "$rc" -eq 2 ] || fail "get_sources without a lease: exit $rc, want 2"
curl -fsS "$gl/_control/state" | python3 -c "
import json,sys; f=json.load(sys.stdin)['fetches']; assert not any(x['job']==$job3 for x in f), f" ||
	fail "source was fetched for a job whose box did not attest"
ge 3 TDX_RUNNER_CONFIG="$tmp/strict.json" -- cleanup >/dev/null 2>&1 || fail "cleanup of a refused job failed"
echo "ok: gate refusal at prepare: system failure, nothing fetched or sent, nothing kept"
echo PASS
