#!/usr/bin/env bash
# test_sim_crosscheck.sh - differential check of attest/sim against an
# independent DCAP verifier: `test_sim --dump` writes every simulator scenario
# (UpToDate v4/v5/TD1.5, OutOfDate with advisories, revoked PCK, each corrupted
# signature, ...) and tests/oracle/sim_crosscheck.js verifies them with
# @phala/dcap-qvl trusting the simulator root. Skips (exit 0, with a message)
# when node or tests/oracle/node_modules/@phala/dcap-qvl is absent.
set -euo pipefail

src=${TDXR_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${TDXR_BUILD_DIR:-$src/build}
oracle=$src/tests/oracle
bin=$build/tests/test_sim

if ! command -v node >/dev/null 2>&1; then
	echo "SKIP: node is not installed; the dcap-qvl cross-check of attest/sim did not run"
	exit 0
fi
if [ ! -d "$oracle/node_modules/@phala/dcap-qvl" ]; then
	echo "SKIP: $oracle/node_modules/@phala/dcap-qvl is absent (npm ci --prefix tests/oracle); cross-check did not run"
	exit 0
fi
if [ ! -x "$bin" ]; then
	echo "FAIL: $bin is not built" >&2
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin" --dump "$tmp/scenarios"
NODE_PATH="$oracle/node_modules" node "$oracle/sim_crosscheck.js" "$tmp/scenarios"
