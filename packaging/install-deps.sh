#!/usr/bin/env bash
# install-deps.sh - installs everything tdx-runner needs to build and to run its
# whole test suite on Debian 12 (apt), plus the differential oracle
# @phala/dcap-qvl (pinned in tests/oracle/package-lock.json) from the npm
# registry into tests/oracle/node_modules. Idempotent: already-present packages
# are skipped, so it is cheap to call before every test run.
#   packaging/install-deps.sh          install what is missing (uses sudo when not root)
#   packaging/install-deps.sh --check  only report what is missing (exit 1 if anything is)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

pkgs=(
  # build
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  libssl-dev libjansson-dev libcurl4-openssl-dev libgit2-dev libssh2-1-dev libzip-dev zlib1g-dev libmicrohttpd-dev
  # tests (sshd, a TLS front door and rsync are real peers in the integration tests)
  libcmocka-dev python3 valgrind ca-certificates git openssh-server openssh-client stunnel4 rsync openssl curl
  # the Phala Cloud test server decrypts the encrypted env (X25519 + AES-GCM) to authorise the SSH key
  python3-cryptography
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ "${1:-}" = "--check" ]; then
  if [ ${#missing[@]} -gt 0 ]; then echo "missing: ${missing[*]}"; exit 1; fi
  [ -d "$here/tests/oracle/node_modules/@phala/dcap-qvl" ] || { echo "missing: tests/oracle/node_modules"; exit 1; }
  echo "all dependencies present"; exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The differential oracle, exactly as pinned by the lockfile.
if [ ! -d "$here/tests/oracle/node_modules/@phala/dcap-qvl" ]; then
  echo "install-deps: npm ci @phala/dcap-qvl into tests/oracle/node_modules"
  (cd "$here/tests/oracle" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "install-deps: done"
