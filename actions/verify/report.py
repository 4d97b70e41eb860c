#!/usr/bin/env python3
"""report.py - turns the output of `tdx-runner verify BUNDLE --json` into the
actions/verify step's result: step outputs ($GITHUB_OUTPUT), a job summary table
($GITHUB_STEP_SUMMARY), an error or warning annotation, and the exit status.

Invariants: the verdict passes only when tdx-runner exited 0 AND its JSON says
"ok": true (either alone is a failure); exit status 2 of tdx-runner (usage or
I/O error) always fails the step. Trust boundary: the JSON and tdx-runner's
stderr carry text taken from an untrusted bundle, so every value is escaped
before it reaches a workflow command (%, CR, LF), the summary (Markdown/HTML)
or $GITHUB_OUTPUT (random heredoc delimiter that the value cannot contain).
Only the Python standard library is used (hosted runners have python3).
"""
import argparse
import hashlib
import json
import os
import secrets
import sys

TITLE = "tdx-runner verify"


def cmd_escape(s):
    """Escapes a workflow-command message (actions/toolkit escapeData)."""
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def md(s):
    """Escapes untrusted text for one Markdown table cell."""
    s = "" if s is None else str(s)
    for a, b in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "&#124;"),
                 ("`", "&#96;"), ("*", "&#42;"), ("[", "&#91;"), ("]", "&#93;"),
                 ("\r", " "), ("\n", " ")):
        s = s.replace(a, b)
    return s


def code(s):
    """A hex value as inline code; anything unexpected is shown escaped."""
    if s is None or s == "":
        return "-"
    s = str(s)
    if all(c in "0123456789abcdefABCDEF" for c in s):
        return "`%s`" % s
    return md(s)


def pick(v, *paths):
    """The first present value among dotted paths ("statement" only with an end part)."""
    for p in paths:
        cur = v
        for k in p.split("."):
            cur = cur.get(k) if isinstance(cur, dict) else None
        if cur not in (None, "", []):
            return cur
    return None


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def set_outputs(path, outs):
    with open(path, "a", encoding="utf-8") as f:
        for k, v in outs.items():
            v = "" if v is None else str(v)
            if "\n" in v or "\r" in v:
                d = "EOF_" + secrets.token_hex(16)
                while d in v:
                    d = "EOF_" + secrets.token_hex(16)
                f.write("%s<<%s\n%s\n%s\n" % (k, d, v, d))
            else:
                f.write("%s=%s\n" % (k, v))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--verdict", required=True)
    ap.add_argument("--stderr", required=True)
    ap.add_argument("--rc", type=int, required=True)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--subjects", required=True, help="file: one subject path per line")
    ap.add_argument("--version", default="")
    ap.add_argument("--fail-on-error", default="true")
    a = ap.parse_args()

    v = {}
    parse_error = None
    try:
        with open(a.verdict, "rb") as f:
            raw = f.read(16 << 20)
        if raw.strip():
            v = json.loads(raw)
        if not isinstance(v, dict):
            v, parse_error = {}, "verdict JSON is not an object"
    except (OSError, ValueError) as e:
        v, parse_error = {}, "cannot read the verdict JSON: %s" % e
    try:
        with open(a.stderr, "r", encoding="utf-8", errors="replace") as f:
            stderr = f.read(64 << 10).strip()
    except OSError:
        stderr = ""

    ok = a.rc == 0 and v.get("ok") is True
    error = v.get("error") if isinstance(v.get("error"), str) else None
    if not ok and not error:
        if a.rc == 2:
            error = "usage or input error: " + (stderr.splitlines()[-1] if stderr else "exit status 2")
        elif parse_error:
            error = parse_error
        elif a.rc == 0:
            error = "tdx-runner exited 0 but the verdict is not ok"
        else:
            error = "verdict failed (exit status %d)" % a.rc
    failed_step = ""
    for s in v.get("steps") or []:
        if isinstance(s, dict) and s.get("result") == "fail":
            failed_step = str(s.get("name") or "")
            break
    if not ok and not failed_step:
        failed_step = "usage" if a.rc == 2 else (error.split(":", 1)[0] if error and ":" in error else "")

    with open(a.subjects, encoding="utf-8") as f:
        subjects = [l for l in f.read().split("\n") if l]
    local = []
    for p in subjects:
        try:
            local.append((p, sha256_file(p)))
        except OSError as e:
            local.append((p, "unreadable: %s" % e.strerror))
    stmt_digest = pick(v, "statement.sha256")
    stmt_subjects = pick(v, "statement.subjects")
    simulated = v.get("simulated") is True
    status = v.get("status") if isinstance(v.get("status"), str) else ""
    advisories = [str(x) for x in (v.get("advisory_ids") or []) if isinstance(x, (str, int))]

    outs = {
        "ok": "true" if ok else "false",
        "status": status,
        "simulated": "true" if simulated else "false",
        "error": error or "",
        "failed-step": failed_step,
        "app-id": v.get("app_id") or "",
        "compose-hash": v.get("compose_hash") or "",
        "instance-id": v.get("instance_id") or "",
        "mrtd": v.get("mrtd") or "",
        "rtmr0": v.get("rtmr0") or "",
        "rtmr1": v.get("rtmr1") or "",
        "rtmr2": v.get("rtmr2") or "",
        "rtmr3": v.get("rtmr3") or "",
        "report-data": v.get("report_data") or "",
        "statement-digest": stmt_digest if isinstance(stmt_digest, str) else "",
        "subjects": "\n".join("%s %s" % (d, p) for p, d in local),
        "verdict": os.path.abspath(a.verdict),
        "bundle": os.path.abspath(a.bundle),
    }
    for k in list(outs):
        if not isinstance(outs[k], str):
            outs[k] = ""
    set_outputs(os.environ["GITHUB_OUTPUT"], outs)

    if ok:
        head = "### tdx-runner verify: :white_check_mark: passed"
        verdict = "pass"
        if simulated:
            verdict += " - **SIMULATED root of trust, not Intel hardware: proves nothing about a TEE**"
    else:
        head = "### tdx-runner verify: :x: failed"
        verdict = "**fail** at step <code>%s</code>: %s" % (md(failed_step) or "-", md(error))
    rows = [
        ("verdict", verdict),
        ("TCB status", md(status or "-") + (" (advisories: %s)" % md(", ".join(advisories))
                                             if advisories else "")),
        ("app id", code(v.get("app_id"))),
        ("compose hash", code(v.get("compose_hash"))),
        ("instance id", code(v.get("instance_id"))),
        ("MRTD", code(v.get("mrtd"))),
        ("RTMR0", code(v.get("rtmr0"))),
        ("RTMR1", code(v.get("rtmr1"))),
        ("RTMR2", code(v.get("rtmr2"))),
        ("RTMR3", code(v.get("rtmr3"))),
        ("REPORTDATA", code(v.get("report_data"))),
        ("statement SHA-256", code(stmt_digest if isinstance(stmt_digest, str) else None)),
    ]
    if isinstance(stmt_subjects, list) and stmt_subjects:
        cells = []
        for s in stmt_subjects[:50]:
            if isinstance(s, dict):
                d = s.get("sha256")
                cells.append("%s %s" % (code(d if isinstance(d, str) else None), md(s.get("name"))))
            else:
                cells.append(md(s))
        rows.append(("statement subjects", "<br>".join(cells)))
    rows.append(("subjects checked", "<br>".join("%s %s" % (code(d) if len(d) == 64 else md(d), md(p))
                                                 for p, d in local) or "none"))
    rows.append(("bundle", md(a.bundle)))
    rows.append(("tdx-runner", md(a.version or "-")))
    lines = [head, "", "| | |", "|---|---|"]
    lines += ["| %s | %s |" % (k, val) for k, val in rows]
    steps = [s for s in (v.get("steps") or []) if isinstance(s, dict)]
    if steps:
        lines += ["", "<details><summary>verification steps</summary>", "",
                  "| step | result | detail |", "|---|---|---|"]
        lines += ["| %s | %s | %s |" % (md(s.get("name")), md(s.get("result")), md(s.get("detail")))
                  for s in steps]
        lines += ["", "</details>"]
    if not ok and a.rc == 2 and stderr:
        lines += ["", "<details><summary>tdx-runner stderr</summary>", "", "<pre>%s</pre>" % (
            stderr.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")), "", "</details>"]
    with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n\n")

    if ok:
        print("tdx-runner verify: passed (%s%s)" % (cmd_escape(status or "no TCB status"),
                                                   ", simulated" if simulated else ""))
        if simulated:
            print("::warning title=%s::%s" % (TITLE, cmd_escape(
                "the bundle verified against a SIMULATED root of trust (allow-simulated): "
                "this proves nothing about a real TEE")))
        return 0
    msg = "verification failed at step '%s': %s" % (failed_step or "?", error)
    print("::error title=%s::%s" % (TITLE, cmd_escape(msg)))
    if a.rc == 2 or a.fail_on_error.strip().lower() != "false":
        return 1
    print("fail-on-error is false: the step succeeds, outputs.ok is false")
    return 0


if __name__ == "__main__":
    sys.exit(main())
