#!/usr/bin/env bash
# test_oracle_diff.sh - differential test of our DCAP verifier against the
# @phala/dcap-qvl 0.3.9 oracle (tests/oracle/dcap_qvl_verify.js).
#
# For every pair in shared/testdata/tdx/manifest.json "quote_verification" it runs
# `tdx-runner verify --json` and the node oracle on the same quote, collateral and
# "now", side by side, and requires: the same accept/reject, and when accepted the
# same TCB status and the same advisory id set. Both are also checked against the
# manifest's stored expectation (and the oracle against its stored JS 0.3.9 and
# TDX-module results, so a drifting oracle install is caught too).
#
# Our verifier runs with every status but Revoked accepted, which is what the
# oracle accepts, so acceptance compares like for like.
# Prints "SKIP: reason" and exits 0 when node, the oracle's node_modules
# (npm ci --prefix tests/oracle) or the shared testdata are missing.
# Env (set by ctest): TDXR_BIN, TDXR_SOURCE_DIR, TDXR_SHARED_TESTDATA.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=${TDXR_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
testdata=${TDXR_SHARED_TESTDATA:-$src/../shared/testdata}
oracle=$src/tests/oracle/dcap_qvl_verify.js

skip() {
	echo "SKIP: $*"
	exit 0
}

[[ -f $testdata/tdx/manifest.json ]] || skip "shared testdata not found at $testdata"
command -v node >/dev/null 2>&1 || skip "node is not installed"
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
[[ -f $src/tests/oracle/node_modules/@phala/dcap-qvl/package.json ]] ||
	skip "oracle not installed: npm ci --prefix $src/tests/oracle"
[[ -n ${TDXR_BIN:-} && -x $TDXR_BIN ]] || { echo "FAIL: TDXR_BIN not set or not executable"; exit 1; }

export ORACLE_JS=$oracle TDXR_BIN TESTDATA=$testdata
exec python3 - <<'PY'
import json
import os
import subprocess
import sys

ACCEPT = ("UpToDate,SWHardeningNeeded,ConfigurationNeeded,"
          "ConfigurationAndSWHardeningNeeded,OutOfDate,OutOfDateConfigurationNeeded")
tdx = os.path.join(os.environ["TESTDATA"], "tdx")
bin_ = os.environ["TDXR_BIN"]
oracle = os.environ["ORACLE_JS"]


def last_json(text):
    """The JSON object a tool printed: whole stdout, else its last JSON line."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        try:
            obj = json.loads(line)
            if isinstance(obj, dict):
                return obj
        except ValueError:
            continue
    return None


def run(argv):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return p.returncode, last_json(p.stdout), p.stderr.strip()


def ours_accepts(o):
    """Accepted, or rejected only by a TCB-policy step while the status was
    reached and is one the oracle accepts (in case --accept is not honoured)."""
    if o.get("ok") is True:
        return True
    status = o.get("status")
    if not isinstance(status, str) or status == "Revoked":
        return False
    failed = [s.get("name", "") for s in o.get("steps") or [] if s.get("result") == "fail"]
    return bool(failed) and all("tcb" in n or "policy" in n for n in failed)


def short(s, n=28):
    s = "-" if s is None else str(s)
    return s if len(s) <= n else s[: n - 1] + "~"


def expected(e):
    """(accept, status, advisory set) the manifest stores for a pair."""
    ex = e["expect"]
    if ex["verdict"] != "verify":
        return False, None, None
    return True, ex["tcb_status"], set(ex["advisory_ids"])


def oracle_matches_manifest(e, o):
    """The oracle reproduces the stored JS 0.3.9 result, TDX module and merge."""
    if o.get("js") != e["oracle_js_0.3.9"] or o.get("tdx_module") != e["tdx_module"]:
        return False
    rust = e["rust_0.5_equivalent"]
    js = e["oracle_js_0.3.9"]
    if rust is None and js["error"] is None:  # no TDX module (SGX): Rust == JS
        rust = {"status": js["status"], "adv": js["advisory_ids"]}
    if rust is None:
        return o.get("ok") is False
    return o.get("ok") is True and o.get("status") == rust["status"] and \
        o.get("advisory_ids") == rust["adv"]


manifest = json.load(open(os.path.join(tdx, "manifest.json")))
rows = []
failures = []
reasons = []
for i, e in enumerate(manifest["quote_verification"], 1):
    q = os.path.normpath(os.path.join(tdx, e["quote"]))
    c = os.path.normpath(os.path.join(tdx, e["collateral"]))
    name = "%s + %s" % (os.path.basename(q), os.path.basename(c))
    if not (os.path.isfile(q) and os.path.isfile(c)):
        rows.append((i, name, "-", "-", "-", "SKIP (file missing)"))
        continue
    now = str(e["now"])
    exp_acc, exp_status, exp_adv = expected(e)
    exp_txt = exp_status if exp_acc else "reject"

    orc_rc, orc, orc_err = run(["node", oracle, q, c, now])
    our_rc, our, our_err = run([bin_, "verify", "--quote", q, "--collateral", c,
                                "--now", now, "--json", "--accept", ACCEPT])
    problems = []
    if orc is None or orc_rc not in (0, 1):
        problems.append("oracle produced no result (rc=%d): %s" % (orc_rc, orc_err[-300:]))
    if our is None or our_rc not in (0, 1):
        problems.append("ours produced no result (rc=%d): %s" % (our_rc, our_err[-300:]))

    orc_txt = our_txt = "ERROR"
    if orc is not None and orc_rc in (0, 1):
        orc_acc = orc.get("ok") is True
        orc_txt = orc["status"] if orc_acc else "reject"
        if not oracle_matches_manifest(e, orc):
            problems.append("oracle differs from manifest: %s" % json.dumps(orc))
        if orc_acc != exp_acc or (exp_acc and (orc["status"] != exp_status or
                                               set(orc["advisory_ids"]) != exp_adv)):
            problems.append("oracle differs from expect %s" % json.dumps(e["expect"]))
    if our is not None and our_rc in (0, 1):
        our_acc = ours_accepts(our)
        our_txt = our.get("status") if our_acc else "reject"
        our_adv = set(our.get("advisory_ids") or [])
        if our_acc != exp_acc or (exp_acc and (our.get("status") != exp_status or
                                               our_adv != exp_adv)):
            problems.append("ours differs from expect %s: ok=%s status=%s adv=%s error=%s"
                            % (json.dumps(e["expect"]), our.get("ok"), our.get("status"),
                               sorted(our_adv), our.get("error")))
        if orc is not None and orc_rc in (0, 1):
            orc_adv = set(orc.get("advisory_ids") or [])
            if our_acc != orc_acc:
                problems.append("accept/reject differs: ours %s (%s), oracle %s (%s)"
                                % (our_acc, our.get("error"), orc_acc, orc.get("error")))
            elif our_acc and (our.get("status") != orc.get("status") or our_adv != orc_adv):
                problems.append("status/advisories differ: ours %s %s, oracle %s %s"
                                % (our.get("status"), sorted(our_adv), orc.get("status"),
                                   sorted(orc_adv)))
    if "reject" in (orc_txt, our_txt):
        reasons.append((i, (orc or {}).get("error"), (our or {}).get("error")))
    result = "ok" if not problems else "MISMATCH"
    rows.append((i, name, exp_txt, orc_txt, our_txt, result))
    if problems:
        failures.append((i, name, problems))

hdr = ("#", "quote + collateral", "expect", "oracle", "ours", "result")
w = [3, 60, 33, 33, 33, 8]
line = "  ".join(h.ljust(w[k]) for k, h in enumerate(hdr))
print(line)
print("-" * len(line))
for r in rows:
    print("  ".join(short(v, w[k]).ljust(w[k]) for k, v in enumerate(r)))
if reasons:
    print("\nwhy rejected (informational):")
    for i, oe, ue in reasons:
        print("  #%-3d oracle: %s" % (i, oe))
        print("       ours:   %s" % ue)
for i, name, problems in failures:
    print("\n#%d %s" % (i, name))
    for p in problems:
        print("  - " + p)
n_ok = sum(1 for r in rows if r[5] == "ok")
print("\n%d pairs: %d agree, %d mismatch, %d skipped"
      % (len(rows), n_ok, len(failures), len(rows) - n_ok - len(failures)))
sys.exit(1 if failures else 0)
PY
