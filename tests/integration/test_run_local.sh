#!/usr/bin/env bash
# test_run_local.sh - `tdx-runner run` end to end on the local executor (real
# sshd, real guest agent, real rsync through `tdx-runner rsh`): output and exit
# codes, what is synced, the attestation bundle, a refused gate sends nothing,
# SIGINT releases the box, and after kill -9 `tdx-runner reap` leaves nothing.
set -euo pipefail
bin=${TDXR_BIN:?TDXR_BIN not set}
for t in /usr/sbin/sshd rsync ssh-keygen python3 git; do
	command -v "$t" >/dev/null 2>&1 || [ -x "$t" ] || { echo "SKIP: $t is not installed"; exit 0; }
done
tmp=$(mktemp -d /tmp/tdxr-run-XXXXXX)
state=$tmp/s
cleanup() { "$bin" reap --all --config "$tmp/cfg.json" >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
printf '{"state_dir": "%s"}' "$state" >"$tmp/cfg.json"
printf '{"state_dir": "%s", "policy": {"allow_simulated": false}}' "$state" >"$tmp/strict.json"
# Processes that reference a box (the [s] keeps grep from matching its own command line).
box_procs() { grep -ls "$state/boxe[s]/" /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null | wc -l; }

repo=$tmp/repo
mkdir -p "$repo/sub dir"
cd "$repo"
git init -q
printf 'build.log\n' >.gitignore
printf 'tracked\n' >tracked.txt
printf 'spaces\n' >"sub dir/a file.txt"
git add .gitignore tracked.txt
printf 'untracked but not ignored\n' >untracked.txt
printf 'ignored\n' >build.log

# 1. output, exit code, what is synced, bundle
out=$("$bin" run --config "$tmp/cfg.json" -- sh -c 'ls -A; cat "sub dir/a file.txt"; exit 7' 2>"$tmp/err") && rc=0 || rc=$?
[ "$rc" -eq 7 ] || { cat "$tmp/err"; fail "exit code $rc, want 7"; }
for f in tracked.txt untracked.txt .gitignore "sub dir"; do echo "$out" | grep -qx "$f" || fail "$f not synced: $out"; done
echo "$out" | grep -qx build.log && fail "an ignored file was synced"
echo "$out" | grep -qx spaces || fail "file with spaces in its path not synced"
grep -q "attested (SIMULATED" "$tmp/err" || fail "no attestation summary"
[ -f tdx-attestation.json ] || fail "no attestation bundle"
"$bin" verify tdx-attestation.json >/dev/null 2>&1 && fail "simulated bundle verified without --allow-simulated"
"$bin" verify --allow-simulated tdx-attestation.json >/dev/null || fail "bundle does not re-verify"
rm -f tdx-attestation.json
[ "$(box_procs)" -eq 0 ] || fail "box processes left after run"
[ -z "$(ls -A "$state/boxes")" ] || fail "box directory left after run"
echo "ok: run, exit code, sync set, bundle, release"

# 2. artifacts come back
"$bin" run --config "$tmp/cfg.json" --artifacts out --artifacts-dir "$tmp/art" -- sh -c 'mkdir -p out && echo built >out/result.txt' 2>/dev/null
[ "$(cat "$tmp/art/out/result.txt")" = built ] || fail "artifact not copied back"
echo "ok: artifacts"

# 3. a refused gate sends nothing (the box is kept to look inside, then reaped)
"$bin" run --config "$tmp/strict.json" --keep --bundle "$tmp/refused.json" -- true 2>"$tmp/err" && rc=0 || rc=$?
[ "$rc" -eq 124 ] || { cat "$tmp/err"; fail "refused gate exit $rc, want 124"; }
grep -q "allow_simulated is off" "$tmp/err" || fail "the refusal does not name the policy"
for w in "$state"/boxes/*/work; do [ -z "$(ls -A "$w")" ] || fail "source reached a box that did not attest: $(ls -A "$w")"; done
python3 -c "import json,sys; v=json.load(open('$tmp/refused.json'))['verdict']; assert not v['ok'] and v['error'].startswith('root:')"
"$bin" reap --config "$tmp/cfg.json" | grep -q "1 lease(s) reaped" || fail "kept box not reaped"
echo "ok: refused gate sends nothing, bundle records the refusal"

# 4. SIGINT while the command runs: cancelled, released
"$bin" run --config "$tmp/cfg.json" -- sleep 60 2>"$tmp/err" &
pid=$!
for _ in $(seq 100); do grep -q "sync      done" "$tmp/err" && break; sleep 0.1; done
sleep 0.5
kill -INT "$pid"
wait "$pid" && rc=0 || rc=$?
[ "$rc" -ne 0 ] || fail "a cancelled run exited 0"
[ "$(box_procs)" -eq 0 ] || fail "box processes left after SIGINT"
[ -z "$(ls -A "$state/leases")" ] || fail "lease claim left after SIGINT"
echo "ok: SIGINT cancels and releases"

# 5. kill -9 mid-run: the claim stays; reap releases everything
"$bin" run --config "$tmp/cfg.json" -- sleep 60 2>"$tmp/err" &
pid=$!
for _ in $(seq 100); do grep -q "sync      done" "$tmp/err" && break; sleep 0.1; done
sleep 0.5
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
"$bin" leases --config "$tmp/cfg.json" --json | python3 -c "import json,sys; l=json.load(sys.stdin); assert len(l)==1 and not l[0]['live'], l"
[ "$(box_procs)" -gt 0 ] || fail "expected the orphaned box to still run"
"$bin" reap --config "$tmp/cfg.json" --dry-run | grep -q "would reap" || fail "reap --dry-run lists nothing"
"$bin" reap --config "$tmp/cfg.json" | grep -q "1 lease(s) reaped" || fail "reap did not release the orphan"
[ "$(box_procs)" -eq 0 ] || fail "box processes left after reap"
[ -z "$(ls -A "$state/boxes")" ] || fail "box directory left after reap"
echo "ok: kill -9 then reap leaves nothing"

# 5b. warmup -> run --lease (twice: the box is re-attested, the second sync is incremental) -> stop
lease=$("$bin" warmup --config "$tmp/cfg.json" --ttl 600 2>"$tmp/err") || { cat "$tmp/err"; fail "warmup failed"; }
case "$lease" in l-*) ;; *) fail "warmup printed '$lease', want a lease id" ;; esac
"$bin" leases --config "$tmp/cfg.json" --json | python3 -c "
import json,sys; l=json.load(sys.stdin); assert len(l)==1 and l[0]['state']=='kept' and not l[0]['live'] and l[0]['keep_until']>0, l"
"$bin" reap --config "$tmp/cfg.json" | grep -q "1 kept lease(s) left alone" || fail "reap touched a kept lease"
[ "$(box_procs)" -gt 0 ] || fail "the kept box is gone"
"$bin" run --config "$tmp/cfg.json" --lease "$lease" --bundle "$tmp/b1.json" -- sh -c 'echo first >state.txt; exit 3' 2>"$tmp/err" && rc=0 || rc=$?
[ "$rc" -eq 3 ] || { cat "$tmp/err"; fail "run --lease exit $rc, want 3"; }
grep -q "attested" "$tmp/err" || fail "run --lease did not attest the kept box again"
out=$("$bin" run --config "$tmp/cfg.json" --lease "$lease" --bundle "$tmp/b2.json" -- cat state.txt 2>"$tmp/err") || { cat "$tmp/err"; fail "second run --lease failed"; }
[ "$out" = first ] || fail "the kept box lost its state between runs: '$out'"
python3 -c "
import json; a=json.load(open('$tmp/b1.json'))['meta']; b=json.load(open('$tmp/b2.json'))['meta']
assert a['lease_id'] == b['lease_id'] == '$lease' and len(a['nonce']) == 64 and a['nonce'] != b['nonce'], (a, b)" || fail "the two runs on a kept box did not each attest it with a fresh nonce"
"$bin" leases --config "$tmp/cfg.json" --json | python3 -c "import json,sys; l=json.load(sys.stdin); assert len(l)==1 and l[0]['state']=='kept', l"
"$bin" stop --config "$tmp/cfg.json" "$lease" | grep -qx "released $lease" || fail "stop did not release $lease"
[ "$(box_procs)" -eq 0 ] || fail "box processes left after stop"
[ -z "$(ls -A "$state/leases")" ] || fail "claim left after stop"
"$bin" stop --config "$tmp/cfg.json" "$lease" 2>/dev/null && fail "stop of a released lease succeeded"
# a kept lease past its ttl is reaped; --all reaps kept ones at once
lease=$("$bin" warmup --config "$tmp/cfg.json" --ttl 1 2>/dev/null) || fail "warmup --ttl 1 failed"
sleep 1.2
"$bin" reap --config "$tmp/cfg.json" | grep -q "1 lease(s) reaped" || fail "an expired kept lease was not reaped"
lease=$("$bin" warmup --config "$tmp/cfg.json" --ttl 0 2>/dev/null) || fail "warmup --ttl 0 failed"
"$bin" reap --config "$tmp/cfg.json" --all | grep -q "1 lease(s) reaped" || fail "reap --all left a kept lease"
[ "$(box_procs)" -eq 0 ] || fail "box processes left after reap --all"
# a kept box that no longer passes the gate (here: a stricter policy) is refused and destroyed
lease=$("$bin" warmup --config "$tmp/cfg.json" 2>/dev/null) || fail "warmup failed"
"$bin" run --config "$tmp/strict.json" --lease "$lease" -- true 2>"$tmp/err" && rc=0 || rc=$?
[ "$rc" -eq 124 ] || { cat "$tmp/err"; fail "run --lease on a refused box: exit $rc, want 124"; }
[ "$(box_procs)" -eq 0 ] || fail "a kept box that failed the gate was not destroyed"
[ -z "$(ls -A "$state/leases")" ] || fail "claim left after a refused run --lease"
echo "ok: warmup, run --lease (re-attested, state kept), stop, reap of expired and --all"

# 6. the crash matrix: kill -9 right after each recorded pipeline state
for st in created ready attested synced running releasing; do
	TDXR_TEST_STALL_AT=$st "$bin" run --config "$tmp/cfg.json" -- true 2>"$tmp/err" &
	pid=$!
	for _ in $(seq 200); do grep -q "test stall at $st" "$tmp/err" && break; sleep 0.05; done
	grep -q "test stall at $st" "$tmp/err" || { cat "$tmp/err"; fail "never reached state $st"; }
	kill -9 "$pid"
	wait "$pid" 2>/dev/null || true
	"$bin" reap --config "$tmp/cfg.json" >"$tmp/reap" || { cat "$tmp/reap"; fail "reap failed after a crash at $st"; }
	[ "$(box_procs)" -eq 0 ] || fail "box processes left after a crash at $st"
	[ -z "$(ls -A "$state/boxes")" ] || fail "box directory left after a crash at $st"
	[ -z "$(ls -A "$state/leases")" ] || fail "claim left after a crash at $st"
done
echo "ok: kill -9 at every pipeline state, then reap: zero boxes, zero processes, zero claims"
echo PASS
