#!/usr/bin/env python3
"""gitlab_executor_helpers.py - play gitlab-runner's part for test_gitlab_executor.sh (stdlib only).

  request URL RUNNER_TOKEN OUT        POST /api/v4/jobs/request like gitlab-runner; the 201
                                      job JSON goes to OUT (gitlab-runner's JOB_RESPONSE_FILE)
  env JOB_JSON [BUILDS_DIR]           bash `export` lines: every job variable as CUSTOM_ENV_<KEY>
                                      (what the custom executor passes to each stage), plus
                                      CI_BUILDS_DIR / CI_PROJECT_DIR once the driver's config
                                      named a builds_dir (<builds_dir>/<project path>)
  script JOB_JSON BUILDS_DIR STAGE [CMD...]
                                      a stage script shaped like the bash scripts gitlab-runner
                                      generates: `: | eval $'...'` around exports of the job's
                                      variables, a cd into the project and the echoed commands
The stage scripts carry the job's variables (CI_JOB_TOKEN included), as gitlab-runner's do.
"""
import json
import shlex
import sys
import urllib.request


def request(url, token, out):
    body = json.dumps({
        "token": token,
        "system_id": "s_0123456789ab",
        "info": {"name": "gitlab-runner", "version": "17.11.0", "revision": "0000000",
                 "platform": "linux", "architecture": "amd64", "executor": "custom", "shell": "bash",
                 "features": {"variables": True, "artifacts": True, "cancelable": True,
                              "return_exit_code": True, "multi_build_steps": True}},
    }).encode()
    req = urllib.request.Request(url.rstrip("/") + "/api/v4/jobs/request", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        if r.status != 201:
            sys.exit("jobs/request answered %d, want 201" % r.status)
        data = r.read()
    with open(out, "wb") as f:
        f.write(data)
    print(json.loads(data)["id"])


def variables(job, builds_dir):
    vs = [(v["key"], v["value"]) for v in job["variables"]]
    if builds_dir:
        path = next(v for k, v in vs if k == "CI_PROJECT_PATH")
        vs += [("CI_BUILDS_DIR", builds_dir), ("CI_PROJECT_DIR", builds_dir + "/" + path),
               ("CI_CONCURRENT_ID", "0"), ("CI_CONCURRENT_PROJECT_ID", "0"), ("TDX_RUNNER", "1")]
    return vs


def ansi_c(s):
    """bash $'...' quoting, the way gitlab-runner's shell writer emits its scripts."""
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "'":
            out.append("\\'")
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20 or ord(ch) == 0x7f:
            out.append("\\x%02x" % ord(ch))
        else:
            out.append(ch)
    return "$'" + "".join(out) + "'"


def script(job, builds_dir, stage, cmds):
    vs = variables(job, builds_dir)
    proj = dict(vs)["CI_PROJECT_DIR"]
    inner = ["set -eo pipefail", "set +o noclobber"]
    inner += ["export %s=%s" % (k, shlex.quote(v)) for k, v in vs]
    if stage == "prepare_script":
        inner.append('echo "Running on $(hostname)..."')
    elif stage == "get_sources":
        inner += ['echo "Fetching changes with git depth set to 20..."',
                  "mkdir -p %s" % shlex.quote(proj), "cd %s" % shlex.quote(proj),
                  "git init -q && git fetch -q \"$CI_REPOSITORY_URL\" \"$CI_COMMIT_SHA\" && "
                  "git checkout -q \"$CI_COMMIT_SHA\""]
    else:
        inner.append("cd %s" % shlex.quote(proj))
    for c in cmds:
        inner.append("echo %s" % shlex.quote("$ " + c))
        inner.append(c)
    body = "\n".join(inner) + "\n"
    return "#!/usr/bin/env bash\n\nset -eo pipefail\nset +o noclobber\n: | eval %s\nexit 0\n" % ansi_c(body)


def main():
    a = sys.argv[1:]
    if a and a[0] == "request" and len(a) == 4:
        request(a[1], a[2], a[3])
    elif a and a[0] == "env" and len(a) in (2, 3):
        job = json.load(open(a[1]))
        for k, v in variables(job, a[2] if len(a) == 3 else None):
            print("export CUSTOM_ENV_%s=%s" % (k, shlex.quote(v)))
        print("export JOB_RESPONSE_FILE=%s" % shlex.quote(a[1]))
    elif a and a[0] == "script" and len(a) >= 4:
        job = json.load(open(a[1]))
        sys.stdout.write(script(job, a[2], a[3], a[4:]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
