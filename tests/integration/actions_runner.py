#!/usr/bin/env python3
"""actions_runner.py - runs a composite GitHub Action (action.yml) on this machine
the way the GitHub Actions runner does, so tests/integration/test_actions.sh can
execute actions/verify and actions/attach-to-release without GitHub.

Emulated contract (what the real runner does for `runs: using: composite`):
- action.yml is read by a small loader for the YAML subset our actions use
  (block mappings and sequences, plain/quoted scalars, `|` blocks); anything else
  is an error. When PyYAML is importable the file is also loaded with it and the
  two results must be equal, so the subset loader cannot silently disagree with
  a real YAML parser.
- `${{ ... }}` expressions in input defaults, step `if:`, `env:`, `with:` and the
  action's `outputs.*.value` are evaluated (contexts inputs, github, runner, env,
  steps; ==, !=, &&, ||, !, (), success() failure() always() cancelled()).
  Composite actions get NO INPUT_* variables, so neither does this runner.
- `run:` steps must say `shell: bash` and are run as
  `bash --noprofile --norc -eo pipefail FILE` with fresh GITHUB_OUTPUT,
  GITHUB_STEP_SUMMARY, GITHUB_ENV and GITHUB_PATH files per step; outputs
  (`k=v` and `k<<DELIM` forms), env and path additions are applied afterwards.
- `uses:` steps must be pinned to a full commit SHA; they are dispatched to a
  stand-in named on the command line (--uses NAME=COMMAND).
Trust: this file runs only our own action.yml files in tests; it is not a
sandbox. It writes a JSON result (outcome, failed step, outputs) to --result and,
with --result-dir, one file per value (for shell tests).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

# ---------------------------------------------------------------- YAML subset


class YamlError(Exception):
    pass


def _strip_comment(line):
    """Removes a trailing comment outside quotes."""
    q = None
    for i, c in enumerate(line):
        if q:
            if c == q:
                q = None
        elif c in "'\"" and (i == 0 or line[i - 1] in " :-"):
            q = c
        elif c == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def _scalar(text, lineno):
    t = text.strip()
    if t == "":
        return None
    if t[0] == "'":
        if len(t) < 2 or t[-1] != "'":
            raise YamlError("line %d: unterminated single-quoted scalar" % lineno)
        return t[1:-1].replace("''", "'")
    if t[0] == '"':
        if len(t) < 2 or t[-1] != '"':
            raise YamlError("line %d: unterminated double-quoted scalar" % lineno)
        body = t[1:-1]
        if "\\" in body:
            esc = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "/": "/"}
            out, i = [], 0
            while i < len(body):
                if body[i] == "\\":
                    if i + 1 >= len(body) or body[i + 1] not in esc:
                        raise YamlError("line %d: unsupported escape" % lineno)
                    out.append(esc[body[i + 1]])
                    i += 2
                else:
                    out.append(body[i])
                    i += 1
            body = "".join(out)
        return body
    if t[0] in "[{&*!|>%@`" or t in ("-", "---", "..."):
        raise YamlError("line %d: unsupported YAML construct %r" % (lineno, t))
    if t in ("true", "True", "TRUE", "false", "False", "FALSE"):
        return t.lower() == "true"
    if t in ("null", "Null", "NULL", "~"):
        return None
    if re.fullmatch(r"-?[0-9]+", t):
        return int(t)
    if ": " in t or t.endswith(":") or " #" in t:
        raise YamlError("line %d: plain scalar %r needs quotes" % (lineno, t))
    if re.fullmatch(r"(?i)yes|no|on|off", t):
        raise YamlError("line %d: ambiguous plain scalar %r: quote it" % (lineno, t))
    return t


def yaml_subset_load(text):
    """Loads the YAML subset described above into dicts, lists and scalars."""
    lines = []  # (lineno, indent, content) of significant lines; raw kept for blocks
    raw = text.split("\n")
    for n, l in enumerate(raw, 1):
        if "\t" in l[: len(l) - len(l.lstrip())]:
            raise YamlError("line %d: tab in indentation" % n)
    pos = [0]

    def peek():
        while pos[0] < len(raw):
            l = raw[pos[0]]
            s = _strip_comment(l)
            if s.strip() == "":
                pos[0] += 1
                continue
            return pos[0] + 1, len(s) - len(s.lstrip(" ")), s.strip()
        return None

    def block_scalar(indicator, parent_indent, lineno):
        if indicator not in ("|", "|-"):
            raise YamlError("line %d: only | and |- block scalars are supported" % lineno)
        body, ind = [], None
        while pos[0] < len(raw):
            l = raw[pos[0]]
            if l.strip() == "":
                body.append("")
                pos[0] += 1
                continue
            cur = len(l) - len(l.lstrip(" "))
            if ind is None:
                if cur <= parent_indent:
                    break
                ind = cur
            if cur < ind:
                break
            body.append(l[ind:])
            pos[0] += 1
        while body and body[-1] == "":
            body.pop()
        s = "\n".join(body)
        return s + "\n" if indicator == "|" and s else s

    def value_after_colon(rest, indent, lineno):
        if rest in ("|", "|-", ">", ">-"):
            return block_scalar(rest, indent, lineno)
        if rest == "":
            nxt = peek()
            if nxt is None or nxt[1] < indent or (nxt[1] == indent and not nxt[2].startswith("- ")
                                                   and nxt[2] != "-"):
                return None
            return node(nxt[1])
        return _scalar(rest, lineno)

    def split_key(content, lineno):
        m = re.match(r"^([A-Za-z0-9_.-]+|'[^']*'|\"[^\"]*\"):(?:\s+(.*))?$", content)
        if not m:
            return None
        k = m.group(1)
        if k[0] in "'\"":
            k = k[1:-1]
        return k, (m.group(2) or "").strip()

    def mapping(indent, first=None):
        out = {}
        while True:
            if first is not None:
                lineno, cur, content = first
                first = None
            else:
                nxt = peek()
                if nxt is None or nxt[1] < indent:
                    return out
                lineno, cur, content = nxt
                if cur > indent:
                    raise YamlError("line %d: unexpected indentation" % lineno)
                if content.startswith("- ") or content == "-":
                    return out
                pos[0] += 1
            kv = split_key(content, lineno)
            if kv is None:
                raise YamlError("line %d: expected 'key: value', got %r" % (lineno, content))
            k, rest = kv
            if k in out:
                raise YamlError("line %d: duplicate key %r" % (lineno, k))
            out[k] = value_after_colon(rest, indent, lineno)

    def sequence(indent):
        out = []
        while True:
            nxt = peek()
            if nxt is None or nxt[1] < indent:
                return out
            lineno, cur, content = nxt
            if cur != indent or not (content.startswith("- ") or content == "-"):
                if cur == indent:
                    return out
                raise YamlError("line %d: bad sequence item" % lineno)
            pos[0] += 1
            item = content[1:].lstrip(" ")
            item_indent = cur + (len(content) - len(item))
            if item == "":
                nxt2 = peek()
                out.append(node(nxt2[1]) if nxt2 and nxt2[1] > indent else None)
            elif split_key(item, lineno):
                out.append(mapping(item_indent, (lineno, item_indent, item)))
            else:
                out.append(_scalar(item, lineno))

    def node(indent):
        nxt = peek()
        if nxt is None:
            return None
        if nxt[2].startswith("- ") or nxt[2] == "-":
            return sequence(nxt[1])
        return mapping(nxt[1])

    first = peek()
    if first is None:
        return None
    if first[1] != 0:
        raise YamlError("line %d: document must start at column 0" % first[0])
    doc = node(0)
    rest = peek()
    if rest is not None:
        raise YamlError("line %d: unparsed content %r" % (rest[0], rest[2]))
    return doc


def load_action(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    doc = yaml_subset_load(text)
    try:
        import yaml  # optional cross-check against a real YAML parser
    except ImportError:
        yaml = None
    if yaml is not None:
        ref = yaml.safe_load(text)
        if ref != doc:
            raise YamlError("%s: the subset loader and PyYAML disagree:\n%r\n%r" % (path, doc, ref))
    return doc


# ---------------------------------------------------------------- expressions


class ExprError(Exception):
    pass


_TOK = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?[0-9]+(?:\.[0-9]+)?)|"
                  r"(?P<op>==|!=|&&|\|\||<=|>=|[!()\[\].,<>])|(?P<id>[A-Za-z_][A-Za-z0-9_-]*))")


def _tokens(s):
    out, i = [], 0
    while i < len(s):
        if s[i:].strip() == "":
            break
        m = _TOK.match(s, i)
        if not m:
            raise ExprError("cannot parse expression at %r" % s[i:])
        i = m.end()
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
    return out


def _num(v):
    if v is None:
        return 0.0
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        if v.strip() == "":
            return 0.0
        try:
            return float(v)
        except ValueError:
            return float("nan")
    return float("nan")


def _eq(a, b):
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    if type(a) is type(b) or (isinstance(a, (int, float)) and isinstance(b, (int, float))
                              and not isinstance(a, bool) and not isinstance(b, bool)):
        return a == b
    return _num(a) == _num(b)


def truthy(v):
    if v is None or v is False or v == "":
        return False
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v == v and v != 0
    return True


def tostr(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


def evaluate(expr, ctx):
    toks = _tokens(expr)
    pos = [0]

    def peek(v=None):
        if pos[0] >= len(toks):
            return None
        t = toks[pos[0]]
        return t if v is None or t[1] == v else None

    def take(v=None):
        t = peek(v)
        if t is None:
            raise ExprError("expected %r in %r" % (v, expr))
        pos[0] += 1
        return t

    def primary():
        t = take()
        kind, val = t
        if val == "(":
            v = orexpr()
            take(")")
            return v
        if val == "!":
            return not truthy(primary())
        if kind == "str":
            return val[1:-1].replace("''", "'")
        if kind == "num":
            return float(val)
        if kind != "id":
            raise ExprError("unexpected %r in %r" % (val, expr))
        if val in ("true", "false"):
            return val == "true"
        if val == "null":
            return None
        if peek("("):
            take("(")
            args = []
            while not peek(")"):
                args.append(orexpr())
                if peek(","):
                    take(",")
            take(")")
            status = ctx.get("__status", "success")
            if val == "success":
                return status == "success"
            if val == "failure":
                return status == "failure"
            if val == "always":
                return True
            if val == "cancelled":
                return False
            if val == "contains":
                return tostr(args[1]).lower() in tostr(args[0]).lower()
            if val == "startsWith":
                return tostr(args[0]).lower().startswith(tostr(args[1]).lower())
            raise ExprError("function %s() not emulated" % val)
        if val not in ctx:
            raise ExprError("unknown context %r" % val)
        v = ctx[val]
        while peek(".") or peek("["):
            if take()[1] == ".":
                key = take()[1]
            else:
                key = tostr(orexpr())
                take("]")
            v = v.get(key) if isinstance(v, dict) else None
        return v

    def cmp():
        a = primary()
        while peek("==") or peek("!="):
            op = take()[1]
            b = primary()
            a = _eq(a, b) if op == "==" else not _eq(a, b)
        return a

    def andexpr():
        a = cmp()
        while peek("&&"):
            take()
            b = cmp()
            a = b if truthy(a) else a
        return a

    def orexpr():
        a = andexpr()
        while peek("||"):
            take()
            b = andexpr()
            a = a if truthy(a) else b
        return a

    v = orexpr()
    if pos[0] != len(toks):
        raise ExprError("trailing tokens in %r" % expr)
    return v


def render(s, ctx):
    """Substitutes every ${{ expr }} of a string (GitHub template semantics)."""
    if not isinstance(s, str):
        return tostr(s)
    out, i = [], 0
    while True:
        j = s.find("${{", i)
        if j < 0:
            out.append(s[i:])
            return "".join(out)
        k = s.find("}}", j)
        if k < 0:
            raise ExprError("unterminated ${{ in %r" % s)
        out.append(s[i:j])
        out.append(tostr(evaluate(s[j + 3:k], ctx)))
        i = k + 2


def condition(s, ctx):
    if s is None:
        return truthy(evaluate("success()", ctx))
    s = tostr(s).strip()
    if s.startswith("${{") and s.endswith("}}"):
        s = s[3:-2]
    v = evaluate(s, ctx)
    # GitHub: a condition with no status function is implicitly success() && (...)
    if not re.search(r"\b(success|failure|always|cancelled)\s*\(", s):
        return ctx.get("__status", "success") == "success" and truthy(v)
    return truthy(v)


# ---------------------------------------------------------------- file commands


def parse_file_commands(path):
    """Parses a GITHUB_OUTPUT / GITHUB_ENV file: k=v lines and k<<DELIM blocks."""
    out = {}
    if not os.path.exists(path):
        return out
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line == "":
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            val = []
            while True:
                if i >= len(lines):
                    raise ValueError("%s: missing delimiter %r" % (path, delim))
                if lines[i] == delim:
                    i += 1
                    break
                val.append(lines[i])
                i += 1
            out[name] = "\n".join(val)
        elif "=" in line:
            name, val = line.split("=", 1)
            out[name] = val
        else:
            raise ValueError("%s: invalid line %r" % (path, line))
    return out


# ---------------------------------------------------------------- runner


FULL_SHA = re.compile(r"^[^@\s]+@[0-9a-f]{40}$")


def run_action(action_dir, inputs, uses, work, event):
    doc = load_action(os.path.join(action_dir, "action.yml"))
    if not isinstance(doc, dict) or not isinstance(doc.get("runs"), dict):
        raise YamlError("action.yml has no runs: mapping")
    for key in ("name", "description"):
        if not doc.get(key):
            raise YamlError("action.yml has no %s" % key)
    if doc["runs"].get("using") != "composite":
        raise YamlError("runs.using is not composite")
    declared = doc.get("inputs") or {}
    for k in inputs:
        if k not in declared:
            raise YamlError("input %r is not declared by the action" % k)

    env = dict(os.environ)
    github = {
        "action_path": os.path.abspath(action_dir),
        "workspace": env.get("GITHUB_WORKSPACE", work),
        "ref": env.get("GITHUB_REF", ""),
        "ref_name": env.get("GITHUB_REF_NAME", ""),
        "ref_type": env.get("GITHUB_REF_TYPE", ""),
        "event_name": env.get("GITHUB_EVENT_NAME", "push"),
        "repository": env.get("GITHUB_REPOSITORY", "owner/repo"),
        "run_id": env.get("GITHUB_RUN_ID", "1"),
        "sha": env.get("GITHUB_SHA", "0" * 40),
        "token": env.get("TEST_GITHUB_TOKEN", "ghs_test_token"),
        "event": event,
    }
    runner = {"temp": env.get("RUNNER_TEMP", work), "os": "Linux", "arch": "X64"}
    ctx = {"github": github, "runner": runner, "env": {}, "steps": {}, "__status": "success"}
    resolved = {}
    for k, spec in declared.items():
        spec = spec or {}
        if k in inputs:
            resolved[k] = inputs[k]
        elif spec.get("required") is True and "default" not in spec:
            raise YamlError("required input %r not given" % k)
        else:
            resolved[k] = render(spec.get("default", ""), dict(ctx, inputs={}))
    ctx["inputs"] = resolved

    env.update({
        "GITHUB_ACTION_PATH": github["action_path"],
        "GITHUB_WORKSPACE": github["workspace"],
        "GITHUB_REF": github["ref"], "GITHUB_REF_NAME": github["ref_name"],
        "GITHUB_REF_TYPE": github["ref_type"], "GITHUB_EVENT_NAME": github["event_name"],
        "GITHUB_REPOSITORY": github["repository"], "GITHUB_RUN_ID": github["run_id"],
        "RUNNER_TEMP": runner["temp"], "RUNNER_OS": "Linux", "RUNNER_ARCH": "X64",
        "GITHUB_ACTIONS": "true", "CI": "true",
    })
    job_summary = env.get("GITHUB_STEP_SUMMARY") or os.path.join(work, "summary.md")
    status, failed = "success", None
    steps_result = []
    for n, step in enumerate(doc["runs"].get("steps") or []):
        sid = step.get("id") or "__step%d" % n
        label = step.get("name") or sid
        ctx["__status"] = status
        if not condition(step.get("if"), ctx):
            ctx["steps"][sid] = {"outcome": "skipped", "conclusion": "skipped", "outputs": {}}
            steps_result.append({"id": sid, "outcome": "skipped"})
            continue
        step_env = dict(env)
        for k, v in (step.get("env") or {}).items():
            step_env[k] = render(v, ctx)
        files = {}
        for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ENV", "GITHUB_PATH"):
            fd, p = tempfile.mkstemp(prefix=name.lower() + "-", dir=work)
            os.close(fd)
            files[name] = p
            step_env[name] = p
        sys.stdout.write("::group::%s\n" % label)
        sys.stdout.flush()
        if "run" in step:
            if step.get("shell") != "bash":
                raise YamlError("step %s: a composite run step needs shell: bash" % label)
            if "${{" in step["run"]:
                raise YamlError("step %s: ${{ }} inside run: (script injection); pass it via env:" % label)
            fd, script = tempfile.mkstemp(prefix="step-", suffix=".sh", dir=work)
            with os.fdopen(fd, "w") as f:
                f.write(step["run"])
            rc = subprocess.call(["bash", "--noprofile", "--norc", "-eo", "pipefail", script],
                                 env=step_env, cwd=github["workspace"])
        elif "uses" in step:
            ref = step["uses"]
            if not FULL_SHA.match(ref):
                raise YamlError("step %s: %s is not pinned to a full commit SHA" % (label, ref))
            name = ref.split("@", 1)[0]
            if name not in uses:
                raise YamlError("step %s: no stand-in for %s (--uses)" % (label, name))
            with_ = {k: render(v, ctx) for k, v in (step.get("with") or {}).items()}
            step_env["STANDIN_WITH"] = json.dumps(with_)
            rc = subprocess.call(["bash", "-c", uses[name]], env=step_env, cwd=github["workspace"])
        else:
            raise YamlError("step %s has neither run nor uses" % label)
        sys.stdout.write("::endgroup::\n")
        outs = parse_file_commands(files["GITHUB_OUTPUT"])
        for k, v in parse_file_commands(files["GITHUB_ENV"]).items():
            env[k] = v
            ctx["env"][k] = v
        with open(files["GITHUB_PATH"]) as f:
            for p in f.read().split("\n"):
                if p:
                    env["PATH"] = p + os.pathsep + env["PATH"]
        with open(files["GITHUB_STEP_SUMMARY"]) as f, open(job_summary, "a") as s:
            s.write(f.read())
        outcome = "success" if rc == 0 else "failure"
        ctx["steps"][sid] = {"outcome": outcome, "conclusion": outcome, "outputs": outs}
        steps_result.append({"id": sid, "name": label, "outcome": outcome, "rc": rc, "outputs": outs})
        if rc != 0:
            sys.stdout.write("Error: step %r failed with exit code %d\n" % (label, rc))
            if step.get("continue-on-error") is not True and status == "success":
                status, failed = "failure", label
    outputs = {}
    for k, spec in (doc.get("outputs") or {}).items():
        outputs[k] = render((spec or {}).get("value", ""), ctx)
    return {"outcome": status, "failed_step": failed, "outputs": outputs, "steps": steps_result}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("action_dir")
    ap.add_argument("--input", action="append", default=[], help="NAME=VALUE (with: of the caller)")
    ap.add_argument("--uses", action="append", default=[], help="OWNER/NAME=SHELL COMMAND stand-in")
    ap.add_argument("--event", help="event payload JSON file (github.event)")
    ap.add_argument("--result", required=True, help="write the result JSON here")
    ap.add_argument("--result-dir", help="also write outcome, failed_step and outputs.NAME as files here")
    ap.add_argument("--check-only", action="store_true", help="only load and check action.yml")
    a = ap.parse_args()
    if a.check_only:
        load_action(os.path.join(a.action_dir, "action.yml"))
        with open(a.result, "w") as f:
            json.dump({"outcome": "loaded"}, f)
        return 0
    inputs = {}
    for kv in a.input:
        k, _, v = kv.partition("=")
        inputs[k] = v
    uses = {}
    for kv in a.uses:
        k, _, v = kv.partition("=")
        uses[k] = v
    event = {}
    if a.event:
        with open(a.event) as f:
            event = json.load(f)
    work = tempfile.mkdtemp(prefix="actions-runner-", dir=os.environ.get("RUNNER_TEMP"))
    res = run_action(a.action_dir, inputs, uses, work, event)
    with open(a.result, "w") as f:
        json.dump(res, f, indent=1)
    if a.result_dir:
        os.makedirs(a.result_dir)
        flat = {"outcome": res["outcome"], "failed_step": res["failed_step"] or ""}
        flat.update({"outputs." + k: v for k, v in res["outputs"].items()})
        for k, v in flat.items():
            with open(os.path.join(a.result_dir, k), "w") as f:
                f.write(v)
    return 0 if res["outcome"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
