#!/usr/bin/env bash
# quickstart.sh - the README's first command: installs what is needed, builds
# tdx-runner (Release) into build/, and runs the main job on the embedded
# default, the `local` executor: `tdx-runner run` leases a box on this machine
# (its own sshd and a guest agent that issues simulated TDX quotes), refuses it
# unless its attestation verifies (simulated root allowed for `local`, with a
# warning), syncs this checkout into it, builds tdx-runner inside the box from
# the synced source, writes the attestation bundle and releases the box. The
# bundle is then re-verified offline with `tdx-runner verify`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
packaging/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTDXR_TESTS=OFF -DTDXR_WERROR=OFF >/dev/null
cmake --build build -j 2
bin=$root/build/agent/tdx-runner
state=$(mktemp -d /tmp/tdxr-quickstart-XXXXXX)
trap 'rm -rf "$state"' EXIT
printf '{"state_dir": "%s"}\n' "$state" >"$state/config.json"
echo
echo "== tdx-runner run -- (build tdx-runner inside the attested box)"
"$bin" run --config "$state/config.json" --bundle build/tdx-attestation.json -- \
	sh -c 'cmake -S . -B build-box -G Ninja -DTDXR_TESTS=OFF >/dev/null && cmake --build build-box -j 2 >/dev/null && ./build-box/agent/tdx-runner version'
echo
echo "== tdx-runner verify --allow-simulated build/tdx-attestation.json"
"$bin" verify --allow-simulated build/tdx-attestation.json | tail -1
