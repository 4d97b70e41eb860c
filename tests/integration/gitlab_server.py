#!/usr/bin/env python3
"""gitlab_server.py - a GitLab runner-API server for tests (CONTRACTS.md section 4).

Speaks the runner side of GitLab's API on 127.0.0.1 (a free port, printed as "PORT n" on
stdout first) the way GitLab's rails code does (lib/api/ci/runner.rb, helpers/runner.rb,
Ci::UpdateBuildStateService, Ci::AppendBuildTraceService, Ci::JobArtifacts::CreateService):

  POST  /api/v4/runners/verify          runner token -> 200 {id, token, token_expires_at} | 403
  POST  /api/v4/jobs/request            201 job JSON | 204 + X-GitLab-Last-Update | 400 | 403
  PUT   /api/v4/jobs/:id                token in body; running|pending(two-phase)|success|failed
  PATCH /api/v4/jobs/:id/trace          JOB-TOKEN + Content-Range start-end(inclusive); 202 | 416
  POST  /api/v4/jobs/:id/artifacts      multipart, streamed to disk, zip checked; 201 | 400 | 413
  GET/POST /<group>/<project>.git/...   smart HTTP through git-http-backend, Basic auth
                                        gitlab-ci-token:<job token of an executing job>

Jobs come from POST /_control/enqueue; every request, contract violation (errors), git fetch,
trace byte and artifact is recorded and served by GET /_control/state and /_control/job/ID.
The control API (no auth, loopback) is documented in gitlab-server-notes.md / docs/testing.md.
Trust: test-only; binds 127.0.0.1; bodies are bounded (trace patch 64 MiB, JSON 4 MiB) and
artifact uploads are streamed to files under the state directory, never held in memory.
Exits on SIGTERM/SIGINT or, with --watch-stdin, when stdin reaches EOF.
"""
import argparse
import base64
import binascii
import gzip
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zipfile
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

JSON_MAX = 4 * 1024 * 1024
PATCH_MAX = 64 * 1024 * 1024
GIT_BODY_MAX = 64 * 1024 * 1024
FIELD_MAX = 64 * 1024
ATTESTATION_NAME = "tdx-attestation.json"
ZERO_SHA = "0" * 40
SERVER_VERSION = "17.11.0"

# what GitLab sends in features.failure_reasons (composite sample) and accepts in PUT
FAILURE_REASONS = [
    "unknown_failure", "script_failure", "api_failure", "stuck_or_timeout_failure",
    "runner_system_failure", "missing_dependency_failure", "runner_unsupported",
    "stale_schedule", "job_execution_timeout", "archived_failure", "unmet_prerequisites",
    "scheduler_failure", "data_integrity_failure", "forward_deployment_failure",
    "user_blocked", "project_deleted", "insufficient_bridge_permissions",
    "downstream_bridge_project_not_found", "invalid_bridge_trigger",
    "bridge_pipeline_is_child_pipeline", "downstream_pipeline_creation_failed",
    "secrets_provider_not_found", "reached_max_descendant_pipelines_depth",
    "image_pull_failure",
]
# Ci::JobArtifact.file_types keys (subset that matters) and file_formats
ARTIFACT_TYPES = {
    "archive", "metadata", "trace", "junit", "sast", "dependency_scanning",
    "container_scanning", "dast", "codequality", "license_scanning", "performance",
    "metrics", "metrics_referee", "network_referee", "lsif", "dotenv", "cobertura",
    "terraform", "accessibility", "cluster_applications", "secret_detection",
    "requirements", "coverage_fuzzing", "browser_performance", "load_performance",
    "api_fuzzing", "cyclonedx", "annotations", "jacoco", "repository_xray",
}
ARTIFACT_FORMATS = {"zip", "gzip", "raw"}
EXECUTING = ("running", "canceling")
FINAL = ("success", "failed", "canceled")


class BadRequest(Exception):
    pass


# ---------------------------------------------------------------------------- state


class Job:
    def __init__(self, jid, token, project, spec):
        self.id = jid
        self.token = token
        self.project = project          # project record (dict)
        self.spec = spec
        self.status = "pending"         # GitLab's job.status
        self.assigned = False
        self.waiting_ack = False        # two-phase commit: assigned, not yet accepted
        self.ack_deadline = 0.0
        self.runner_features = {}
        self.payload = None             # the job JSON handed out (dict)
        self.sha = ""
        self.ref = ""
        self.pipeline_id = 0
        self.secrets = []               # (name, bytes) that must never appear in the trace
        self.trace_path = ""
        self.trace_size = 0
        self.trace_crc = 0
        self.trace_tail = b""
        self.acked = 0                  # trace size the client was last told (Range)
        self.patches = 0
        self.range_errors = 0
        self.leaks = 0
        self.told_status = None         # last Job-Status actually delivered
        self.final_202_left = 0
        self.first_final = None         # first final PUT params (GitLab's pending_state)
        self.updates = []               # PUT bodies, summarised
        self.final = None               # accepted final state record
        self.final_by = None            # "runner" | "server"
        self.cancel_mode = None
        self.artifacts = []
        self.created = time.time()


class State:
    def __init__(self, opts, state_dir):
        self.opts = opts
        self.state_dir = state_dir
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.t0 = time.monotonic()
        self.seq = 0
        self.requests = []
        self.errors = []
        self.fetches = []
        self.faults = []
        self.jobs = {}
        self.queue = []
        self.projects = {}
        self.next_job = 1001
        self.next_project = 4
        self.queue_value = secrets.token_hex(16)
        self.told_last_update = set()   # runner tokens that got an X-GitLab-Last-Update
        self.public_url = ""
        self.settings = {
            "trace_update_interval": opts.trace_update_interval,
            "final_202": opts.final_202,
            "artifact_max_bytes": opts.artifact_max_bytes,
            "trace_limit": opts.trace_limit,
            "ack_timeout": opts.ack_timeout,
            "long_poll": opts.long_poll,
            "inline_trace_max": opts.inline_trace_max,
        }

    def error(self, code, message, job=None, seq=None):
        self.errors.append({"seq": seq, "job": job.id if job else None, "code": code,
                            "message": message})

    def add_project(self, path, repo):
        if not re.match(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$", path) or path.endswith(".git"):
            raise BadRequest("project path must be group/name (no .git)")
        if repo is not None:
            repo = os.path.abspath(repo)
            if not os.path.isdir(repo):
                raise BadRequest("repo %s is not a directory" % repo)
        p = self.projects.get(path)
        if p is None:
            p = {"id": self.next_project, "path": path, "repo": repo}
            self.next_project += 1
            self.projects[path] = p
        else:
            p["repo"] = repo
        return p

    def expire(self, job):
        """Two-phase commit: a job not accepted within ack_timeout is dropped by GitLab."""
        t = self.settings["ack_timeout"]
        if job.waiting_ack and t and time.monotonic() > job.ack_deadline:
            job.waiting_ack = False
            job.status = "failed"
            job.final_by = "server"
            job.final = {"state": "failed", "failure_reason": "runner_provisioning_timeout",
                         "by": "server"}
            self.cond.notify_all()


# ---------------------------------------------------------------------------- helpers


class Resp:
    def __init__(self, status, body=b"", headers=None, ctype="application/json"):
        self.status = status
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.body = body
        self.headers = dict(headers or {})
        self.ctype = ctype


def jmsg(status, msg, headers=None):
    return Resp(status, {"message": msg}, headers)


class Body:
    """Request body from Content-Length or chunked transfer coding, read incrementally."""

    def __init__(self, rfile, headers):
        self.rfile = rfile
        self.chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()
        self.left = 0
        self.done = False
        self.total = 0
        if not self.chunked:
            cl = headers.get("Content-Length")
            try:
                self.left = int(cl) if cl else 0
            except ValueError:
                raise BadRequest("bad Content-Length")
            if self.left < 0:
                raise BadRequest("bad Content-Length")
            self.done = self.left == 0

    def read(self, n=262144):
        if self.done:
            return b""
        if not self.chunked:
            d = self.rfile.read(min(n, self.left))
            if not d:
                raise BadRequest("body truncated")
            self.left -= len(d)
            self.done = self.left == 0
            self.total += len(d)
            return d
        if self.left == 0:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise BadRequest("bad chunk size")
            if size == 0:
                while True:
                    t = self.rfile.readline(8192)
                    if t in (b"\r\n", b"\n", b""):
                        break
                self.done = True
                return b""
            self.left = size
        d = self.rfile.read(min(n, self.left))
        if not d:
            raise BadRequest("body truncated")
        self.left -= len(d)
        if self.left == 0:
            self.rfile.readline(8)
        self.total += len(d)
        return d

    def read_all(self, cap):
        """Whole body, or None when larger than cap (the rest is drained)."""
        parts, size, over = [], 0, False
        while True:
            d = self.read()
            if not d and self.done:
                break
            size += len(d)
            if size > cap:
                over = True
                parts = []
            if not over:
                parts.append(d)
        return None if over else b"".join(parts)

    def drain(self):
        while not self.done:
            self.read()


def crc_str(c):
    return "crc32:%08x" % (c & 0xffffffff)


def slug(s):
    s = re.sub(r"[^a-z0-9]", "-", s.lower())[:63]
    return s.strip("-")


def git(repo, *args):
    r = subprocess.run(["git", "-C", repo] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    if r.returncode != 0:
        raise BadRequest("git %s: %s" % (" ".join(args), r.stderr.decode(errors="replace").strip()))
    return r.stdout.decode(errors="replace")


# ---------------------------------------------------------------------------- job JSON


def build_job(st, spec):
    """Create a queued Job from a control spec; raises BadRequest on a bad spec."""
    if not isinstance(spec, dict):
        raise BadRequest("spec must be a JSON object")
    ppath = spec.get("project")
    if ppath is None:
        if len(st.projects) != 1:
            raise BadRequest("several projects: name one with \"project\"")
        ppath = next(iter(st.projects))
    proj = st.projects.get(ppath)
    if proj is None:
        proj = st.add_project(ppath, None)
    jid = st.next_job
    token = "glcbt-" + secrets.token_urlsafe(18)
    job = Job(jid, token, proj, spec)
    job.pipeline_id = 500 + jid

    sha = spec.get("sha")
    ref = spec.get("ref")
    before = ZERO_SHA
    commit = {"message": "test commit\n", "author": "Test User <test@example.com>",
              "timestamp": "2026-01-01T00:00:00+00:00"}
    repo = proj["repo"]
    if repo:
        sha = git(repo, "rev-parse", "--verify", (sha or "HEAD") + "^{commit}").strip()
        if ref is None:
            r = subprocess.run(["git", "-C", repo, "symbolic-ref", "--short", "HEAD"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            ref = r.stdout.decode().strip() or "main"
        out = git(repo, "log", "-1", "--format=%P%x00%an <%ae>%x00%aI%x00%B", sha)
        parents, author, ts, msg = (out.split("\x00") + ["", "", "", ""])[:4]
        if parents.split():
            before = parents.split()[0]
        commit = {"message": msg.rstrip("\n") + "\n", "author": author, "timestamp": ts}
    else:
        sha = sha or hashlib.sha1(b"tdxr-%d" % jid).hexdigest()
        ref = ref or "main"
        if not re.match(r"^[0-9a-f]{40}$", sha):
            raise BadRequest("sha must be 40 hex digits")
    job.sha, job.ref = sha, ref

    def lines(name, default):
        v = spec.get(name, default)
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise BadRequest("%s must be a list of strings" % name)
        return v

    script = lines("script", ["echo hello"])
    after = lines("after_script", [])
    timeout = int(spec.get("timeout", 3600))
    step_timeout = int(spec.get("step_timeout", timeout))
    depth = int(spec.get("depth", 20))
    name = str(spec.get("name", "test-job"))
    stage = str(spec.get("stage", "test"))

    u = urllib.parse.urlsplit(st.public_url)
    host, port = u.hostname, u.port or (443 if u.scheme == "https" else 80)
    hostport = u.netloc
    purl = "%s/%s" % (st.public_url, ppath)
    repo_url = "%s://gitlab-ci-token:%s@%s/%s.git" % (u.scheme, token, hostport, ppath)
    pns = ppath.rsplit("/", 1)[0]
    pname = ppath.rsplit("/", 1)[1]
    title = commit["message"].split("\n", 1)[0]
    desc = commit["message"].split("\n", 1)[1] if "\n" in commit["message"].rstrip("\n") else ""

    def v(key, value, public=True, masked=False):
        return {"key": key, "value": str(value), "public": public, "masked": masked}

    variables = [
        v("CI_PIPELINE_ID", job.pipeline_id),
        v("CI_PIPELINE_URL", "%s/-/pipelines/%d" % (purl, job.pipeline_id)),
        v("CI_JOB_ID", jid),
        v("CI_JOB_URL", "%s/-/jobs/%d" % (purl, jid)),
        v("CI_JOB_TOKEN", token, public=False, masked=True),
        v("CI_JOB_STARTED_AT", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
        v("CI_JOB_TIMEOUT", timeout),
        v("CI_REGISTRY_USER", "gitlab-ci-token"),
        v("CI_REGISTRY_PASSWORD", token, public=False, masked=True),
        v("CI_REPOSITORY_URL", repo_url, public=False),
        v("CI_DEPENDENCY_PROXY_USER", "gitlab-ci-token"),
        v("CI_DEPENDENCY_PROXY_PASSWORD", token, public=False, masked=True),
        v("CI_JOB_NAME", name),
        v("CI_JOB_NAME_SLUG", slug(name)),
        v("CI_JOB_STAGE", stage),
        v("CI_NODE_TOTAL", 1),
        v("GITLAB_CI", "true"),
        v("CI_SERVER_URL", st.public_url),
        v("CI_SERVER_HOST", host),
        v("CI_SERVER_PORT", port),
        v("CI_SERVER_PROTOCOL", u.scheme),
        v("CI_SERVER_NAME", "GitLab"),
        v("CI_SERVER_VERSION", SERVER_VERSION),
        v("CI_SERVER_VERSION_MAJOR", SERVER_VERSION.split(".")[0]),
        v("CI_SERVER_VERSION_MINOR", SERVER_VERSION.split(".")[1]),
        v("CI_SERVER_VERSION_PATCH", SERVER_VERSION.split(".")[2]),
        v("CI_SERVER_REVISION", "0000000000"),
        v("GITLAB_FEATURES", ""),
        v("CI_PROJECT_ID", proj["id"]),
        v("CI_PROJECT_NAME", pname),
        v("CI_PROJECT_TITLE", pname),
        v("CI_PROJECT_PATH", ppath),
        v("CI_PROJECT_PATH_SLUG", slug(ppath)),
        v("CI_PROJECT_NAMESPACE", pns),
        v("CI_PROJECT_ROOT_NAMESPACE", pns.split("/")[0]),
        v("CI_PROJECT_URL", purl),
        v("CI_PROJECT_VISIBILITY", "private"),
        v("CI_DEFAULT_BRANCH", "main"),
        v("CI_CONFIG_PATH", ".gitlab-ci.yml"),
        v("CI_API_V4_URL", st.public_url + "/api/v4"),
        v("CI_PIPELINE_IID", jid - 1000),
        v("CI_PIPELINE_SOURCE", "push"),
        v("CI_PIPELINE_CREATED_AT", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
        v("CI_COMMIT_SHA", sha),
        v("CI_COMMIT_SHORT_SHA", sha[:8]),
        v("CI_COMMIT_BEFORE_SHA", before),
        v("CI_COMMIT_REF_NAME", ref),
        v("CI_COMMIT_REF_SLUG", slug(ref)),
        v("CI_COMMIT_BRANCH", ref),
        v("CI_COMMIT_MESSAGE", commit["message"]),
        v("CI_COMMIT_TITLE", title),
        v("CI_COMMIT_DESCRIPTION", desc),
        v("CI_COMMIT_REF_PROTECTED", "false"),
        v("CI_COMMIT_TIMESTAMP", commit["timestamp"]),
        v("CI_COMMIT_AUTHOR", commit["author"]),
        v("CI_RUNNER_ID", 42),
        v("CI_RUNNER_DESCRIPTION", "tdx-runner test"),
        v("CI_RUNNER_TAGS", "[]"),
        v("GITLAB_USER_ID", 2),
        v("GITLAB_USER_EMAIL", "test@example.com"),
        v("GITLAB_USER_LOGIN", "test"),
        v("GITLAB_USER_NAME", "Test User"),
    ]
    uv = spec.get("variables", [])
    if isinstance(uv, dict):
        uv = [{"key": k, "value": val} for k, val in uv.items()]
    if not isinstance(uv, list):
        raise BadRequest("variables must be a list or an object")
    for e in uv:
        if not isinstance(e, dict) or not isinstance(e.get("key"), str) or \
                not isinstance(e.get("value", ""), str):
            raise BadRequest("each variable needs a string key and value")
        masked = bool(e.get("masked", False))
        if masked and len(e.get("value", "")) < 8:
            raise BadRequest("masked variable %s: GitLab requires at least 8 characters" % e["key"])
        ent = {"key": e["key"], "value": e.get("value", ""),
               "public": bool(e.get("public", not masked)), "masked": masked}
        if e.get("file"):
            ent["file"] = True
        if e.get("raw"):
            ent["raw"] = True
        variables.append(ent)

    seen = set()
    for e in variables:
        if e["masked"] and e["value"] not in seen:
            seen.add(e["value"])
            job.secrets.append((e["key"], e["value"].encode()))
    for t in st.opts.runner_token:
        job.secrets.append(("runner token", t.encode()))

    steps = spec.get("steps")
    if steps is None:
        steps = [{"name": "script", "script": script, "timeout": step_timeout,
                  "when": spec.get("when", "on_success"),
                  "allow_failure": bool(spec.get("allow_failure", False))}]
        if after:
            steps.append({"name": "after_script", "script": after, "timeout": step_timeout,
                          "when": "always", "allow_failure": True})
    arts = []
    for a in spec.get("artifacts", []):
        if not isinstance(a, dict):
            raise BadRequest("artifacts entries must be objects")
        e = {"name": a.get("name", "artifacts"), "untracked": bool(a.get("untracked", False)),
             "paths": a.get("paths", []), "when": a.get("when", "on_success"),
             "expire_in": a.get("expire_in"), "artifact_type": a.get("artifact_type", "archive"),
             "artifact_format": a.get("artifact_format", "zip")}
        if "exclude" in a:
            e["exclude"] = a["exclude"]
        arts.append(e)

    # newest GitLab (Ci::BuildRunnerPresenter) sends +refs/pipelines/N:refs/pipelines/N; an
    # earlier era sent the sha as the source (the composite sample's form): "refspec_sha": true
    pref = "refs/pipelines/%d" % job.pipeline_id
    refspecs = ["+%s:%s" % (sha if spec.get("refspec_sha") else pref, pref)]
    if depth > 0:
        refspecs.append("+refs/heads/%s:refs/remotes/origin/%s" % (ref, ref))
    else:
        refspecs += ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]

    payload = {
        "id": jid,
        "token": token,
        "allow_git_fetch": True,
        "job_info": {"id": jid, "name": name, "stage": stage, "project_id": proj["id"],
                     "project_name": pname, "time_in_queue_seconds": 0},
        "git_info": {"repo_url": repo_url, "ref": ref, "sha": sha, "before_sha": before,
                     "ref_type": "branch", "refspecs": refspecs, "depth": depth},
        "runner_info": {"timeout": timeout, "runner_session_url": None},
        "variables": variables,
        "steps": steps,
        "hooks": spec.get("hooks", []),
        "image": spec.get("image"),
        "services": spec.get("services", []),
        "artifacts": arts,
        "cache": spec.get("cache", []),
        "credentials": [],
        "dependencies": spec.get("dependencies", []),
        "features": {"trace_sections": True, "failure_reasons": FAILURE_REASONS[:23]},
    }
    extra = spec.get("extra", {})
    if not isinstance(extra, dict):
        raise BadRequest("extra must be an object")
    payload.update(extra)
    job.payload = payload
    if repo:
        # GitLab keeps a persistent ref per pipeline so the runner can fetch the exact commit
        git(repo, "update-ref", "refs/pipelines/%d" % job.pipeline_id, sha)
    st.next_job += 1
    jdir = os.path.join(st.state_dir, "job-%d" % jid)
    os.makedirs(jdir, exist_ok=True)
    job.trace_path = os.path.join(jdir, "trace.log")
    open(job.trace_path, "wb").close()
    return job


# ---------------------------------------------------------------------------- multipart


def multipart_stream(body, boundary, on_file):
    """Parse multipart/form-data from body, streaming file parts into on_file(name,
    filename) -> sink (with write(bytes)/close()). Returns {field: str} for plain fields."""
    delim = b"--" + boundary
    sep = b"\r\n" + delim
    buf = b""
    fields = {}

    def fill():
        nonlocal buf
        d = body.read()
        if not d:
            if body.done:
                return False
        buf += d
        return True

    # preamble up to the first delimiter
    while True:
        i = buf.find(delim)
        if i >= 0:
            buf = buf[i + len(delim):]
            break
        if len(buf) > FIELD_MAX:
            buf = buf[-len(delim):]
        if not fill():
            raise BadRequest("multipart: no boundary")
    while True:
        while len(buf) < 2:
            if not fill():
                raise BadRequest("multipart: truncated")
        if buf[:2] == b"--":
            body.drain()
            return fields
        if buf[:2] != b"\r\n":
            raise BadRequest("multipart: bad delimiter line")
        buf = buf[2:]
        while True:
            i = buf.find(b"\r\n\r\n")
            if i >= 0:
                break
            if len(buf) > FIELD_MAX or not fill():
                raise BadRequest("multipart: bad part headers")
        hdrs = {}
        for line in buf[:i].decode("latin-1").split("\r\n"):
            if ":" in line:
                k, val = line.split(":", 1)
                hdrs[k.strip().lower()] = val.strip()
        buf = buf[i + 4:]
        cd = hdrs.get("content-disposition", "")
        m = re.search(r'\bname="([^"]*)"', cd)
        fm = re.search(r'\bfilename="([^"]*)"', cd)
        name = m.group(1) if m else ""
        sink = on_file(name, fm.group(1)) if fm else None
        acc = []
        accn = 0
        while True:
            i = buf.find(sep)
            if i >= 0:
                chunk, buf = buf[:i], buf[i + len(sep):]
            else:
                # keep what could be the start of a delimiter split across reads
                cut = max(0, len(buf) - (len(sep) - 1))
                chunk, buf = buf[:cut], buf[cut:]
            if chunk:
                if sink is not None:
                    sink.write(chunk)
                elif accn < FIELD_MAX:
                    acc.append(chunk)
                    accn += len(chunk)
            if i >= 0:
                break
            if not fill():
                raise BadRequest("multipart: truncated part")
        if sink is not None:
            sink.close()
        else:
            fields[name] = b"".join(acc)[:FIELD_MAX].decode("utf-8", errors="replace")


class FileSink:
    def __init__(self, path, limit):
        self.f = open(path, "wb")
        self.path = path
        self.limit = limit
        self.size = 0
        self.sha = hashlib.sha256()
        self.over = False

    def write(self, d):
        self.size += len(d)
        if self.over:
            return
        if self.limit and self.size > self.limit:
            self.over = True
            self.f.close()
            os.unlink(self.path)
            return
        self.f.write(d)
        self.sha.update(d)

    def close(self):
        if not self.f.closed:
            self.f.close()


def inspect_zip(path):
    r = {"zip_ok": False, "names": [], "sizes": {}, "attestation": {"present": False, "json_ok": False}}
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            r["names"] = [i.filename for i in infos][:10000]
            r["sizes"] = {i.filename: i.file_size for i in infos[:10000]}
            bad = z.testzip()
            if bad is not None:
                r["zip_error"] = "bad CRC in %s" % bad
                return r
            r["zip_ok"] = True
            if ATTESTATION_NAME in r["sizes"]:
                r["attestation"]["present"] = True
                if r["sizes"][ATTESTATION_NAME] <= 16 * 1024 * 1024:
                    try:
                        doc = json.loads(z.read(ATTESTATION_NAME).decode("utf-8"))
                        r["attestation"]["json_ok"] = True
                        if isinstance(doc, dict):
                            r["attestation"]["keys"] = sorted(doc.keys())[:50]
                    except (ValueError, UnicodeDecodeError) as e:
                        r["attestation"]["error"] = str(e)[:200]
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        r["zip_error"] = str(e)[:200]
    return r


# ---------------------------------------------------------------------------- handler


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gitlab-test/1"

    def log_message(self, fmt, *args):
        if self.server.st.opts.verbose:
            sys.stderr.write("gitlab_server: " + (fmt % args) + "\n")

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_DELETE(self):
        self.dispatch("DELETE")

    # -- plumbing

    def send(self, r):
        self.send_response(r.status)
        self.send_header("Content-Type", r.ctype)
        self.send_header("Content-Length", str(len(r.body)))
        for k, v in r.headers.items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.write(r.body)

    def abort(self, mode, hang=30.0):
        self.close_connection = True
        if mode == "hang":
            time.sleep(hang)
        try:
            if mode == "reset":
                # linger 0: close() sends RST instead of FIN
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
            self.connection.close()
        except OSError:
            pass

    def take_fault(self, op, job_id, when):
        st = self.server.st
        for f in st.faults:
            if f["op"] == op and f["when"] == when and f["count"] != 0 and \
                    (f["job"] is None or f["job"] == job_id):
                if f["count"] > 0:
                    f["count"] -= 1
                return dict(f)
        return None

    def fault_resp(self, f, job):
        h = {}
        if f.get("retry_after") is not None:
            h["Retry-After"] = str(f["retry_after"])
        if f["status"] == 416 and job is not None:
            h["Range"] = "0-%d" % job.trace_size
            return Resp(416, {"message": "416 Range Not Satisfiable"}, h)
        if f["status"] == 202 and job is not None and f["op"] == "update":
            h["X-GitLab-Trace-Update-Interval"] = str(self.server.st.settings["trace_update_interval"])
        return Resp(f["status"], {"message": "injected fault %d" % f["status"]}, h)

    def dispatch(self, method):
        st = self.server.st
        u = urllib.parse.urlsplit(self.path)
        path, query = u.path, urllib.parse.parse_qs(u.query)
        try:
            body = Body(self.rfile, self.headers)
        except BadRequest as e:
            self.close_connection = True
            return self.send(jmsg(400, str(e)))
        if path.startswith("/_control/"):
            try:
                return self.send(self.control(method, path, query, body))
            except BadRequest as e:
                return self.send(jmsg(400, str(e)))
        op, job_id, handler = self.route(method, path)
        with st.lock:
            st.seq += 1
            seq = st.seq
            rec = {"seq": seq, "t": round(time.monotonic() - st.t0, 4), "method": method,
                   "path": self.path, "op": op, "job": job_id, "status": None, "fault": None,
                   "content_range": None, "bytes": None, "body": None, "status_lost": None}
            if len(st.requests) < 200000:
                st.requests.append(rec)
            f = self.take_fault(op, job_id, "before") if op else None
            job = st.jobs.get(job_id) if job_id is not None else None
        if f is not None:
            rec["fault"] = f["mode"] if f["mode"] != "status" else f["status"]
            try:
                body.drain()
            except (BadRequest, OSError):
                self.close_connection = True
            if f["mode"] != "status":
                rec["status"] = None
                return self.abort(f["mode"], f.get("hang", 30.0))
            r = self.fault_resp(f, job)
            rec["status"] = r.status
            return self.send(r)
        if handler is None:
            try:
                body.drain()
            except BadRequest:
                self.close_connection = True
            rec["status"] = 404
            return self.send(Resp(404, {"error": "404 Not Found"}))
        try:
            r = handler(seq, rec, job_id, query, body)
        except BadRequest as e:
            self.close_connection = True
            r = jmsg(400, str(e))
        if r is None:           # handler already answered (git)
            return None
        try:
            if not body.done:
                body.drain()
        except BadRequest:
            self.close_connection = True
        with st.lock:
            f = self.take_fault(op, job_id, "after")
        if f is not None:
            rec["fault"] = "after:" + (f["mode"] if f["mode"] != "status" else str(f["status"]))
            rec["status_lost"] = r.status
            if f["mode"] != "status":
                rec["status"] = None
                return self.abort(f["mode"], f.get("hang", 30.0))
            r = self.fault_resp(f, job)
        rec["status"] = r.status
        with st.lock:
            j = st.jobs.get(job_id) if job_id is not None else None
            if j is not None:
                if "Range" in r.headers and op == "trace":
                    j.acked = int(r.headers["Range"].split("-")[1])
                if "Job-Status" in r.headers:
                    j.told_status = r.headers["Job-Status"]
        self.send(r)

    def route(self, method, path):
        m = re.match(r"^/api/v4/jobs/(\d+)(/trace|/artifacts)?$", path)
        if path == "/api/v4/runners/verify":
            return "verify", None, self.op_verify if method == "POST" else None
        if path == "/api/v4/jobs/request":
            return "request", None, self.op_request if method == "POST" else None
        if m:
            jid = int(m.group(1))
            if m.group(2) is None:
                return "update", jid, self.op_update if method == "PUT" else None
            if m.group(2) == "/trace":
                return "trace", jid, self.op_trace if method == "PATCH" else None
            return "artifacts", jid, self.op_artifacts if method == "POST" else None
        m = re.match(r"^/(.+?)\.git(/info/refs|/git-upload-pack|/git-receive-pack)$", path)
        if m:
            return "git", None, lambda seq, rec, jid, q, body: self.op_git(method, m.group(1), m.group(2), seq, rec, q, body)
        return None, None, None

    def json_body(self, body, seq, job=None):
        raw = body.read_all(JSON_MAX)
        if raw is None:
            raise BadRequest("body too large")
        ct = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        st = self.server.st
        if ct != "application/json":
            with st.lock:
                st.error("content_type", "JSON body sent with Content-Type %r" % ct, job, seq)
        try:
            doc = json.loads(raw.decode("utf-8")) if raw else {}
        except (ValueError, UnicodeDecodeError):
            with st.lock:
                st.error("bad_json", "body is not JSON", job, seq)
            raise BadRequest("body is not valid JSON")
        if not isinstance(doc, dict):
            raise BadRequest("body must be a JSON object")
        return doc

    # -- runner endpoints

    def op_verify(self, seq, rec, _jid, _q, body):
        st = self.server.st
        doc = self.json_body(body, seq)
        tok = doc.get("token")
        with st.lock:
            if not isinstance(tok, str):
                st.error("runner_token_missing", "verify without token", None, seq)
                return Resp(400, {"error": "token is missing"})
            if tok not in st.opts.runner_token:
                st.error("bad_runner_token", "verify with a wrong runner token", None, seq)
                return jmsg(403, "403 Forbidden")
        return Resp(200, {"id": 42, "token": tok, "token_expires_at": None})

    def op_request(self, seq, rec, _jid, _q, body):
        st = self.server.st
        doc = self.json_body(body, seq)
        rec["body"] = doc
        tok = doc.get("token")
        with st.lock:
            if not isinstance(tok, str):
                st.error("runner_token_missing", "jobs/request without token", None, seq)
                return Resp(400, {"error": "token is missing"})
            if tok not in st.opts.runner_token:
                st.error("bad_runner_token", "jobs/request with a wrong runner token", None, seq)
                return jmsg(403, "403 Forbidden")
            info = doc.get("info")
            missing = []
            if not isinstance(info, dict):
                missing = ["info"]
                info = {}
            else:
                for k in ("name", "version", "platform", "architecture", "executor", "features"):
                    if k not in info:
                        missing.append("info." + k)
            if missing:
                st.error("request_info_missing", "jobs/request lacks " + ", ".join(missing), None, seq)
            feats = info.get("features") if isinstance(info.get("features"), dict) else {}
            if any(not isinstance(x, bool) for x in feats.values()):
                st.error("request_features_type", "info.features values must be booleans", None, seq)
            lu = doc.get("last_update")
            if tok in st.told_last_update and lu is None:
                st.error("last_update_not_echoed", "jobs/request without last_update after a 204 "
                         "carried X-GitLab-Last-Update", None, seq)
            lp = st.settings["long_poll"]
            if not st.queue and lp and lu == st.queue_value:
                st.cond.wait_for(lambda: st.queue, timeout=lp)
            if not st.queue:
                st.told_last_update.add(tok)
                return Resp(204, b"", {"X-GitLab-Last-Update": st.queue_value}, ctype="text/plain")
            job = st.queue.pop(0)
            job.assigned = True
            job.runner_features = dict(feats)
            if feats.get("two_phase_job_commit") is True:
                job.waiting_ack = True
                job.ack_deadline = time.monotonic() + (st.settings["ack_timeout"] or 0)
            else:
                job.status = "running"
            job.final_202_left = int(job.spec.get("final_202", st.settings["final_202"]))
            job.payload["job_info"]["time_in_queue_seconds"] = int(time.time() - job.created)
            rec["job"] = job.id
            st.cond.notify_all()
            return Resp(201, job.payload)

    def auth_job(self, jid, token, seq, what):
        """authenticate_job!: 403 for unknown job / wrong token; 403 + Job-Status when the job
        is not executing (running, canceling, or waiting for a two-phase ack)."""
        st = self.server.st
        job = st.jobs.get(jid)
        if job is None or not job.assigned:
            st.error("unknown_job", "%s for job %d that this runner does not hold" % (what, jid), job, seq)
            return None, jmsg(403, "403 Forbidden")
        if not token or not secrets.compare_digest(token.encode(), job.token.encode()):
            st.error("bad_job_token", "%s with %s job token" % (what, "a wrong" if token else "no"), job, seq)
            return None, jmsg(403, "403 Forbidden")
        st.expire(job)
        if job.status not in EXECUTING and not job.waiting_ack:
            # the runner ended this job itself, or was already told it ended
            if job.final_by == "runner" or job.told_status == job.status:
                st.error("job_not_running", "%s after the job ended (%s)" % (what, job.status), job, seq)
            return None, jmsg(403, "Job is not processing on runner", {"Job-Status": job.status})
        return job, None

    def op_trace(self, seq, rec, jid, q, body):
        st = self.server.st
        data = body.read_all(PATCH_MAX)
        rec["content_range"] = self.headers.get("Content-Range")
        rec["bytes"] = body.total
        with st.lock:
            job, err = self.auth_job(jid, self.headers.get("JOB-TOKEN") or q.get("token", [None])[0],
                                     seq, "trace PATCH")
            if err:
                return err
            if data is None:
                st.error("trace_patch_too_big", "a trace PATCH over %d bytes" % PATCH_MAX, job, seq)
                return jmsg(413, "413 Request Entity Too Large")
            cr = self.headers.get("Content-Range")
            if cr is None:
                st.error("content_range_missing", "trace PATCH without Content-Range", job, seq)
                return jmsg(400, "400 Missing header Content-Range")
            m = re.match(r"^(\d+)-(\d+)$", cr.strip())
            if not m:
                st.error("content_range_malformed", "Content-Range %r is not start-end" % cr, job, seq)
                return jmsg(400, "400 Bad Content-Range")
            start, end = int(m.group(1)), int(m.group(2))
            if not data:
                st.error("empty_patch", "empty trace PATCH (gitlab-runner never sends one)", job, seq)
            elif end != start + len(data) - 1:
                st.error("content_range_end", "Content-Range %s but %d bytes (end must be "
                         "start+len-1)" % (cr, len(data)), job, seq)
            ct = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ct != "text/plain":
                st.error("trace_content_type", "trace PATCH with Content-Type %r" % ct, job, seq)
            job.patches += 1
            lim = st.settings["trace_limit"]
            if lim and start + len(data) > lim:
                job.status = "failed"
                job.final_by = "server"
                job.final = {"state": "failed", "failure_reason": "trace_size_exceeded", "by": "server"}
                st.cond.notify_all()
                return jmsg(403, "403 Forbidden")
            if start != job.trace_size:
                job.range_errors += 1
                if start > job.trace_size:
                    st.error("trace_gap", "PATCH starts at %d but the trace has %d bytes" %
                             (start, job.trace_size), job, seq)
                elif start < job.acked:
                    st.error("trace_resent_acked", "PATCH starts at %d but %d bytes were already "
                             "acknowledged" % (start, job.acked), job, seq)
                return Resp(416, {"message": "416 Range Not Satisfiable"},
                            {"Range": "0-%d" % job.trace_size})
            if data:
                self.append_trace(job, data, seq)
            return Resp(202, b"", {"Job-Status": job.status if not job.waiting_ack else "pending",
                                   "Range": "0-%d" % job.trace_size,
                                   "X-GitLab-Trace-Update-Interval": str(st.settings["trace_update_interval"])},
                        ctype="text/plain")

    def append_trace(self, job, data, seq):
        st = self.server.st
        with open(job.trace_path, "ab") as f:
            f.write(data)
        old = job.trace_size
        job.trace_size += len(data)
        job.trace_crc = zlib.crc32(data, job.trace_crc)
        if not job.secrets:
            return
        maxlen = max(len(s) for _, s in job.secrets)
        window = job.trace_tail + data
        tl = len(job.trace_tail)
        for name, s in job.secrets:
            i = window.find(s)
            while i >= 0:
                if i + len(s) > tl:
                    job.leaks += 1
                    if job.leaks <= 10:
                        st.error("secret_in_trace", "%s appears unmasked at trace offset %d" %
                                 (name, old - tl + i), job, seq)
                i = window.find(s, i + 1)
        job.trace_tail = window[-(maxlen - 1):] if maxlen > 1 else b""

    def op_update(self, seq, rec, jid, _q, body):
        st = self.server.st
        doc = self.json_body(body, seq, st.jobs.get(jid))
        summary = {k: doc[k] for k in ("state", "failure_reason", "exit_code", "checksum", "output")
                   if k in doc}
        rec["body"] = summary
        with st.lock:
            tok = doc.get("token")
            if not isinstance(tok, str):
                st.error("job_token_missing", "PUT /jobs/%d without token in the body" % jid,
                         st.jobs.get(jid), seq)
                return Resp(400, {"error": "token is missing"})
            job, err = self.auth_job(jid, tok, seq, "PUT")
            if err:
                return err
            job.updates.append(summary)
            state = doc.get("state")
            if "trace" in doc:
                st.error("legacy_trace_in_update", "PUT carries the whole trace (pre-11 runners)", job, seq)
            ec = doc.get("exit_code")
            if ec is not None and (not isinstance(ec, int) or isinstance(ec, bool)):
                return Resp(400, {"error": "exit_code is invalid"})
            hdr = {"Job-Status": job.status}
            if job.waiting_ack:
                if state == "pending":
                    job.ack_deadline = time.monotonic() + (st.settings["ack_timeout"] or 0)
                    return Resp(200, "200", {"Job-Status": "pending"}, ctype="text/plain")
                if state != "running":
                    st.error("two_phase_not_acked", "PUT state=%r before accepting the job with "
                             "state=running (two_phase_job_commit)" % (state,), job, seq)
                    return Resp(400, "400", {"Job-Status": "pending"}, ctype="text/plain")
                job.waiting_ack = False
                job.status = "running"
                hdr["Job-Status"] = "running"
                st.cond.notify_all()
            if state == "running":
                return Resp(200, "200", hdr, ctype="text/plain")
            if state not in ("success", "failed"):
                st.error("bad_state", "PUT state=%r" % (state,), job, seq)
                return Resp(400, "400", hdr, ctype="text/plain")
            out = doc.get("output") if isinstance(doc.get("output"), dict) else {}
            checksum = out.get("checksum") or doc.get("checksum")
            if job.first_final is None:
                job.first_final = {"state": state, "failure_reason": doc.get("failure_reason"),
                                   "checksum": checksum, "bytesize": out.get("bytesize")}
            elif job.first_final["state"] != state:
                st.error("final_state_changed", "final PUT says %s after %s" %
                         (state, job.first_final["state"]), job, seq)
            if checksum and job.final_202_left > 0:
                job.final_202_left -= 1
                return Resp(202, "202", {"Job-Status": job.status, "X-GitLab-Trace-Update-Interval":
                                         str(st.settings["trace_update_interval"])}, ctype="text/plain")
            self.finish_job(job, state, doc, out, checksum, seq)
            hdr["Job-Status"] = job.status
            return Resp(200, "200", hdr, ctype="text/plain")

    def finish_job(self, job, state, doc, out, checksum, seq):
        st = self.server.st
        reason = doc.get("failure_reason")
        expected = crc_str(job.trace_crc)
        bytesize = out.get("bytesize")
        verdict = {"sent": checksum, "expected": expected, "match": checksum == expected,
                   "bytesize_sent": bytesize, "bytesize_stored": job.trace_size}
        if not checksum:
            st.error("no_checksum", "final PUT without output.checksum", job, seq)
        elif checksum != expected:
            st.error("checksum_mismatch", "final PUT checksum %s, stored trace %s (%d bytes)" %
                     (checksum, expected, job.trace_size), job, seq)
        if not out.get("checksum") and doc.get("checksum"):
            st.error("no_output_checksum", "checksum only in the deprecated top-level field", job, seq)
        if bytesize is None:
            st.error("no_bytesize", "final PUT without output.bytesize", job, seq)
        elif bytesize != job.trace_size:
            st.error("bytesize_mismatch", "final PUT bytesize %s, stored trace %d bytes" %
                     (bytesize, job.trace_size), job, seq)
        if state == "failed":
            if not reason:
                st.error("no_failure_reason", "state=failed without failure_reason", job, seq)
            elif reason not in FAILURE_REASONS:
                st.error("bad_failure_reason", "failure_reason %r is not one GitLab knows "
                         "(it would store unknown_failure)" % reason, job, seq)
        elif reason:
            st.error("failure_reason_on_success", "state=success with failure_reason %r" % reason, job, seq)
        job.final = {"state": state, "failure_reason": reason, "exit_code": doc.get("exit_code"),
                     "checksum": verdict, "by": "runner", "reported_after": job.status}
        job.status = "canceled" if job.status == "canceling" else state
        job.final_by = "runner"
        st.cond.notify_all()

    def op_artifacts(self, seq, rec, jid, q, body):
        st = self.server.st
        ctype = self.headers.get("Content-Type") or ""
        qtok = q.get("token", [None])[0]
        with st.lock:
            job, err = self.auth_job(jid, self.headers.get("JOB-TOKEN") or qtok, seq, "artifact upload")
            limit = st.settings["artifact_max_bytes"]
            n = len(job.artifacts) if job else 0
        if err:
            body.drain()
            return err
        m = re.search(r'boundary="?([^";]+)"?', ctype)
        if not ctype.lower().startswith("multipart/form-data") or not m:
            body.drain()
            with st.lock:
                st.error("artifact_not_multipart", "artifact upload with Content-Type %r" % ctype, job, seq)
            return jmsg(400, "400 Bad request - file is missing")
        files = {}
        jdir = os.path.dirname(job.trace_path)

        def on_file(name, filename):
            s = FileSink(os.path.join(jdir, "upload-%d-%s.bin" % (n, re.sub(r"\W", "_", name)[:32])), limit)
            s.filename = filename
            files.setdefault(name, s)
            return s
        try:
            fields = multipart_stream(body, m.group(1).encode("latin-1"), on_file)
        finally:
            for s in files.values():
                s.close()
        rec["bytes"] = body.total
        f = files.get("file")
        for k, s in files.items():
            if k != "file" and os.path.exists(s.path):
                os.unlink(s.path)

        def param(k, default):
            return fields.get(k) or q.get(k, [default])[0]
        atype = param("artifact_type", "archive")
        afmt = param("artifact_format", "zip")
        expire = param("expire_in", None)
        with st.lock:
            if f is None:
                st.error("artifact_no_file", "artifact upload without a 'file' part", job, seq)
                return Resp(400, {"error": "file is missing"})
            if f.over:
                job.artifacts.append({"type": atype, "format": afmt, "filename": f.filename, "size": f.size,
                                      "stored": False, "status": 413, "seq": seq})
                return jmsg(413, "file size has reached maximum size limit")
            if atype not in ARTIFACT_TYPES:
                st.error("artifact_type", "artifact_type %r" % atype, job, seq)
                os.unlink(f.path)
                return Resp(400, {"error": "artifact_type does not have a valid value"})
            if afmt not in ARTIFACT_FORMATS:
                st.error("artifact_format", "artifact_format %r" % afmt, job, seq)
                os.unlink(f.path)
                return Resp(400, {"error": "artifact_format does not have a valid value"})
            if atype == "archive" and afmt != "zip":
                st.error("artifact_format", "archive artifacts must be zip, got %r" % afmt, job, seq)
                os.unlink(f.path)
                return jmsg(400, "Validation failed: Invalid file format with specified file type")
            sha = f.sha.hexdigest()
            entry = {"type": atype, "format": afmt, "expire_in": expire, "filename": f.filename,
                     "size": f.size, "sha256": sha, "path": f.path, "seq": seq}
            prev = [a for a in job.artifacts if a["type"] == atype and a["stored"]]
            if prev:
                entry["stored"] = False
                if prev[0]["sha256"] == sha:
                    entry["duplicate_same_content"] = True
                    entry["status"] = 201
                    job.artifacts.append(entry)
                    os.unlink(f.path)
                    return Resp(201, "201", ctype="text/plain")
                st.error("artifact_duplicate", "second %s artifact with different content" % atype, job, seq)
                entry["status"] = 400
                job.artifacts.append(entry)
                os.unlink(f.path)
                return jmsg(400, "another artifact of the same type already exists")
            entry["stored"] = True
            entry["status"] = 201
            declared = [a.get("expire_in") for a in job.payload["artifacts"]
                        if a.get("artifact_type", "archive") == atype and a.get("expire_in")]
            if declared and expire not in declared:
                st.error("artifact_expire_in", "%s upload with expire_in %r, the job declares %r" %
                         (atype, expire, declared[0]), job, seq)
        if afmt == "zip":
            entry.update(inspect_zip(f.path))
        with st.lock:
            if afmt == "zip" and not entry["zip_ok"]:
                st.error("artifact_not_zip", "uploaded %s is not a valid zip: %s" %
                         (atype, entry.get("zip_error")), job, seq)
            job.artifacts.append(entry)
        return Resp(201, "201", ctype="text/plain")

    # -- git smart HTTP

    def op_git(self, method, ppath, sub, seq, rec, q, body):
        st = self.server.st
        service = q.get("service", [None])[0] if sub == "/info/refs" else sub.lstrip("/")
        auth = self.headers.get("Authorization") or ""
        user = pw = None
        if auth.lower().startswith("basic "):
            try:
                user, pw = base64.b64decode(auth[6:].strip()).decode().split(":", 1)
            except (ValueError, binascii.Error, UnicodeDecodeError):
                user = pw = None
        fetch = {"seq": seq, "project": ppath, "path": sub, "service": service, "method": method,
                 "user": user, "job": None}
        data = body.read_all(GIT_BODY_MAX)
        with st.lock:
            st.fetches.append(fetch)
            proj = st.projects.get(ppath)
            job = None
            if pw is not None:
                for j in st.jobs.values():
                    if j.assigned and secrets.compare_digest(pw.encode(), j.token.encode()):
                        job = j
                        break
            if job is not None:
                st.expire(job)
                if job.status not in EXECUTING and not job.waiting_ack:
                    job = None
            ok = user == "gitlab-ci-token" and job is not None
            if pw is not None and not ok:
                st.error("git_bad_credentials", "git %s with credentials that are not a running "
                         "job's token" % service, None, seq)
            if not ok:
                fetch["status"] = 401
                r = Resp(401, "HTTP Basic: Access denied\n", {"WWW-Authenticate": 'Basic realm="GitLab"'},
                         ctype="text/plain")
            elif proj is None or proj["path"] != job.project["path"] or not proj["repo"]:
                fetch["job"] = job.id
                fetch["status"] = 404
                r = Resp(404, "The project you were looking for could not be found.\n", ctype="text/plain")
            elif service != "git-upload-pack" or sub not in ("/info/refs", "/git-upload-pack"):
                fetch["job"] = job.id
                fetch["status"] = 403
                st.error("git_push", "git %s with a job token (GitLab refuses it)" % service, job, seq)
                r = Resp(403, "You are not allowed to upload code.\n", ctype="text/plain")
            else:
                fetch["job"] = job.id
                r = None
            repo = proj["repo"] if proj else None
        if r is not None:
            rec["status"] = r.status
            self.send(r)
            return None
        if data is None:
            rec["status"] = 413
            self.send(Resp(413, "too large\n", ctype="text/plain"))
            return None
        if method == "POST":
            raw = data
            if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
                try:
                    raw = gzip.decompress(data)
                except (OSError, EOFError):
                    raw = b""
            fetch["wants"] = re.findall(rb"want ([0-9a-f]{40})", raw)[:100]
            fetch["wants"] = [w.decode() for w in fetch["wants"]]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": os.path.dirname(repo),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": "/" + os.path.basename(repo) + sub,
            "REQUEST_METHOD": method,
            "QUERY_STRING": urllib.parse.urlsplit(self.path).query,
            "CONTENT_TYPE": self.headers.get("Content-Type") or "",
            "CONTENT_LENGTH": str(len(data)),
            "REMOTE_USER": "gitlab-ci-token",
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": st.state_dir,
            "GIT_CONFIG_COUNT": "3",
            "GIT_CONFIG_KEY_0": "uploadpack.allowAnySHA1InWant", "GIT_CONFIG_VALUE_0": "true",
            "GIT_CONFIG_KEY_1": "uploadpack.allowFilter", "GIT_CONFIG_VALUE_1": "true",
            "GIT_CONFIG_KEY_2": "safe.directory", "GIT_CONFIG_VALUE_2": "*",
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers.get("Content-Encoding")
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers.get("Git-Protocol")
        try:
            p = subprocess.run([st.opts.git_http_backend], input=data, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=120)
            out = p.stdout
        except (OSError, subprocess.TimeoutExpired) as e:
            out = b""
            sys.stderr.write("gitlab_server: git-http-backend: %s\n" % e)
        hend = out.find(b"\r\n\r\n")
        sep = 4
        if hend < 0:
            hend, sep = out.find(b"\n\n"), 2
        if hend < 0:
            rec["status"] = fetch["status"] = 500
            self.send(Resp(500, "git-http-backend failed\n", ctype="text/plain"))
            return None
        status, headers, ctype = 200, {}, "application/octet-stream"
        for line in out[:hend].decode("latin-1").splitlines():
            if ":" not in line:
                continue
            k, v = line.split(":", 1)
            k, v = k.strip(), v.strip()
            if k.lower() == "status":
                status = int(v.split()[0])
            elif k.lower() == "content-type":
                ctype = v
            elif k.lower() not in ("content-length", "transfer-encoding", "connection"):
                headers[k] = v
        rec["status"] = fetch["status"] = status
        self.send(Resp(status, out[hend + sep:], headers, ctype=ctype))
        return None

    # -- control

    def control(self, method, path, q, body):
        st = self.server.st
        raw = body.read_all(JSON_MAX) if method in ("POST", "PUT") else b""
        body.drain()
        try:
            doc = json.loads(raw.decode()) if raw else {}
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("control body is not JSON")
        if not isinstance(doc, dict):
            raise BadRequest("control body must be a JSON object")
        m = re.match(r"^/_control/job/(\d+)(/[a-z]+)?$", path)
        with st.lock:
            if path == "/_control/enqueue" and method == "POST":
                job = build_job(st, doc)
                st.jobs[job.id] = job
                st.queue.append(job)
                st.queue_value = secrets.token_hex(16)
                st.cond.notify_all()
                return Resp(200, {"id": job.id, "token": job.token, "sha": job.sha, "ref": job.ref,
                                  "pipeline_id": job.pipeline_id, "project": job.project["path"]})
            if path == "/_control/repo" and method == "POST":
                p = st.add_project(str(doc.get("project", "")), doc.get("path"))
                return Resp(200, p)
            if path == "/_control/fault" and method == "POST":
                op = doc.get("op")
                if op not in ("request", "verify", "update", "trace", "artifacts", "git"):
                    raise BadRequest("op must be request|verify|update|trace|artifacts|git")
                mode = doc.get("mode", "status")
                if mode not in ("status", "reset", "close", "hang"):
                    raise BadRequest("mode must be status|reset|close|hang")
                when = doc.get("when", "before")
                if when not in ("before", "after") or (op == "git" and when == "after"):
                    raise BadRequest("when must be before|after (git: before only)")
                f = {"op": op, "job": doc.get("job"), "status": int(doc.get("status", 500)),
                     "count": int(doc.get("count", 1)), "retry_after": doc.get("retry_after"),
                     "mode": mode, "when": when, "hang": float(doc.get("hang", 30))}
                st.faults.append(f)
                return Resp(200, {"ok": True, "faults": len(st.faults)})
            if path == "/_control/faults/clear" and method == "POST":
                st.faults.clear()
                return Resp(200, {"ok": True})
            if path == "/_control/set" and method == "POST":
                for k, v in doc.items():
                    if k not in st.settings:
                        raise BadRequest("unknown setting %s" % k)
                    st.settings[k] = type(st.settings[k])(v)
                return Resp(200, st.settings)
            if path == "/_control/state" and method == "GET":
                for j in st.jobs.values():
                    st.expire(j)
                return Resp(200, self.dump(q))
            if path == "/_control/reset" and method == "POST":
                st.requests.clear()
                st.errors.clear()
                st.fetches.clear()
                st.faults.clear()
                return Resp(200, {"ok": True})
            if m:
                job = st.jobs.get(int(m.group(1)))
                if job is None:
                    return Resp(404, {"message": "no such job"})
                sub = m.group(2)
                if sub is None and method == "GET":
                    st.expire(job)
                    return Resp(200, self.job_view(job, full=True))
                if sub == "/trace" and method == "GET":
                    with open(job.trace_path, "rb") as f:
                        return Resp(200, f.read(), ctype="application/octet-stream")
                if sub == "/cancel" and method == "POST":
                    mode = doc.get("status")
                    if mode is None:
                        mode = "canceling" if job.runner_features.get("cancel_gracefully") else "canceled"
                    if mode not in ("canceled", "canceling"):
                        raise BadRequest("status must be canceled|canceling")
                    if job.status in FINAL:
                        return Resp(409, {"message": "job already %s" % job.status})
                    if job in st.queue:
                        st.queue.remove(job)
                    job.cancel_mode = mode
                    job.status = mode
                    job.waiting_ack = False
                    if mode == "canceled":
                        job.final_by = "server"
                        job.final = {"state": "canceled", "by": "server"}
                    st.cond.notify_all()
                    return Resp(200, {"ok": True, "status": mode})
                if sub == "/set" and method == "POST":
                    if "final_202" in doc:
                        job.final_202_left = int(doc["final_202"])
                    return Resp(200, {"ok": True})
                if sub == "/wait" and method == "GET":
                    t = float(q.get("timeout", ["10"])[0])
                    deadline = time.monotonic() + t
                    while True:
                        st.expire(job)
                        if job.status in FINAL:
                            break
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        st.cond.wait(min(left, 0.5))
                    return Resp(200 if job.status in FINAL else 408, self.job_view(job, full=False))
            return Resp(404, {"message": "unknown control endpoint"})

    def job_view(self, job, full):
        st = self.server.st
        v = {
            "id": job.id, "token": job.token, "project": job.project["path"], "sha": job.sha,
            "ref": job.ref, "pipeline_id": job.pipeline_id, "status": job.status,
            "assigned": job.assigned, "waiting_ack": job.waiting_ack,
            "runner_features": job.runner_features, "cancel_mode": job.cancel_mode,
            "told_status": job.told_status,
            "trace": {"size": job.trace_size, "crc32": crc_str(job.trace_crc), "path": job.trace_path,
                      "patches": job.patches, "range_errors": job.range_errors, "acked": job.acked,
                      "leaks": job.leaks},
            "updates": job.updates, "final": job.final,
            "artifacts": job.artifacts,
            "errors": [e for e in st.errors if e["job"] == job.id],
            "fetches": [f for f in st.fetches if f.get("job") == job.id],
        }
        if full:
            if job.trace_size <= st.settings["inline_trace_max"]:
                with open(job.trace_path, "rb") as f:
                    v["trace"]["b64"] = base64.b64encode(f.read()).decode()
            v["requests"] = [r for r in st.requests if r.get("job") == job.id]
            v["payload"] = job.payload
        return v

    def dump(self, q):
        st = self.server.st
        return {
            "url": st.public_url,
            "settings": st.settings,
            "queue": [j.id for j in st.queue],
            "queue_value": st.queue_value,
            "projects": st.projects,
            "requests": st.requests,
            "errors": st.errors,
            "fetches": st.fetches,
            "faults": [f for f in st.faults if f["count"] != 0],
            "jobs": {str(j.id): self.job_view(j, full=False) for j in st.jobs.values()},
        }


# ---------------------------------------------------------------------------- main


def default_backend():
    for p in ("/usr/lib/git-core/git-http-backend", "/usr/libexec/git-core/git-http-backend"):
        if os.access(p, os.X_OK):
            return p
    try:
        ep = subprocess.run(["git", "--exec-path"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            timeout=10).stdout.decode().strip()
        return os.path.join(ep, "git-http-backend")
    except (OSError, subprocess.TimeoutExpired):
        return "git-http-backend"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runner-token", action="append", required=True,
                    help="accepted runner authentication token (repeatable)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--project", default="test/gitlab-test", help="project path for --repo")
    ap.add_argument("--repo", default=None, help="bare git repository served as --project")
    ap.add_argument("--state-dir", default=None, help="where traces and artifacts go (default: a "
                    "temporary directory removed at exit)")
    ap.add_argument("--public-url", default=None, help="base URL put in job payloads "
                    "(default http://127.0.0.1:PORT)")
    ap.add_argument("--trace-update-interval", type=int, default=3)
    ap.add_argument("--final-202", type=int, default=0, help="answer 202 to the first N final PUTs of each job")
    ap.add_argument("--artifact-max-bytes", type=int, default=100 * 1024 * 1024)
    ap.add_argument("--trace-limit", type=int, default=0, help="job log limit in bytes (0: none)")
    ap.add_argument("--ack-timeout", type=float, default=120.0,
                    help="two-phase commit: drop a job not accepted within S seconds (0: never)")
    ap.add_argument("--long-poll", type=float, default=0.0,
                    help="hold jobs/request up to S seconds when last_update is current")
    ap.add_argument("--inline-trace-max", type=int, default=1024 * 1024,
                    help="/_control/job/ID inlines the trace as base64 up to this size")
    ap.add_argument("--git-http-backend", default=None)
    ap.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes")
    ap.add_argument("--verbose", action="store_true")
    opts = ap.parse_args()
    opts.git_http_backend = opts.git_http_backend or default_backend()

    own_dir = opts.state_dir is None
    state_dir = tempfile.mkdtemp(prefix="gitlab-server.") if own_dir else os.path.abspath(opts.state_dir)
    os.makedirs(state_dir, exist_ok=True)
    st = State(opts, state_dir)
    try:
        st.add_project(opts.project, opts.repo)
    except BadRequest as e:
        sys.stderr.write("gitlab_server: %s\n" % e)
        return 2
    srv = ThreadingHTTPServer(("127.0.0.1", opts.port), Handler)
    srv.daemon_threads = True
    srv.st = st
    st.public_url = (opts.public_url or "http://127.0.0.1:%d" % srv.server_address[1]).rstrip("/")

    def stop(*_):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if opts.watch_stdin:
        def watch():
            while os.read(0, 4096):
                pass
            stop()
        threading.Thread(target=watch, daemon=True).start()

    sys.stdout.write("PORT %d\n" % srv.server_address[1])
    sys.stdout.flush()
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        srv.server_close()
        if own_dir:
            shutil.rmtree(state_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
