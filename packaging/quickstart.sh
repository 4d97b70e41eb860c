#!/usr/bin/env bash
# quickstart.sh - the README's first command: installs what is needed, builds
# tdx-runner (Release) into build/, and runs the main job on the embedded
# default. Today the main job is the attestation gate on simulated evidence:
# `tdx-runner simulate` produces a simulator-signed TDX quote, collateral and
# dstack event log and writes an attestation bundle; `tdx-runner verify`
# re-verifies that bundle offline, first refusing it (a simulated root is not
# Intel) and then accepting it with --allow-simulated. `tdx-runner run` on the
# `local` executor takes this place when the pipeline lands (docs/ROADMAP.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
packaging/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTDXR_TESTS=OFF -DTDXR_WERROR=OFF >/dev/null
cmake --build build -j 2
bin=build/agent/tdx-runner
echo
echo "== tdx-runner simulate --out build/attestation-bundle.json"
"$bin" simulate --out build/attestation-bundle.json --report-data "$(printf 'quickstart' | od -An -tx1 | tr -d ' \n')"
echo
echo "== tdx-runner verify build/attestation-bundle.json   (must refuse: simulated root)"
if "$bin" verify build/attestation-bundle.json | tail -2; then
  echo "ERROR: a simulated bundle was accepted without --allow-simulated" >&2
  exit 1
fi
echo
echo "== tdx-runner verify --allow-simulated build/attestation-bundle.json"
"$bin" verify --allow-simulated build/attestation-bundle.json
