# shellcheck shell=bash disable=SC2154,SC2034 # E, bin, here: set by the caller; work_root etc.: used by it
# cvm_env.sh - sourced (not run) by cvm_e2e.sh and test_gitlab_phala.sh: the set-up for
# running tdx-runner against a CVM test server whose CVMs are real local boxes
# (phala_server.py / dstack_vmm_server.py --boxes; box_backend.py: sshd in a mount
# namespace, stunnel4 behind an SNI router, `tdx-runner guest-agent` with a shared
# simulator PKI whose collateral pcs_server.py serves as the PCCS).
#
# The caller sets E (phala|dstack), bin (the tdx-runner binary), here (tests/integration)
# and defines fail() before sourcing; optionally CVM_TMP_TAG (the temporary directory's
# name, default $E) and a function cvm_cleanup_hook (run first by the EXIT trap).
# This file SKIPs (exit 0 with a message) when the machine cannot host boxes, then sets
# PY tmp state boxes cfg srv_pid port base work_root, starts the server (its stdin is fd 9:
# closing it stops the server and its boxes), writes $cfg (state_dir, executor with the
# gateway, policy allowing only the simulated root, the PCCS), exports the API key and the
# short test timings, and defines the helpers below (ctl q live_cvms box_procs cvm_ids
# work_of calls fault clear_faults box_fault stuck claims trace leftovers no_leaks zero_bytes).
# Test-only: everything binds 127.0.0.1; the EXIT trap reaps, stops the server and kills
# whatever still names a box.

skip() { echo "SKIP: $*"; exit 0; }

[ "$(id -u)" -eq 0 ] || skip "needs root (boxes log in as root, as on a dstack dev image, and use mount namespaces)"
for t in /usr/sbin/sshd rsync ssh-keygen git unshare; do
	command -v "$t" >/dev/null 2>&1 || [ -x "$t" ] || skip "$t is not installed"
done
command -v stunnel4 >/dev/null 2>&1 || command -v stunnel >/dev/null 2>&1 || skip "stunnel4 is not installed"
unshare -m --propagation private true 2>/dev/null || skip "cannot create a mount namespace here (unshare -m)"
# pyenv's python3 may come first on PATH on dev machines; Debian's has python3-cryptography
PY=
for c in /usr/bin/python3 python3; do
	if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import cryptography' 2>/dev/null; then
		PY=$(command -v "$c")
		break
	fi
done
[ -n "$PY" ] || skip "python3-cryptography is not installed (packaging/install-deps.sh)"

tmp=$(mktemp -d "/tmp/tdxr-${CVM_TMP_TAG:-$E}-XXXXXX")
state=$tmp/s
boxes=$tmp/boxes
cfg=$tmp/cfg.json
srv_pid=
cleanup() {
	set +e
	declare -F cvm_cleanup_hook >/dev/null && cvm_cleanup_hook
	[ -f "$cfg" ] && "$bin" reap --all --config "$cfg" >/dev/null 2>&1
	exec 9>&- # the server sees EOF on stdin: it kills its boxes and exits
	for _ in $(seq 100); do kill -0 "$srv_pid" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$srv_pid" 2>/dev/null
	"$PY" "$here/box_backend.py" kill "$boxes" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

# ---- the server -----------------------------------------------------------------------
mkfifo "$tmp/srv.in"
if [ "$E" = phala ]; then
	"$PY" "$here/phala_server.py" --api-key e2e-test-key --boxes "$boxes" --tdxr "$bin" \
		--base-domain gateway.test --starting-polls 0 --watch-stdin \
		<"$tmp/srv.in" >"$tmp/srv.out" 2>"$tmp/srv.log" &
else
	"$PY" "$here/dstack_vmm_server.py" --boxes "$boxes" --tdxr "$bin" --base-domain gateway.test \
		--boot-polls 1 --remove-polls 0 --watch-stdin <"$tmp/srv.in" >"$tmp/srv.out" 2>"$tmp/srv.log" &
fi
srv_pid=$!
exec 9>"$tmp/srv.in"
for _ in $(seq 300); do grep -q '^PORT ' "$tmp/srv.out" 2>/dev/null && break; kill -0 "$srv_pid" 2>/dev/null || break; sleep 0.1; done
grep -q '^PORT ' "$tmp/srv.out" || fail "the $E test server did not start"
port=$(awk '/^PORT /{print $2}' "$tmp/srv.out")
base=http://127.0.0.1:$port

# config: the executor, the gateway (SNI router + test CA), the PCCS serving the simulator's
# collateral; the root is simulated, so the policy must allow it (nothing else is relaxed)
"$PY" - "$boxes/backend.json" "$E" "$base" "$state" "$cfg" 30 <<'EOF'
import json, sys
b = json.load(open(sys.argv[1]))
e, base, state, out, ready = sys.argv[2:7]
ex = {"kind": e, "ready_timeout_s": int(ready),
      "gateway": {"connect_to": b["connect_to"], "ca_file": b["ca_file"]}}
if e == "phala":
    ex["phala"] = {"api_url": base + "/api/v1"}
else:
    ex["dstack"] = {"vmm_url": base, "image": "dstack-dev-0.5.0"}
cfg = {"state_dir": state, "executor": ex,
       "policy": {"allow_simulated": True, "collateral": {"pccs_url": b["pccs_url"]}}}
json.dump(cfg, open(out, "w"), indent=1)
EOF
export PHALA_CLOUD_API_KEY=e2e-test-key
# short timings (the config file does not expose them): 2 s per call, quick polls
export TDXR_TEST_PHALA_TUNING='{"poll_ms":100,"timeout_ms":2000,"call_budget_ms":8000,"max_attempts":3,"backoff_ms":100,"backoff_cap_ms":400,"retry_after_cap_ms":3000}'
export TDXR_TEST_DSTACK_TUNING='{"poll_ms":100,"call_timeout_ms":2000,"retries":2,"remove_wait_ms":5000}'

# ---- helpers --------------------------------------------------------------------------
ctl() { "$PY" -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=30).read().decode())' "$base$1"; }
# q EXPR: evaluates EXPR on the server's view: s = /_control/stats (phala), or
# {"vms": /__vms, "boxes": /__boxes, "calls": /__calls} (dstack)
q() {
	"$PY" -c 'import json, sys, urllib.request
e, u, expr = sys.argv[1:4]
g = lambda p: json.loads(urllib.request.urlopen(u + p, timeout=30).read())
s = g("/_control/stats") if e == "phala" else {"vms": g("/__vms"), "boxes": g("/__boxes"), "calls": g("/__calls")}
print(eval(expr))' "$E" "$base" "$1"
}
if [ "$E" = phala ]; then
	live_cvms() { q 's["live"]'; }
	box_procs() { q 's["box_procs"]'; }
	cvm_ids() { q '" ".join(sorted(s["cvms"]))'; }
	# what reached its /var/volatile: "<entries held at delete> <writes seen by inotify>"
	work_of() { q "'%d %d' % (lambda w: (w.get('entries', -1), w.get('writes', -1)))(s['cvms']['$1']['work'] or {})"; }
	calls() { q "s['calls'].get('$1', 0)"; }
	fault() { ctl "/_control/fault?$1" >/dev/null; }
	clear_faults() { ctl /_control/clear >/dev/null; }
	box_fault() { ctl "/_control/set?box_fault=$1" >/dev/null; }
	stuck() { ctl "/_control/set?stuck=$1" >/dev/null; }
	work_root=/var/volatile/tdx-runner
else
	live_cvms() { q 'len(s["vms"])'; }
	box_procs() { q 's["boxes"]["box_procs"]'; }
	cvm_ids() { q '" ".join(sorted(s["boxes"]["work"]))'; }
	work_of() { q "'%d %d' % (lambda w: (w.get('entries', -1), w.get('writes', -1)))(s['boxes']['work'].get('$1') or {})"; }
	calls() { q "s['calls'].get('$1', 0)"; }
	fault() { ctl "/__fail?$1" >/dev/null; }
	clear_faults() { ctl /__clear_faults >/dev/null; }
	box_fault() { ctl "/__box_fault?f=$1" >/dev/null; }
	stuck() { ctl "/__stuck?on=$1" >/dev/null; }
	work_root=/var/volatile/tdxr-work
fi
claims() { ls -A "$state/leases" 2>/dev/null | grep -c '\.json$' || true; }
trace() { [ -z "${E2E_TRACE:-}" ] || echo "  $(date +%T.%N | cut -c1-12) $*" >&2; }

# leftovers WHAT: the server has no CVM, no box and no box process, no process names a box,
# and no claim is left (one python3 call: it waits up to 5 s for the server's box processes
# to go, then prints what is left); fails naming what is left
leftovers() {
	local left
	left=$("$PY" - "$E" "$base" "$boxes" "$state/leases" "$here" <<'PYEOF'
import json, os, sys, time, urllib.request
e, base, boxes, leases, here = sys.argv[1:6]
sys.path.insert(0, here)
import box_backend
get = lambda p: json.loads(urllib.request.urlopen(base + p, timeout=30).read())
end = time.time() + 5
while True:
    if e == "phala":
        s = get("/_control/stats")
        cvms, procs = s["live"], s["box_procs"]
    else:
        cvms, procs = len(get("/__vms")), get("/__boxes")["box_procs"]
    if procs == 0 or time.time() > end:
        break
    time.sleep(0.1)
named = len(box_backend.box_pids(boxes))
claims = len([f for f in os.listdir(leases) if f.endswith(".json")]) if os.path.isdir(leases) else 0
out = []
if cvms:
    out.append("%d CVM(s) on the server" % cvms)
if procs:
    out.append("%d box process(es)" % procs)
if named:
    out.append("%d process(es) naming a box" % named)
if claims:
    out.append("%d claim(s)" % claims)
print(", ".join(out))
PYEOF
	)
	[ -z "$left" ] || fail "$1: $left"
}

# no_leaks WHAT: after `tdx-runner reap`, nothing is left (leftovers)
no_leaks() {
	trace no_leaks "$1"
	"$bin" reap --config "$cfg" >"$tmp/reap" 2>&1 || { cat "$tmp/reap"; fail "$1: reap failed"; }
	leftovers "$1: left after reap"
	trace checked
}

# zero_bytes WHAT IDS_BEFORE: every CVM created since IDS_BEFORE received nothing
zero_bytes() {
	local id n new=0
	for id in $(cvm_ids); do
		case " $2 " in *" $id "*) continue ;; esac
		new=$((new + 1))
		n=$(work_of "$id")
		[ "$n" = "0 0" ] || fail "$1: the refused box $id was written to (entries, writes: $n): $(q "s")"
	done
	[ "$new" -ge 1 ] || fail "$1: no CVM was created"
}
