#!/usr/bin/env bash
# test_cli.sh - the tdx-runner command line as users and scripts call it: every
# command has --help, exit codes 0/1/2 of verify, the --json contract, and the
# simulate -> verify bundle round trip (the README's first run).
set -euo pipefail
bin=${TDXR_BIN:?TDXR_BIN not set}
td=${TDXR_SHARED_TESTDATA:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
expect_rc() { # expect_rc WANT CMD...
	local want=$1; shift
	set +e; "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?; set -e
	[ "$rc" -eq "$want" ] || { cat "$tmp/out" "$tmp/err"; fail "'$*' exited $rc, want $want"; }
}

# help lists every command, and each has --help
"$bin" help >"$tmp/help"
for c in verify collateral simulate version help; do
	grep -q "^  $c " "$tmp/help" || fail "help does not list $c"
	expect_rc 0 "$bin" "$c" --help
	grep -q "usage: tdx-runner $c" "$tmp/out" || fail "$c --help prints no usage"
done
expect_rc 2 "$bin" no-such-command
expect_rc 2 "$bin"
expect_rc 2 "$bin" verify
expect_rc 2 "$bin" verify --quote /nonexistent --collateral /nonexistent
expect_rc 2 "$bin" verify --no-such-flag
expect_rc 2 "$bin" verify --accept NotAStatus x.json
echo "ok: help and usage errors"

# simulate -> bundle -> verify (refused without --allow-simulated, accepted with it)
expect_rc 0 "$bin" simulate --out "$tmp/b.json" --dir "$tmp/sim" --report-data 00ff
expect_rc 1 "$bin" verify "$tmp/b.json"
grep -q "allow_simulated is off" "$tmp/out" || fail "refusal does not name the policy switch"
expect_rc 0 "$bin" verify --allow-simulated --json "$tmp/b.json"
python3 - "$tmp/out" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
for k in ("ok", "status", "advisory_ids", "error", "steps", "mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3",
          "report_data", "tee_tcb_svn", "fmspc", "simulated"):
    assert k in v, "missing key " + k
assert v["ok"] is True and v["simulated"] is True and v["error"] is None
assert v["report_data"].startswith("00ff"), v["report_data"]
assert all(s["result"] in ("pass", "skip") for s in v["steps"])
PY
# the pieces written by --dir verify the same way through --quote/--collateral/--event-log/--root
expect_rc 0 "$bin" verify --quote "$tmp/sim/quote.bin" --collateral "$tmp/sim/collateral.json" \
	--event-log "$tmp/sim/event-log.json" --app-compose "$tmp/sim/app-compose.json" \
	--root "$tmp/sim/root.der" --allow-simulated
expect_rc 1 "$bin" verify --quote "$tmp/sim/quote.bin" --collateral "$tmp/sim/collateral.json" \
	--root "$tmp/sim/root.der" --allow-simulated --expect-app-id 0000000000000000000000000000000000000000
grep -q "identity" "$tmp/out" || fail "app id mismatch not reported at the identity step"
# a corrupted bundle is an error (2) or a failed verdict (1), never a pass
sed 's/"quote": "04/"quote": "05/' "$tmp/b.json" >"$tmp/bad.json"
set +e; "$bin" verify --allow-simulated "$tmp/bad.json" >/dev/null 2>&1; rc=$?; set -e
[ "$rc" -ne 0 ] || fail "a corrupted bundle verified"
echo "ok: simulate / verify bundle round trip"

if [ -n "$td" ] && [ -f "$td/tdx/manifest.json" ]; then
	q=$td/tdx/dcap-qvl/tdx_quote c=$td/tdx/dcap-qvl/tdx_quote_collateral.json
	expect_rc 0 "$bin" verify --quote "$q" --collateral "$c" --now 1751623200
	grep -q "^VERIFIED: TCB UpToDate" "$tmp/out" || fail "text output"
	expect_rc 1 "$bin" verify --quote "$q" --collateral "$c" --now 1900000000 --json
	python3 -c "import json,sys; v=json.load(open('$tmp/out')); assert v['ok'] is False and v['error'].startswith('crl:'), v['error']"
	# hex quote files with 0x and whitespace
	{ printf '0x'; od -An -tx1 -v "$q"; } >"$tmp/q.hex"
	expect_rc 0 "$bin" verify --quote "$tmp/q.hex" --collateral "$c" --now 1751623200
	# a GetQuote response as --event-log supplies the quote too
	expect_rc 0 "$bin" verify --event-log "$td/tdx/dstack/verifier-quote-report.json" \
		--collateral "$td/tdx/dcap-qvl/tdx_quote_outdated_collateral.json" --now 1772704800
	grep -q "rtmr_replay" "$tmp/out" || fail "no rtmr_replay step"
	echo "ok: real vectors"
else
	echo "SKIP: real-vector part (no shared testdata)"
fi
echo PASS
