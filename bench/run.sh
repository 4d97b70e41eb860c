#!/usr/bin/env bash
# run.sh - the attestation benchmark: builds bench_verify (Release, build-bench),
# then for every quote/collateral pair the shared manifest expects to verify runs,
# in one go and on the same inputs with the same N:
#   ours        bench_verify --mode verify      attest_verify(), collateral verified once
#   ours-cold   bench_verify --mode verify-cold attest_verify(), collateral re-verified per call
#   floor       bench_verify --mode floor       the 4 per-quote ECDSA checks no verifier skips
#   floor-full  bench_verify --mode floor-full  + collateral signatures, chains and CRLs
#   dcap-qvl    node bench_dcap_qvl.js          @phala/dcap-qvl 0.3.9
# and, when valgrind is installed, callgrind instructions per op (ours, floor) as a
# second, noise-free metric. Writes bench/RESULTS.md (or -o FILE).
#
# usage: bench/run.sh [-n N] [-o FILE] [--no-callgrind]
# Env: TDXR_SHARED_TESTDATA (default ../shared/testdata next to the source tree),
#      BENCH_BUILD_DIR (default build-bench). Timings are reported, never judged.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BENCH_BUILD_DIR:-$src/build-bench}
testdata=${TDXR_SHARED_TESTDATA:-$src/../shared/testdata}
n=300
out=$src/bench/RESULTS.md
callgrind=1
cmdline="bench/run.sh${*:+ $*}"

while [[ $# -gt 0 ]]; do
	case $1 in
	-n) n=$2; shift 2 ;;
	-o) out=$2; shift 2 ;;
	--no-callgrind) callgrind=0; shift ;;
	-h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
[[ $n =~ ^[0-9]+$ && $n -ge 5 ]] || { echo "run.sh: -n needs an integer >= 5" >&2; exit 2; }
[[ -f $testdata/tdx/manifest.json ]] || { echo "run.sh: no shared testdata at $testdata" >&2; exit 2; }
command -v node >/dev/null || { echo "run.sh: node is required for the dcap-qvl baseline" >&2; exit 2; }
[[ -f $src/tests/oracle/node_modules/@phala/dcap-qvl/package.json ]] ||
	{ echo "run.sh: install the baseline first: npm ci --prefix $src/tests/oracle" >&2; exit 2; }
command -v valgrind >/dev/null || callgrind=0

cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTDXR_TESTS=OFF \
	-DTDXR_WERROR=OFF >/dev/null
ninja -C "$build" -j2 bench_verify >&2

export BENCH_BIN=$build/bench/bench_verify BENCH_JS=$src/bench/bench_dcap_qvl.js \
	BENCH_N=$n BENCH_OUT=$out BENCH_CALLGRIND=$callgrind BENCH_CMD=$cmdline \
	BENCH_SRC=$src TESTDATA=$testdata
exec python3 - <<'PY'
import datetime
import json
import os
import platform
import re
import subprocess
import sys

env = os.environ
tdx = os.path.join(env["TESTDATA"], "tdx")
n = int(env["BENCH_N"])
bin_, js = env["BENCH_BIN"], env["BENCH_JS"]


def run_json(argv, timeout=3600):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    for line in reversed(p.stdout.splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return {"ok": False, "error": (p.stderr.strip() or "no output (rc=%d)" % p.returncode)[-200:]}


def callgrind_ir(argv):
    """Instructions executed by argv under callgrind (None when unavailable)."""
    p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] + argv,
                       capture_output=True, text=True, timeout=3600)
    m = re.search(r"Collected\s*:\s*(\d+)", p.stderr)
    return int(m.group(1)) if m and p.returncode == 0 else None


def ir_per_op(mode, q, c, now, k=10):
    """(Ir at 1+k ops - Ir at 1 op) / k: the per-op cost without set-up."""
    base = [bin_, "--mode", mode, "--batches", "1", "--warmup", "0"]
    a = callgrind_ir(base + ["-n", "1", q, c, now])
    b = callgrind_ir(base + ["-n", str(1 + k), q, c, now])
    return None if a is None or b is None else (b - a) / k


def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, shell=True).stdout.strip()
    except OSError:
        return ""


manifest = json.load(open(os.path.join(tdx, "manifest.json")))
rows = []
for e in manifest["quote_verification"]:
    if e["expect"]["verdict"] != "verify":
        continue
    q = os.path.normpath(os.path.join(tdx, e["quote"]))
    c = os.path.normpath(os.path.join(tdx, e["collateral"]))
    if not (os.path.isfile(q) and os.path.isfile(c)):
        continue
    now = str(e["now"])
    r = {"quote": e["quote"], "collateral": e["collateral"], "expect": e["expect"]}
    sys.stderr.write("bench: %s + %s\n" % (e["quote"], os.path.basename(c)))
    r["ours"] = run_json([bin_, "--mode", "verify", "-n", str(n), q, c, now])
    r["ours_new"] = run_json([bin_, "--mode", "verify-new", "-n", str(n), q, c, now])
    r["ours_cold"] = run_json([bin_, "--mode", "verify-cold", "-n", str(n), q, c, now])
    r["floor"] = run_json([bin_, "--mode", "floor", "-n", str(n), q, c, now])
    r["floor_full"] = run_json([bin_, "--mode", "floor-full", "-n", str(n), q, c, now])
    r["js"] = run_json(["node", js, "-n", str(n), q, c, now])
    if env["BENCH_CALLGRIND"] == "1":
        r["ir_ours"] = ir_per_op("verify", q, c, now) if r["ours"].get("ok") else None
        r["ir_floor"] = ir_per_op("floor", q, c, now) if r["floor"].get("ok") else None
    rows.append(r)


def us(x):
    return "%.1f" % (x / 1000.0) if isinstance(x, (int, float)) else "n/a"


def ratio(a, b):
    ok = isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0
    return "%.1fx" % (a / b) if ok else "n/a"


def mib(kib):
    return "%.1f" % (kib / 1024.0) if isinstance(kib, (int, float)) and kib >= 0 else "n/a"


def ns(d):
    return d.get("ns_per_op") if d.get("ok") else None


cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-").strip() or platform.processor()
lines = []
w = lines.append
w("# Attestation benchmark results")
w("")
w("Generated by `bench/run.sh`; see bench/README.md for what is measured. Timings are")
w("informational only: nothing here is a pass/fail test.")
w("")
w("- Date: %s" % datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ"))
w("- Machine: %s, nproc %s, kernel %s" % (cpu, sh("nproc"), platform.release()))
w("- Toolchain: %s; %s; node %s" % (sh("cc --version | head -1"), sh("openssl version"),
                                     sh("node --version")))
w("- Source: %s" % (sh("git -C %s rev-parse --short HEAD" % env["BENCH_SRC"]) or "unknown") +
  (" (+ uncommitted changes)" if sh("git -C %s status --porcelain -uno" % env["BENCH_SRC"]) else ""))
w("- Command: `%s` (N = %d verifications per quote per tool, median of 5 batches,"
  " warm-up N/10; Release build in build-bench)" % (env["BENCH_CMD"], n))
w("")
w("## Time per verification (cached collateral)")
w("")
w("- **ours** = `attest_verify` with the collateral verified once (`attest_trust`, what the agent keeps per FMSPC)")
w("  and decoded certificates cached across calls (same DER, same object);")
w("- **ours-new** = the same, but the certificate cache emptied before every call (a platform never seen before);")
w("- **ours-cold** = no `attest_trust`: the collateral is re-verified on every call, as dcap-qvl always does.")
w("")
w("| quote + collateral | TCB status | ours µs/op | dcap-qvl µs/op | dcap-qvl / ours (goal ≥ 20x) |"
  " floor µs/op | ours / floor | ours-new µs/op | dcap-qvl / ours-new | ours-cold µs/op | dcap-qvl / ours-cold |"
  " floor-full µs/op | ours-cold / floor-full |")
w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    name = "%s + %s" % (os.path.basename(r["quote"]), os.path.basename(r["collateral"]))
    st = r["ours"].get("status") if r["ours"].get("ok") else \
        "ours failed: %s" % str(r["ours"].get("error"))[:60]
    w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        name, st, us(ns(r["ours"])), us(ns(r["js"])), ratio(ns(r["js"]), ns(r["ours"])),
        us(ns(r["floor"])), ratio(ns(r["ours"]), ns(r["floor"])),
        us(ns(r["ours_new"])), ratio(ns(r["js"]), ns(r["ours_new"])),
        us(ns(r["ours_cold"])), ratio(ns(r["js"]), ns(r["ours_cold"])),
        us(ns(r["floor_full"])), ratio(ns(r["ours_cold"]), ns(r["floor_full"]))))
w("")
w("## Peak RSS (whole process, MiB)")
w("")
w("| quote + collateral | ours | dcap-qvl (node) | floor |")
w("|---|---:|---:|---:|")
for r in rows:
    name = "%s + %s" % (os.path.basename(r["quote"]), os.path.basename(r["collateral"]))
    w("| %s | %s | %s | %s |" % (name, mib(r["ours"].get("maxrss_kib")),
                                mib(r["js"].get("maxrss_kib")), mib(r["floor"].get("maxrss_kib"))))
if any("ir_ours" in r for r in rows):
    w("")
    w("## Instructions per verification (callgrind, (Ir at 11 ops − Ir at 1 op) / 10)")
    w("")
    w("| quote + collateral | ours Ir/op | floor Ir/op | ours / floor |")
    w("|---|---:|---:|---:|")
    for r in rows:
        name = "%s + %s" % (os.path.basename(r["quote"]), os.path.basename(r["collateral"]))
        a, b = r.get("ir_ours"), r.get("ir_floor")
        w("| %s | %s | %s | %s |" % (name, "%.0f" % a if a else "n/a",
                                    "%.0f" % b if b else "n/a", ratio(a, b)))
w("")
w("Floor = %s ECDSA P-256 verifications per quote (quote, QE report, PCK leaf cert, PCK intermediate"
  " cert) through OpenSSL with keys and signatures decoded in advance; floor-full adds what"
  " must be checked when the collateral is not cached: TCB info and QE identity signatures, their"
  " signing certificates and both CRL signatures (%s)." % (
      next((r["floor"].get("ecdsa_verifies") for r in rows if r["floor"].get("ok")), 4),
      next((r["floor_full"].get("ecdsa_verifies") for r in rows if r["floor_full"].get("ok")), 10)))
w("")
w("<details><summary>Raw results (JSON)</summary>")
w("")
w("```json")
w(json.dumps(rows, indent=1))
w("```")
w("</details>")
# Keep the sections other bench scripts own (bench_sync.sh, bench_job.sh) when rewriting the file.
kept = ""
if os.path.exists(env["BENCH_OUT"]):
    old = open(env["BENCH_OUT"]).read()
    for tag in ("sync", "job"):
        b, e = "<!-- %s:begin -->" % tag, "<!-- %s:end -->" % tag
        if b in old and e in old:
            kept += "\n" + old[old.index(b):old.index(e) + len(e)] + "\n"
with open(env["BENCH_OUT"], "w") as f:
    f.write("\n".join(lines) + "\n" + kept)
sys.stderr.write("bench: wrote %s\n" % env["BENCH_OUT"])
PY
