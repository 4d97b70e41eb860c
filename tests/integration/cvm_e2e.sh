#!/usr/bin/env bash
# cvm_e2e.sh EXECUTOR - `tdx-runner run --executor phala|dstack` end to end against the
# contract test server (phala_server.py / dstack_vmm_server.py) with --boxes: every CVM
# it creates is a real local box (box_backend.py: sshd in its own mount namespace,
# stunnel4 behind an SNI router, `tdx-runner guest-agent` with a shared simulator PKI
# whose collateral pcs_server.py serves as the PCCS, so the gate verifies for real).
# Run by test_run_phala.sh and test_run_dstack.sh (ctest globs test_*.sh, not this).
#
#  1. success: the command's exit code, what reached the box, artifacts, the bundle
#     re-verifies, the CVM is deleted, no box process is left;
#  2. faults: API 5xx, 429 + Retry-After, timeouts (before and after the server acted),
#     a CVM stuck starting, deletes failing (once; and until reap), a tampered event log,
#     a wrong app id, a replayed quote: each names its step, exits 124 (gate) or 125
#     (infrastructure), a refused box received zero bytes, and after `tdx-runner reap`
#     no CVM, box process or claim is left;
#  3. crashes: kill -9 of `run` inside create and right after each recorded state, then
#     reap: zero live CVMs, zero box processes, zero claims.
# Needs root (the boxes log in root and use mount namespaces), sshd, stunnel4, unshare,
# rsync, git and python3 with python3-cryptography; SKIPs with a message otherwise.
set -euo pipefail
E=${1:?usage: cvm_e2e.sh phala|dstack}
bin=${TDXR_BIN:?TDXR_BIN not set}
src=${TDXR_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
here=$src/tests/integration
SECONDS=0

fail() {
	echo "FAIL: $*"
	[ -f "${tmp:-/nonexistent}/err" ] && sed 's/^/  run: /' "$tmp/err" | tail -25
	[ -f "${tmp:-/nonexistent}/reap" ] && sed 's/^/  reap: /' "$tmp/reap" | tail -5
	[ -f "${tmp:-/nonexistent}/srv.log" ] && sed 's/^/  server: /' "$tmp/srv.log" | tail -15
	exit 1
}

# the checks (SKIP), the server, $cfg, the helpers (ctl q live_cvms box_procs cvm_ids work_of
# calls fault clear_faults box_fault stuck claims trace no_leaks zero_bytes): cvm_env.sh
# shellcheck source=tests/integration/cvm_env.sh
. "$here/cvm_env.sh"
sed 's/"ready_timeout_s": 30/"ready_timeout_s": 2/' "$cfg" >"$tmp/cfg-short.json"

# run [CONFIG] -- ARGS: tdx-runner run; sets rc, stdout in $tmp/out, stderr in $tmp/err
run() {
	trace run "$@"
	local c=$cfg
	[ "${1:-}" != "--" ] && { c=$1; shift; }
	shift
	(cd "$repo" && exec "$bin" run --config "$c" --executor "$E" "$@") >"$tmp/out" 2>"$tmp/err" && rc=0 || rc=$?
}
expect_rc() { [ "$rc" -eq "$1" ] || fail "$2: exit code $rc, want $1"; }
expect_err() { grep -q -- "$1" "$tmp/err" || fail "$2: stderr does not say '$1'"; }

# ---- the repository -------------------------------------------------------------------
repo=$tmp/repo
mkdir -p "$repo/sub dir"
cd "$repo"
git init -q
printf 'build.log\n' >.gitignore
printf 'tracked\n' >tracked.txt
printf 'spaces\n' >"sub dir/a file.txt"
git add .gitignore tracked.txt "sub dir/a file.txt"
printf 'ignored\n' >build.log
cd "$tmp"

# "bad" --test-fault is refused without TDXR_TEST_FAULTS=1
"$bin" guest-agent --socket "$tmp/x.sock" --box-dir "$tmp/x" --test-fault replay-quote 2>"$tmp/err" && fail "guest-agent accepted --test-fault without TDXR_TEST_FAULTS=1"
expect_err "TDXR_TEST_FAULTS=1" "guest-agent --test-fault"

# ---- 1. success end to end ------------------------------------------------------------
before=$(cvm_ids)
run -- --artifacts out --artifacts-dir "$tmp/art" --bundle "$tmp/bundle.json" -- \
	sh -c 'pwd; ls -A; cat "sub dir/a file.txt"; mkdir -p out && echo built >out/result.txt; exit 7'
expect_rc 7 "success run"
grep -qx "$work_root" "$tmp/out" || fail "the command did not run in $work_root: $(head -3 "$tmp/out")"
for f in tracked.txt .gitignore "sub dir" spaces; do grep -qx "$f" "$tmp/out" || fail "$f did not reach the box"; done
grep -qx build.log "$tmp/out" && fail "an ignored file reached the box"
[ "$(cat "$tmp/art/out/result.txt" 2>/dev/null)" = built ] || fail "the artifact did not come back"
expect_err "attested (SIMULATED root of trust" "success run"
"$bin" verify --allow-simulated "$tmp/bundle.json" >"$tmp/verify" 2>&1 || { cat "$tmp/verify"; fail "the bundle does not re-verify"; }
grep -q 'pass identity' "$tmp/verify" || fail "bundle verification has no identity step"
"$bin" verify "$tmp/bundle.json" >/dev/null 2>&1 && fail "a simulated bundle verified without --allow-simulated"
"$PY" - "$tmp/bundle.json" <<'EOF' || fail "the bundle does not record the fetched collateral and a passing verdict"
import json, sys
b = json.load(open(sys.argv[1]))
v = b["verdict"]
assert v["ok"] and v["simulated"], v
assert b.get("collateral"), "no collateral in the bundle"
EOF
n=$(live_cvms); [ "$n" -eq 0 ] || fail "the CVM was not deleted on the server ($n live)"
for _ in $(seq 50); do [ "$(box_procs)" -eq 0 ] && break; sleep 0.1; done
[ "$(box_procs)" -eq 0 ] || fail "box processes left after a successful run"
for id in $(cvm_ids); do
	case " $before " in *" $id "*) continue ;; esac
	read -r ent wr <<<"$(work_of "$id")"
	[ "$ent" -gt 0 ] && [ "$wr" -gt 0 ] || fail "the success box recorded no writes ($ent entries, $wr writes): the recorder is blind"
done
no_leaks "success"
echo "ok: $E run end to end: exit code 7, tree in $work_root, artifact back, bundle verifies, CVM deleted"

# ---- 2. faults ------------------------------------------------------------------------
if [ "$E" = phala ]; then
	# 5xx on idempotent calls: retried, the run succeeds
	p0=$(calls provision)
	fault "op=provision&status=502&count=1"
	fault "op=state&status=500&count=2"
	run -- -- true
	expect_rc 0 "transient 5xx"
	[ "$(calls provision)" -eq $((p0 + 2)) ] || fail "a provision that got 502 was not retried"
	no_leaks "transient 5xx"
	echo "ok: 500/502 retried"
	# 5xx that does not stop: the run fails at create, nothing is left
	fault "op=provision&status=500&count=50"
	run -- -- true
	clear_faults
	expect_rc 125 "persistent 500"
	expect_err "provision (POST /cvms/provision): HTTP 500" "persistent 500"
	no_leaks "persistent 500"
	echo "ok: persistent 500 -> 125 naming the call"
	# POST /cvms answered 500 after the CVM was made: not repeated; release finds it by name
	fault "op=create&status=500&after=1"
	run -- -- true
	expect_rc 125 "create 500 after acting"
	expect_err "create (POST /cvms): HTTP 500" "create 500 after acting"
	[ "$(calls create)" -ge 1 ] || fail "no create call"
	no_leaks "create 500 after acting"
	echo "ok: create answered 500 after acting -> 125, the CVM found by name and deleted"
	# 429 with Retry-After: honoured
	p0=$(calls provision)
	fault "op=provision&status=429&retry_after=1&count=1"
	t0=$(date +%s%N)
	run -- -- true
	t1=$(date +%s%N)
	expect_rc 0 "429"
	[ "$(calls provision)" -eq $((p0 + 2)) ] || fail "429 not retried once"
	[ $(((t1 - t0) / 1000000)) -ge 1000 ] || fail "Retry-After: 1 not honoured"
	no_leaks "429"
	echo "ok: 429 + Retry-After honoured"
	# a call that times out (server stalls 3 s, client waits 2 s): retried
	fault "op=state&hang=3&status=503&count=1"
	run -- -- true
	expect_rc 0 "state timeout"
	no_leaks "state timeout"
	echo "ok: a timed-out state call retried"
	# POST /cvms times out after the server made the CVM: not repeated, found by name, deleted
	fault "op=create&after=1&hang=4&status=500"
	run -- -- true
	expect_rc 125 "create timeout"
	expect_err "create (POST /cvms)" "create timeout"
	no_leaks "create timeout"
	echo "ok: create timed out after acting -> 125, no duplicate, nothing left"
else
	# 5xx on GetInfo: retried, the run succeeds
	fault "method=GetInfo&status=500&count=2"
	run -- -- true
	expect_rc 0 "transient 5xx"
	no_leaks "transient 5xx"
	echo "ok: 500 retried"
	# CreateVm keeps failing without acting: 125 naming it, nothing left
	fault "method=CreateVm&status=500&count=50"
	run -- -- true
	clear_faults
	expect_rc 125 "persistent 500"
	expect_err "CreateVm" "persistent 500"
	no_leaks "persistent 500"
	echo "ok: persistent 500 -> 125 naming the call"
	# CreateVm answered 500 after acting: the VM is adopted, not created twice
	c0=$(q 's["calls"]["__created"]')
	fault "method=CreateVm&status=500&count=1&mode=after"
	run -- -- true
	expect_rc 0 "CreateVm 500 after acting"
	[ "$(q 's["calls"]["__created"]')" -eq $((c0 + 1)) ] || fail "CreateVm 500 after acting: a second VM was created"
	no_leaks "CreateVm 500 after acting"
	echo "ok: CreateVm 500 after acting -> adopted, one VM"
	echo "ok: 429 + Retry-After: n/a (the VMM API has no rate limiting)"
	# a GetInfo that never answers: the client times out (2 s) and retries
	fault "method=GetInfo&mode=hang&count=1"
	run -- -- true
	expect_rc 0 "GetInfo timeout"
	no_leaks "GetInfo timeout"
	echo "ok: a timed-out GetInfo retried"
	# CreateVm times out after the VMM made the VM: adopted, not created twice
	c0=$(q 's["calls"]["__created"]')
	fault "method=CreateVm&mode=afterhang&count=1"
	run -- -- true
	expect_rc 0 "CreateVm timeout after acting"
	[ "$(q 's["calls"]["__created"]')" -eq $((c0 + 1)) ] || fail "CreateVm timeout: a second VM was created"
	no_leaks "CreateVm timeout after acting"
	echo "ok: CreateVm timed out after acting -> adopted, one VM"
fi

# stuck starting: the ready deadline (2 s) ends it; 125 naming the wait; the CVM deleted
stuck 1
run "$tmp/cfg-short.json" -- -- true
stuck 0
expect_rc 125 "stuck CVM"
if [ "$E" = phala ]; then expect_err "not running within" "stuck CVM"; else expect_err "not ready after" "stuck CVM"; fi
[ "$(live_cvms)" -eq 0 ] || fail "stuck CVM: not deleted by the run's release"
no_leaks "stuck CVM"
echo "ok: CVM stuck starting -> 125 at the ready deadline, deleted"

# delete failing once: retried within the run
if [ "$E" = phala ]; then fault "op=delete&status=500&count=1"; else fault "method=RemoveVm&status=500&count=1"; fi
run -- -- true
expect_rc 0 "delete failing once"
[ "$(live_cvms)" -eq 0 ] || fail "delete failing once: CVM left after the run"
no_leaks "delete failing once"
echo "ok: a delete failing once is retried"

# delete failing for the whole run: the claim stays, reap cleans up afterwards
if [ "$E" = phala ]; then fault "op=delete&status=500&count=100"; else fault "method=RemoveVm&status=500&count=100"; fi
run -- -- true
clear_faults
expect_rc 125 "delete failing"
expect_err "release" "delete failing"
[ "$(live_cvms)" -eq 1 ] || fail "delete failing: expected the CVM to outlive the run"
[ "$(claims)" -eq 1 ] || fail "delete failing: the claim did not stay for reap"
no_leaks "delete failing, then reap"
echo "ok: a delete failing for the whole run -> 125, claim kept, reap deletes it"

# the gate: each lie is refused (124) with its step named, and not one byte reaches the box
for f in tamper-eventlog:rtmr_replay wrong-app-id:identity replay-quote:report_data; do
	before=$(cvm_ids)
	box_fault "${f%%:*}"
	run -- --bundle "$tmp/refused.json" -- true
	box_fault none
	expect_rc 124 "${f%%:*}"
	expect_err "gate: attestation refused at ${f##*:}" "${f%%:*}"
	zero_bytes "${f%%:*}" "$before"
	"$PY" -c 'import json, sys; v = json.load(open(sys.argv[1]))["verdict"]; assert not v["ok"] and v["error"].startswith(sys.argv[2]), v["error"]' \
		"$tmp/refused.json" "${f##*:}" || fail "${f%%:*}: the bundle does not record the refusal"
	no_leaks "${f%%:*}"
	echo "ok: ${f%%:*} -> 124 at ${f##*:}, zero bytes reached the box"
done

# the simulated root is accepted only because the policy says so: without it, refused at root
sed 's/"allow_simulated": true/"allow_simulated": false/' "$cfg" >"$tmp/cfg-strict.json"
before=$(cvm_ids)
run "$tmp/cfg-strict.json" -- -- true
expect_rc 124 "allow_simulated false"
expect_err "gate: attestation refused at root" "allow_simulated false"
zero_bytes "allow_simulated false" "$before"
no_leaks "allow_simulated false"
echo "ok: allow_simulated false -> 124 at root (the gate is not bypassed), zero bytes reached the box"

# ---- 3. crashes -----------------------------------------------------------------------
# kill -9 while the create call is in flight (the server has made the CVM, the claim has no id)
if [ "$E" = phala ]; then fault "op=create&after=1&hang=30&status=500"; else fault "method=CreateVm&mode=afterhang&count=1"; fi
(cd "$repo" && exec "$bin" run --config "$cfg" --executor "$E" -- true) >/dev/null 2>"$tmp/err" &
pid=$!
for _ in $(seq 200); do [ "$(live_cvms)" -ge 1 ] && break; sleep 0.05; done
[ "$(live_cvms)" -ge 1 ] || fail "crash in create: the server never made the CVM"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
clear_faults
no_leaks "kill -9 inside create"
for st in created ready attested synced running collecting releasing; do
	(cd "$repo" && TDXR_TEST_STALL_AT=$st exec "$bin" run --config "$cfg" --executor "$E" --artifacts tracked.txt \
		--artifacts-dir "$tmp/art2" -- true) >/dev/null 2>"$tmp/err" &
	pid=$!
	for _ in $(seq 300); do grep -q "test stall at $st" "$tmp/err" && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
	grep -q "test stall at $st" "$tmp/err" || fail "never reached state $st"
	trace "stalled at $st"
	kill -9 "$pid"
	wait "$pid" 2>/dev/null || true
	[ "$(claims)" -eq 1 ] || fail "crash at $st: no claim left for reap"
	no_leaks "kill -9 at $st"
done
echo "ok: kill -9 inside create and after created/ready/attested/synced/running/collecting/releasing, then reap: zero CVMs, box processes, claims"

echo "PASS ($E, ${SECONDS} s)"
