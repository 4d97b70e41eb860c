#!/usr/bin/env python3
"""github_server.py - a GitHub REST API server for tests (CONTRACTS.md section 5).

Speaks the slice of GitHub's REST API (X-GitHub-Api-Version 2022-11-28) that an ephemeral-runner
manager uses, on 127.0.0.1 (a free port, printed as "PORT n" on stdout first); api.github.com and
uploads.github.com are the same port here:

  POST /app/installations/{id}/access_tokens     RS256 App JWT -> 201 {token, expires_at}
  GET  /repos/{o}/{r}/actions/runs[?status=]     GET .../runs/{id}, .../runs/{id}/jobs
  GET  /repos/{o}/{r}/actions/jobs/{id}          ETag/If-None-Match -> 304, x-ratelimit-*
  POST /repos/{o}/{r}|/orgs/{org} .../actions/runners/generate-jitconfig, GET/DELETE .../runners
  POST /repos/{o}/{r}/check-runs, statuses; releases by tag/id; asset upload streamed to disk
  GET  /_dl/actions-runner.tar.gz                302 to the stand-in runner tarball (SHA-256 in state)
  POST /_runner/claim|heartbeat|step|log|complete  the stand-in runner's side (NOT GitHub's API:
                                                 the real runner talks to the broker)
  workflow_job webhooks (queued/in_progress/completed), signed with X-Hub-Signature-256.

Every request, contract violation (`errors`), runner, job, check run, asset and webhook delivery
is recorded and served by GET /_control/state; the control API (no auth, loopback) is documented
in docs/testing.md (the GitHub test server section).
Trust: test-only; binds 127.0.0.1; JSON bodies are bounded (4 MiB), logs capped, asset uploads
are streamed to files under the state directory, never held in memory.
Exits on SIGTERM/SIGINT or, with --watch-stdin, when stdin reaches EOF.
"""
import argparse
import base64
import binascii
import hashlib
import hmac
import io
import json
import math
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import struct
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_VERSION = "2022-11-28"
ACCEPT = "application/vnd.github+json"
JSON_MAX = 4 * 1024 * 1024
LOG_MAX = 16 * 1024 * 1024
DOCS = "https://docs.github.com/rest"
STATUSES = ("queued", "in_progress", "completed", "waiting", "requested", "pending")
CONCLUSIONS = ("action_required", "cancelled", "failure", "neutral", "success", "skipped",
               "stale", "timed_out")
RUN_FILTERS = STATUSES + CONCLUSIONS
READ_ONLY_LABELS = {"self-hosted", "x64", "arm64", "arm", "linux", "windows", "macos"}
TARBALL_NAME = "actions-runner-linux-x64-2.999.0-stand-in.tar.gz"
# ids above 2^32, as GitHub's job and check-run ids are today: catches 32-bit truncation
FIRST_JOB_ID = 30000000001
FIRST_RUN_ID = 12000000001
FIRST_CHECK_ID = 40000000001
FIRST_ASSET_ID = 2200000001


class BadRequest(Exception):
    pass


def now_iso(t=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


def node_id(kind, n):
    return base64.b64encode(("%s:%s" % (kind, n)).encode()).decode().rstrip("=")


def b64url_decode(s):
    if not re.match(r"^[A-Za-z0-9_-]*$", s):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def sign(secret, body):
    """X-Hub-Signature-256 value: sha256=<lowercase hex HMAC-SHA256(secret, raw body)>."""
    if isinstance(secret, str):
        secret = secret.encode()
    if isinstance(body, str):
        body = body.encode()
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------- plumbing


class Resp:
    def __init__(self, status, body=b"", headers=None, ctype="application/json; charset=utf-8"):
        self.status = status
        if isinstance(body, (dict, list)):
            body = json.dumps(body, indent=None).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.body = body
        self.headers = dict(headers or {})
        self.ctype = ctype


def gh_error(status, message, headers=None, errors=None):
    d = {"message": message, "documentation_url": DOCS, "status": str(status)}
    if errors:
        d["errors"] = errors
    return Resp(status, d, headers)


class Body:
    """Request body from Content-Length or chunked transfer coding, read incrementally."""

    def __init__(self, rfile, headers):
        self.rfile = rfile
        self.chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()
        self.left = 0
        self.done = False
        self.total = 0
        self.has_length = headers.get("Content-Length") is not None
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
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass
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


class Scanner:
    """Finds any of a set of secrets in a byte stream, also when split across writes."""

    def __init__(self, secrets_fn):
        self.secrets_fn = secrets_fn
        self.tail = b""

    def feed(self, data):
        found = []
        sec = [s for s in self.secrets_fn() if s]
        if not sec:
            return found
        window = self.tail + data
        tl = len(self.tail)
        for name, s in sec:
            i = window.find(s)
            while i >= 0:
                if i + len(s) > tl:
                    found.append(name)
                i = window.find(s, i + 1)
        maxlen = max(len(s) for _, s in sec)
        self.tail = window[-(maxlen - 1):] if maxlen > 1 else b""
        return found


# ---------------------------------------------------------------------------- state


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
        self.faults = []
        self.repos = {}             # lower full name -> repo
        self.runs = {}
        self.jobs = {}
        self.runners = {}
        self.groups = {}            # lower org -> {id: name}
        self.tokens = {}            # token -> {kind, installation_id, expires, issued_at}
        self.buckets = {}
        self.releases = {}
        self.assets = {}
        self.check_runs = {}
        self.statuses = []
        self.deliveries = []
        self.deleted_assets = []
        self.next_job = FIRST_JOB_ID
        self.next_run = FIRST_RUN_ID
        self.next_runner = 23
        self.next_check = FIRST_CHECK_ID
        self.next_asset = FIRST_ASSET_ID
        self.next_release = 1001
        self.next_repo = 186853002
        self.next_delivery = 1
        self.tokens_issued = 0
        self.public_url = ""
        self.app_key = None
        self.tarball = None
        self.hook_q = queue.Queue()
        self.settings = {
            "claim_order": opts.claim_order,
            "claims_paused": False,
            "claim_max_wait": 30.0,
            "token_ttl": float(opts.token_ttl),
            "jwt_skew": 60.0,
            "rate_limit": opts.rate_limit,
            "rate_window": float(opts.rate_window),
            "webhook_url": opts.webhook_url or "",
            "webhook_secret": opts.webhook_secret or "",
            "webhook_timeout": 10.0,
            "runner_lost_timeout": float(opts.runner_lost_timeout),
            "checks_require_app": True,
            "asset_max_bytes": 2 * 1024 * 1024 * 1024,
            "tarball_corrupt": False,
        }
        for t in opts.token or []:
            self.tokens[t] = {"kind": "static", "installation_id": None, "expires": None,
                              "issued_at": now_iso()}

    def error(self, code, message, seq=None, op=None):
        self.errors.append({"seq": seq, "op": op, "code": code, "message": message})

    def secret_list(self):
        out = [("token", t.encode()) for t in self.tokens]
        for r in self.runners.values():
            out.append(("runner secret", r["secret"].encode()))
            out.append(("encoded_jit_config", r["jit"].encode()))
        if self.settings["webhook_secret"]:
            out.append(("webhook secret", self.settings["webhook_secret"].encode()))
        return out

    # -- repositories

    def repo(self, full, create=False):
        full = full.strip("/")
        if not re.match(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", full):
            raise BadRequest("repo must be owner/name")
        r = self.repos.get(full.lower())
        if r is None and create:
            owner, name = full.split("/")
            r = {"id": self.next_repo, "owner": owner, "name": name, "full_name": full,
                 "shas": set(), "run_number": 0}
            self.next_repo += 1
            self.repos[full.lower()] = r
            self.groups.setdefault(owner.lower(), {1: "Default"})
        return r

    def org_known(self, org):
        return any(r["owner"].lower() == org.lower() for r in self.repos.values())

    def repo_view(self, r):
        u = "%s/repos/%s" % (self.public_url, r["full_name"])
        return {"id": r["id"], "node_id": node_id("Repository", r["id"]), "name": r["name"],
                "full_name": r["full_name"], "private": True,
                "owner": {"login": r["owner"], "id": 38302899, "type": "Organization",
                          "node_id": node_id("Organization", r["owner"]),
                          "url": "%s/users/%s" % (self.public_url, r["owner"])},
                "html_url": "%s/%s" % (self.public_url, r["full_name"]), "url": u,
                "default_branch": "main", "visibility": "private"}

    # -- jobs and runs

    def run_status(self, run):
        jobs = [self.jobs[j] for j in run["jobs"]]
        if all(j["status"] == "completed" for j in jobs):
            concs = [j["conclusion"] for j in jobs]
            for c in ("failure", "cancelled", "timed_out"):
                if c in concs:
                    return "completed", c
            return "completed", "success"
        if all(j["status"] == "queued" for j in jobs):
            return "queued", None
        return "in_progress", None

    def run_view(self, run):
        r = run["repo"]
        base = "%s/repos/%s/actions/runs/%d" % (self.public_url, r["full_name"], run["id"])
        status, conclusion = self.run_status(run)
        actor = {"login": "octocat", "id": 1, "type": "User"}
        return {
            "id": run["id"], "name": run["workflow_name"], "node_id": node_id("WorkflowRun", run["id"]),
            "head_branch": run["head_branch"], "head_sha": run["head_sha"],
            "path": ".github/workflows/ci.yml", "display_title": run["title"],
            "run_number": run["run_number"], "event": run["event"], "status": status,
            "conclusion": conclusion, "workflow_id": 161335, "check_suite_id": run["id"] + 1,
            "url": base, "html_url": "%s/%s/actions/runs/%d" % (self.public_url, r["full_name"], run["id"]),
            "jobs_url": base + "/jobs", "logs_url": base + "/logs",
            "check_suite_url": "%s/repos/%s/check-suites/%d" % (self.public_url, r["full_name"], run["id"] + 1),
            "artifacts_url": base + "/artifacts", "cancel_url": base + "/cancel", "rerun_url": base + "/rerun",
            "workflow_url": "%s/repos/%s/actions/workflows/161335" % (self.public_url, r["full_name"]),
            "pull_requests": [], "created_at": run["created_at"], "updated_at": run["updated_at"],
            "run_attempt": 1, "run_started_at": run["created_at"], "actor": actor,
            "triggering_actor": actor, "repository": self.repo_view(r), "head_repository": self.repo_view(r),
            "head_commit": {"id": run["head_sha"], "tree_id": hashlib.sha1(run["head_sha"].encode()).hexdigest(),
                            "message": run["title"], "timestamp": run["created_at"],
                            "author": {"name": "Octo Cat", "email": "octocat@example.com"},
                            "committer": {"name": "Octo Cat", "email": "octocat@example.com"}},
        }

    def job_view(self, job):
        run = self.runs[job["run_id"]]
        r = run["repo"]
        api = "%s/repos/%s" % (self.public_url, r["full_name"])
        rn = job["runner"]
        return {
            "id": job["id"], "run_id": run["id"], "workflow_name": run["workflow_name"],
            "head_branch": run["head_branch"], "run_url": "%s/actions/runs/%d" % (api, run["id"]),
            "run_attempt": 1, "node_id": node_id("WorkflowJob", job["id"]), "head_sha": run["head_sha"],
            "url": "%s/actions/jobs/%d" % (api, job["id"]),
            "html_url": "%s/%s/actions/runs/%d/job/%d" % (self.public_url, r["full_name"], run["id"], job["id"]),
            "status": job["status"], "conclusion": job["conclusion"], "created_at": job["created_at"],
            "started_at": job["started_at"], "completed_at": job["completed_at"], "name": job["name"],
            "steps": [dict(s) for s in job["steps"]],
            "check_run_url": "%s/check-runs/%d" % (api, job["id"]),
            "labels": list(job["labels"]),
            "runner_id": rn["id"] if rn else None, "runner_name": rn["name"] if rn else None,
            "runner_group_id": rn["group_id"] if rn else None,
            "runner_group_name": rn["group_name"] if rn else None,
        }

    def runner_view(self, rn):
        return {"id": rn["id"], "name": rn["name"], "os": rn["os"], "status": rn["status"],
                "busy": rn["busy"], "ephemeral": True,
                "labels": [{"id": 5 + i, "name": l,
                            "type": "read-only" if l.lower() in READ_ONLY_LABELS else "custom"}
                           for i, l in enumerate(rn["labels"])]}

    def runner_dump(self, rn):
        v = self.runner_view(rn)
        v.update({"scope": "%s:%s" % rn["scope"], "runner_group_id": rn["group_id"],
                  "work_folder": rn["work_folder"], "created_at": rn["created_at"],
                  "deleted": rn["deleted"], "job_id": rn["job_id"], "claims": rn["claims"],
                  "session": rn["session"] is not None, "connected": rn["connected"]})
        return v

    def touch_run(self, run):
        run["updated_at"] = now_iso()

    # -- webhooks

    def hook(self, job, action, signature="good", guid=None, body=None, redelivery=False):
        """Queue a workflow_job delivery (the sender thread posts it)."""
        if body is None:
            run = self.runs[job["run_id"]]
            payload = {"action": action, "workflow_job": self.job_view(job),
                       "repository": self.repo_view(run["repo"]),
                       "organization": {"login": run["repo"]["owner"], "id": 38302899,
                                        "node_id": node_id("Organization", run["repo"]["owner"])},
                       "sender": {"login": "octocat", "id": 1, "type": "User"}}
            if self.app_key is not None:
                payload["installation"] = {"id": self.opts.installation_id,
                                           "node_id": node_id("Installation", self.opts.installation_id)}
            body = json.dumps(payload).encode()
        d = {"id": self.next_delivery, "guid": guid or str(uuid.uuid4()), "event": "workflow_job",
             "action": action, "job_id": job["id"] if job else None, "url": self.settings["webhook_url"],
             "signature": signature, "redelivery": redelivery, "status_code": None, "error": None,
             "duration_ms": None, "delivered_at": None, "state": "queued",
             "body_sha256": hashlib.sha256(body).hexdigest(), "_body": body}
        self.next_delivery += 1
        self.deliveries.append(d)
        self.hook_q.put(d)
        return d


def delivery_view(d):
    return {k: v for k, v in d.items() if not k.startswith("_")}


def hook_sender(st):
    """One thread posts deliveries in order, like GitHub's hookshot (no automatic retry)."""
    while True:
        d = st.hook_q.get()
        if d is None:
            return
        with st.lock:
            url = d["url"]
            secret = st.settings["webhook_secret"]
            timeout = st.settings["webhook_timeout"]
        if not url:
            with st.lock:
                d["state"] = "no_url"
                st.cond.notify_all()
            continue
        body = d["_body"]
        h = {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/044aadd",
             "X-GitHub-Event": d["event"], "X-GitHub-Delivery": d["guid"],
             "X-GitHub-Hook-ID": "292430182", "X-GitHub-Hook-Installation-Target-ID": "79929171",
             "X-GitHub-Hook-Installation-Target-Type": "repository"}
        if d["signature"] != "none" and secret:
            good = sign(secret, body)
            if d["signature"] == "good":
                h["X-Hub-Signature-256"] = good
            elif d["signature"] == "bad":
                # same length and form, last digit changed
                h["X-Hub-Signature-256"] = good[:-1] + ("0" if good[-1] != "0" else "1")
            elif d["signature"] == "wrong_secret":
                h["X-Hub-Signature-256"] = sign(secret + "x", body)
            h["X-Hub-Signature"] = "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
        t = time.monotonic()
        code, err = None, None
        try:
            req = urllib.request.Request(url, data=body, headers=h, method="POST")
            with urllib.request.urlopen(req, timeout=timeout) as r:
                code = r.status
                r.read(65536)
        except urllib.error.HTTPError as e:
            code = e.code
        except (OSError, ValueError) as e:
            err = str(e)[:200]
        with st.lock:
            d["status_code"] = code
            d["error"] = err
            d["duration_ms"] = int((time.monotonic() - t) * 1000)
            d["delivered_at"] = now_iso()
            d["state"] = "delivered" if code is not None else "failed"
            st.cond.notify_all()


def ticker(st):
    """Background housekeeping: a runner silent for runner_lost_timeout loses its job."""
    while True:
        time.sleep(0.25)
        with st.lock:
            lim = st.settings["runner_lost_timeout"]
            if not lim:
                continue
            now = time.monotonic()
            for job in list(st.jobs.values()):
                rn = job["runner"]
                if job["status"] != "in_progress" or rn is None:
                    continue
                if now - rn["last_seen"] > lim:
                    append_log(st, job, ("##[error]The self-hosted runner: %s lost communication with "
                                         "the server.\n" % rn["name"]).encode(), None)
                    finish_job(st, job, "failure", "lost")


def append_log(st, job, data, seq):
    if len(job["log"]) + len(data) > LOG_MAX:
        data = data[:max(0, LOG_MAX - len(job["log"]))]
    job["log"] += data
    for name in set(job["scanner"].feed(data)):
        st.error("secret_in_log", "%s appears in the log of job %d" % (name, job["id"]), seq, "runner_log")


def finish_job(st, job, conclusion, why):
    """Complete a job and retire its ephemeral runner (GitHub deletes it after one job)."""
    t = now_iso()
    job["status"] = "completed"
    job["conclusion"] = conclusion
    job["completed_at"] = t
    job["finished_by"] = why
    for s in job["steps"]:
        if s["status"] != "completed":
            s["status"] = "completed"
            s["conclusion"] = s["conclusion"] or ("skipped" if s["started_at"] is None else conclusion)
            s["started_at"] = s["started_at"] or t
            s["completed_at"] = t
    rn = job["runner"]
    if rn is not None:
        rn["busy"] = False
        rn["status"] = "offline"
        if rn["deleted"] is None:
            rn["deleted"] = {"by": "github", "at": now_iso(), "why": "ephemeral runner finished its job"}
    st.touch_run(st.runs[job["run_id"]])
    st.hook(job, "completed")
    st.cond.notify_all()


# ---------------------------------------------------------------------------- JWT


def verify_jwt(st, tok):
    """GitHub App JWT: RS256 over header.payload with the app's key; iss = app id; iat/exp
    integers; exp - iat <= 600 s; iat not in the future and exp not past beyond the skew.
    Returns (None, None) when good, else (error code, GitHub's message)."""
    parts = tok.split(".")
    if len(parts) != 3:
        return "jwt_malformed", "A JSON web token could not be decoded"
    try:
        hdr = json.loads(b64url_decode(parts[0]))
        pl = json.loads(b64url_decode(parts[1]))
        sig = b64url_decode(parts[2])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return "jwt_malformed", "A JSON web token could not be decoded"
    if not isinstance(hdr, dict) or not isinstance(pl, dict):
        return "jwt_malformed", "A JSON web token could not be decoded"
    if hdr.get("alg") != "RS256":
        return "jwt_alg", "A JSON web token could not be decoded ('alg' must be RS256, got %r)" % hdr.get("alg")
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    try:
        st.app_key.verify(sig, (parts[0] + "." + parts[1]).encode(), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return "jwt_signature", "A JSON web token could not be decoded"
    iss = pl.get("iss")
    ok_iss = {str(st.opts.app_id)}
    if st.opts.app_client_id:
        ok_iss.add(st.opts.app_client_id)
    if isinstance(iss, bool) or not isinstance(iss, (int, str)) or str(iss) not in ok_iss:
        return "jwt_iss", "'Issuer' claim ('iss') must be the app's id (got %r)" % (iss,)
    iat, exp = pl.get("iat"), pl.get("exp")
    if not isinstance(iat, int) or isinstance(iat, bool):
        return "jwt_iat", "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
    if not isinstance(exp, int) or isinstance(exp, bool):
        return "jwt_exp", "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
    now = time.time()
    skew = st.settings["jwt_skew"]
    if iat > now + skew:
        return "jwt_iat", "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
    if exp <= now - skew:
        return "jwt_expired", "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
    if exp - iat > 600 or exp > now + 600 + skew:
        return "jwt_lifetime", "'Expiration time' claim ('exp') is too far in the future"
    return None, None


# ---------------------------------------------------------------------------- handler

SEG = r"([A-Za-z0-9_.-]+)"
ROUTES = [
    # (method, regex, op, auth) ; auth: token | jwt | none
    ("GET", r"^/app$", "app", "jwt"),
    ("GET", r"^/app/installations$", "installations", "jwt"),
    ("POST", r"^/app/installations/(\d+)/access_tokens$", "access_token", "jwt"),
    ("GET", r"^/repos/%s/%s/installation$" % (SEG, SEG), "repo_installation", "jwt"),
    ("GET", r"^/orgs/%s/installation$" % SEG, "org_installation", "jwt"),
    ("GET", r"^/rate_limit$", "rate_limit", "token"),
    ("GET", r"^/repos/%s/%s/actions/runs$" % (SEG, SEG), "runs", "token"),
    ("GET", r"^/repos/%s/%s/actions/runs/(\d+)$" % (SEG, SEG), "run", "token"),
    ("GET", r"^/repos/%s/%s/actions/runs/(\d+)/jobs$" % (SEG, SEG), "jobs", "token"),
    ("GET", r"^/repos/%s/%s/actions/jobs/(\d+)$" % (SEG, SEG), "job", "token"),
    ("GET", r"^/repos/%s/%s/actions/jobs/(\d+)/logs$" % (SEG, SEG), "job_logs", "token"),
    ("POST", r"^/(repos)/%s/%s/actions/runners/generate-jitconfig$" % (SEG, SEG), "jitconfig", "token"),
    ("POST", r"^/(orgs)/%s()/actions/runners/generate-jitconfig$" % SEG, "jitconfig", "token"),
    ("POST", r"^/(repos)/%s/%s/actions/runners/(registration|remove)-token$" % (SEG, SEG), "reg_token", "token"),
    ("POST", r"^/(orgs)/%s()/actions/runners/(registration|remove)-token$" % SEG, "reg_token", "token"),
    ("GET", r"^/(repos)/%s/%s/actions/runners$" % (SEG, SEG), "runners", "token"),
    ("GET", r"^/(orgs)/%s()/actions/runners$" % SEG, "runners", "token"),
    ("GET", r"^/(repos)/%s/%s/actions/runners/(\d+)$" % (SEG, SEG), "runner", "token"),
    ("GET", r"^/(orgs)/%s()/actions/runners/(\d+)$" % SEG, "runner", "token"),
    ("DELETE", r"^/(repos)/%s/%s/actions/runners/(\d+)$" % (SEG, SEG), "runner_delete", "token"),
    ("DELETE", r"^/(orgs)/%s()/actions/runners/(\d+)$" % SEG, "runner_delete", "token"),
    ("POST", r"^/repos/%s/%s/check-runs$" % (SEG, SEG), "check_run", "token"),
    ("PATCH", r"^/repos/%s/%s/check-runs/(\d+)$" % (SEG, SEG), "check_run_update", "token"),
    ("GET", r"^/repos/%s/%s/check-runs/(\d+)$" % (SEG, SEG), "check_run_get", "token"),
    ("POST", r"^/repos/%s/%s/statuses/([0-9A-Za-z]+)$" % (SEG, SEG), "status", "token"),
    ("GET", r"^/repos/%s/%s/releases/tags/(.+)$" % (SEG, SEG), "release_by_tag", "token"),
    ("GET", r"^/repos/%s/%s/releases/(\d+)$" % (SEG, SEG), "release", "token"),
    ("GET", r"^/repos/%s/%s/releases/(\d+)/assets$" % (SEG, SEG), "release_assets", "token"),
    ("POST", r"^/repos/%s/%s/releases/(\d+)/assets$" % (SEG, SEG), "asset_upload", "token"),
    ("GET", r"^/repos/%s/%s/releases/assets/(\d+)$" % (SEG, SEG), "asset", "token"),
    ("DELETE", r"^/repos/%s/%s/releases/assets/(\d+)$" % (SEG, SEG), "asset_delete", "token"),
]
ROUTES = [(m, re.compile(p), op, a) for m, p, op, a in ROUTES]
ETAG_OPS = {"runs", "run", "jobs", "job", "runners", "runner", "release_by_tag", "release",
            "release_assets", "asset", "check_run_get"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GitHub.com"

    def log_message(self, fmt, *args):
        if self.server.st.opts.verbose:
            sys.stderr.write("github_server: " + (fmt % args) + "\n")

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PUT(self):
        self.dispatch("PUT")

    # -- plumbing

    def send(self, r, head_only=False):
        self.send_response(r.status)
        if r.status != 304:
            self.send_header("Content-Type", r.ctype)
            self.send_header("Content-Length", str(len(r.body)))
        for k, v in r.headers.items():
            self.send_header(k, str(v))
        self.end_headers()
        if r.status != 304 and not head_only:
            self.wfile.write(r.body)

    def abort(self, mode, hang=30.0):
        self.close_connection = True
        if mode == "hang":
            time.sleep(hang)
        try:
            if mode == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
            self.connection.close()
        except OSError:
            pass

    def take_fault(self, op, when):
        st = self.server.st
        for f in st.faults:
            if f["count"] != 0 and f["when"] == when and f["op"] in (op, "any"):
                if f["count"] > 0:
                    f["count"] -= 1
                return dict(f)
        return None

    def rate_headers(self, bucket):
        b = bucket
        return {"x-ratelimit-limit": str(b["limit"]), "x-ratelimit-remaining": str(max(0, b["limit"] - b["used"])),
                "x-ratelimit-reset": str(int(b["reset"])), "x-ratelimit-used": str(b["used"]),
                "x-ratelimit-resource": b["resource"]}

    def bucket(self, key, resource="core"):
        st = self.server.st
        b = st.buckets.get(key)
        now = time.time()
        if b is None or now >= b["reset"]:
            old = b
            b = {"limit": st.settings["rate_limit"], "used": 0,
                 "reset": float(math.ceil(now + st.settings["rate_window"])),
                 "resource": resource, "blocked_until": 0.0, "blocked_status": None, "blocked_kind": None}
            if old is not None:
                for k in ("blocked_until", "blocked_status", "blocked_kind"):
                    b[k] = old[k]
            st.buckets[key] = b
        return b

    def rate_fault(self, f, b):
        """A primary (x-ratelimit-remaining 0 until reset) or secondary (retry-after) limit."""
        now = time.time()
        if f["rate_limit"] == "primary":
            b["used"] = b["limit"]
            # x-ratelimit-reset is whole epoch seconds: block exactly until that second
            b["reset"] = float(math.ceil(now + float(f.get("reset_in") or 60)))
            b["blocked_until"] = b["reset"]
            b["blocked_status"] = f["status"]
            b["blocked_kind"] = "primary"
            return gh_error(f["status"], "API rate limit exceeded for installation ID %d. If you reach out "
                            "to GitHub Support for help, please include the request ID." %
                            self.server.st.opts.installation_id, self.rate_headers(b))
        ra = f.get("retry_after")
        h = self.rate_headers(b)
        if ra is not None:
            h["retry-after"] = str(int(ra))
            b["blocked_until"] = now + float(ra)
        else:
            b["blocked_until"] = now + 60.0
        b["blocked_status"] = f["status"]
        b["blocked_kind"] = "secondary"
        return gh_error(f["status"], "You have exceeded a secondary rate limit. Please wait a few minutes "
                        "before you try again.", h)

    def json_body(self, body, seq, op):
        raw = body.read_all(JSON_MAX)
        if raw is None:
            raise BadRequest("body too large")
        st = self.server.st
        try:
            doc = json.loads(raw.decode("utf-8")) if raw else {}
        except (ValueError, UnicodeDecodeError):
            with st.lock:
                st.error("bad_json", "body is not JSON", seq, op)
            return None
        if not isinstance(doc, dict):
            with st.lock:
                st.error("bad_json", "body is not a JSON object", seq, op)
            return None
        ct = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if raw and ct not in ("application/json", "application/vnd.github+json"):
            with st.lock:
                st.error("content_type", "JSON body sent with Content-Type %r" % ct, seq, op)
        return doc

    def dispatch(self, method):
        u = urllib.parse.urlsplit(self.path)
        path, query = urllib.parse.unquote(u.path), urllib.parse.parse_qs(u.query, keep_blank_values=True)
        try:
            body = Body(self.rfile, self.headers)
        except BadRequest as e:
            self.close_connection = True
            return self.send(gh_error(400, str(e)))
        try:
            if path.startswith("/_control/"):
                return self.send(self.control(method, path, query, body))
            if path.startswith("/_runner/"):
                return self.send(self.runner_api(method, path, body))
            if path.startswith("/_dl/"):
                return self.download(method, path, body)
        except BadRequest as e:
            self.close_connection = True
            return self.send(gh_error(400, str(e)))
        self.api(method, path, query, body)

    # -- the GitHub API

    def api(self, method, path, query, body):
        st = self.server.st
        op, args, auth_kind = None, (), None
        for m, rx, o, a in ROUTES:
            mm = rx.match(path)
            if mm and m == method:
                op, args, auth_kind = o, mm.groups(), a
                break
        with st.lock:
            st.seq += 1
            seq = st.seq
            rec = {"seq": seq, "t": round(time.monotonic() - st.t0, 4), "method": method, "path": self.path,
                   "op": op, "status": None, "fault": None, "auth": None, "etag": None,
                   "rate_remaining": None}
            if len(st.requests) < 200000:
                st.requests.append(rec)
            r = self.check_headers(seq, op)
        if r is not None:
            return self.finish_api(rec, r, body)
        if op is None:
            return self.finish_api(rec, gh_error(404, "Not Found"), body)
        with st.lock:
            ident, r = self.authenticate(seq, op, auth_kind)
            rec["auth"] = ident["kind"] if ident else None
            b = self.bucket(ident["bucket"]) if ident else None
            if r is None and b is not None and time.time() < b["blocked_until"] - 0.2:
                st.error("rate_limit_ignored", "%s %s while rate limited for %.1f more s" %
                         (method, path, b["blocked_until"] - time.time()), seq, op)
                r = gh_error(b["blocked_status"] or 403, "API rate limit exceeded (still limited).",
                             self.rate_headers(b))
                if b["blocked_kind"] == "secondary":
                    r.headers["retry-after"] = str(max(1, int(b["blocked_until"] - time.time() + 0.999)))
            f = self.take_fault(op, "before") if r is None else None
        if r is not None:
            return self.finish_api(rec, r, body, b)
        if f is not None:
            rec["fault"] = f["mode"] if f["mode"] != "status" else (f["rate_limit"] or f["status"])
            if op == "asset_upload" and f.get("leave_starter"):
                self.starter_asset(args, query)
            try:
                body.drain()
            except (BadRequest, OSError):
                self.close_connection = True
            if f["mode"] != "status":
                return self.abort(f["mode"], f.get("hang", 30.0))
            with st.lock:
                if f["rate_limit"]:
                    r = self.rate_fault(f, b)
                else:
                    r = gh_error(f["status"], f.get("message") or "injected fault %d" % f["status"],
                                 self.rate_headers(b) if b else None)
                    if f.get("retry_after") is not None:
                        r.headers["retry-after"] = str(f["retry_after"])
            return self.finish_api(rec, r, body, b, counted=False)
        handler = getattr(self, "op_" + op)
        try:
            r = handler(seq, ident, args, query, body)
        except BadRequest as e:
            self.close_connection = True
            r = gh_error(400, str(e))
        with st.lock:
            fa = self.take_fault(op, "after")
        if fa is not None:
            rec["fault"] = "after:" + (fa["mode"] if fa["mode"] != "status" else str(fa["status"]))
            try:
                body.drain()
            except (BadRequest, OSError):
                self.close_connection = True
            if fa["mode"] != "status":
                return self.abort(fa["mode"], fa.get("hang", 30.0))
            r = gh_error(fa["status"], "injected fault %d" % fa["status"])
        self.finish_api(rec, r, body, b)

    def finish_api(self, rec, r, body, b=None, counted=True):
        st = self.server.st
        try:
            body.drain()
        except (BadRequest, OSError):
            self.close_connection = True
        with st.lock:
            if r.status == 200 and rec["op"] in ETAG_OPS and self.command == "GET":
                tag = 'W/"%s"' % hashlib.sha256(r.body).hexdigest()[:40]
                r.headers["ETag"] = tag
                r.headers["Vary"] = "Accept, Authorization, Cookie, X-GitHub-OTP"
                inm = self.headers.get("If-None-Match")
                if inm:
                    rec["etag"] = "miss"
                    if tag in [x.strip() for x in inm.split(",")] or inm.strip() == "*":
                        rec["etag"] = "hit"
                        r = Resp(304, b"", r.headers)
            if b is not None:
                # a 304 to an authorized conditional request does not count (GitHub docs)
                if counted and r.status != 304 and "x-ratelimit-remaining" not in r.headers:
                    b["used"] += 1
                if "x-ratelimit-remaining" not in r.headers:
                    r.headers.update(self.rate_headers(b))
                rec["rate_remaining"] = max(0, b["limit"] - b["used"])
            r.headers.setdefault("X-GitHub-Api-Version-Selected", API_VERSION)
            r.headers.setdefault("X-GitHub-Request-Id", "%04X:%06X" % (rec["seq"] & 0xffff, rec["seq"]))
            rec["status"] = r.status
        self.send(r)

    def check_headers(self, seq, op):
        st = self.server.st
        if not self.headers.get("User-Agent"):
            st.error("user_agent_missing", "request without User-Agent (GitHub answers 403)", seq, op)
            return Resp(403, "Request forbidden by administrative rules. Please make sure your request "
                        "has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api"
                        "#user-agent-required). Check https://developer.github.com for other possible causes.\n",
                        ctype="text/plain")
        acc = self.headers.get("Accept")
        if acc is None:
            st.error("accept_missing", "request without Accept: %s" % ACCEPT, seq, op)
        elif acc.strip() != ACCEPT:
            st.error("accept", "Accept: %r, expected %r" % (acc, ACCEPT), seq, op)
        ver = self.headers.get("X-GitHub-Api-Version")
        if ver is None:
            st.error("api_version_missing", "request without X-GitHub-Api-Version (GitHub assumes "
                     "%s; the contract requires the header)" % API_VERSION, seq, op)
        elif ver.strip() != API_VERSION:
            st.error("api_version", "X-GitHub-Api-Version: %r" % ver, seq, op)
            return gh_error(400, "API version %s is not supported." % ver)
        return None

    def authenticate(self, seq, op, kind):
        """-> (identity {kind, bucket, installation_id?}, None) or (None, error Resp)."""
        st = self.server.st
        auth = self.headers.get("Authorization")
        if not auth:
            st.error("auth_missing", "request without Authorization", seq, op)
            return None, gh_error(401, "Requires authentication")
        scheme, _, cred = auth.strip().partition(" ")
        cred = cred.strip()
        if scheme.lower() == "token":
            st.error("auth_scheme", "Authorization: token ... (the contract says Bearer)", seq, op)
        elif scheme.lower() != "bearer":
            st.error("auth_scheme", "Authorization scheme %r" % scheme, seq, op)
            return None, gh_error(401, "Bad credentials")
        is_jwt = cred.count(".") == 2 and cred.startswith("eyJ")
        if kind == "jwt":
            if st.app_key is None:
                st.error("app_not_configured", "App endpoint used but the server has no --app-key-pub", seq, op)
                return None, gh_error(401, "A JSON web token could not be decoded")
            if not is_jwt:
                st.error("jwt_expected", "%s needs the App JWT, got another credential" % op, seq, op)
                return None, gh_error(401, "A JSON web token could not be decoded")
            code, msg = verify_jwt(st, cred)
            if code:
                st.error(code, msg, seq, op)
                return None, gh_error(401, msg)
            return {"kind": "jwt", "bucket": "app:%d" % st.opts.app_id}, None
        if is_jwt:
            st.error("jwt_on_api", "App JWT used on %s (needs an installation token)" % op, seq, op)
            return None, gh_error(401, "A JSON web token could not be decoded")
        t = None
        for k, v in st.tokens.items():
            if hmac.compare_digest(k.encode(), cred.encode()):
                t = v
                break
        if t is None:
            st.error("bad_token", "unknown token", seq, op)
            return None, gh_error(401, "Bad credentials")
        if t["expires"] is not None and time.time() >= t["expires"]:
            st.error("token_expired", "installation token used %.1f s after it expired (refresh before "
                     "expires_at)" % (time.time() - t["expires"]), seq, op)
            return None, gh_error(401, "Bad credentials")
        if t["kind"] == "static":
            return {"kind": "token", "bucket": "token:" + hashlib.sha256(cred.encode()).hexdigest()[:12]}, None
        return {"kind": "installation", "bucket": "installation:%d" % t["installation_id"],
                "installation_id": t["installation_id"]}, None

    def need_repo(self, owner, name):
        r = self.server.st.repos.get(("%s/%s" % (owner, name)).lower())
        return r

    def validation(self, seq, op, code, msg, errors=None):
        self.server.st.error(code, msg, seq, op)
        return gh_error(422, msg, errors=errors)

    # -- App

    def installation_view(self, account=None):
        st = self.server.st
        iid = st.opts.installation_id
        return {"id": iid, "account": {"login": account or "octo-org", "id": 38302899, "type": "Organization"},
                "app_id": st.opts.app_id, "app_slug": "tdx-runner-test", "target_type": "Organization",
                "repository_selection": "all",
                "access_tokens_url": "%s/app/installations/%d/access_tokens" % (st.public_url, iid),
                "permissions": {"actions": "read", "administration": "write", "checks": "write",
                                "contents": "write", "metadata": "read",
                                "organization_self_hosted_runners": "write"},
                "events": ["workflow_job"], "created_at": "2026-01-01T00:00:00Z"}

    def op_app(self, seq, ident, args, q, body):
        st = self.server.st
        return Resp(200, {"id": st.opts.app_id, "slug": "tdx-runner-test", "name": "tdx-runner test",
                          "client_id": st.opts.app_client_id or "Iv1.0000000000000000",
                          "owner": {"login": "octo-org", "id": 38302899, "type": "Organization"},
                          "permissions": self.installation_view()["permissions"], "events": ["workflow_job"]})

    def op_installations(self, seq, ident, args, q, body):
        return Resp(200, [self.installation_view()])

    def op_repo_installation(self, seq, ident, args, q, body):
        with self.server.st.lock:
            r = self.need_repo(args[0], args[1])
        if r is None:
            return gh_error(404, "Not Found")
        return Resp(200, self.installation_view(r["owner"]))

    def op_org_installation(self, seq, ident, args, q, body):
        with self.server.st.lock:
            ok = self.server.st.org_known(args[0])
        if not ok:
            return gh_error(404, "Not Found")
        return Resp(200, self.installation_view(args[0]))

    def op_access_token(self, seq, ident, args, q, body):
        st = self.server.st
        doc = self.json_body(body, seq, "access_token")
        if doc is None:
            return gh_error(400, "Problems parsing JSON")
        if int(args[0]) != st.opts.installation_id:
            with st.lock:
                st.error("unknown_installation", "installation %s (the app has %d)" %
                         (args[0], st.opts.installation_id), seq, "access_token")
            return gh_error(404, "Not Found")
        with st.lock:
            tok = "ghs_" + secrets.token_urlsafe(27).replace("-", "A").replace("_", "b")[:36]
            exp = time.time() + st.settings["token_ttl"]
            st.tokens[tok] = {"kind": "installation", "installation_id": st.opts.installation_id,
                              "expires": exp, "issued_at": now_iso()}
            st.tokens_issued += 1
        return Resp(201, {"token": tok, "expires_at": now_iso(exp),
                          "permissions": self.installation_view()["permissions"],
                          "repository_selection": "all"})

    def op_rate_limit(self, seq, ident, args, q, body):
        st = self.server.st
        with st.lock:
            b = self.bucket(ident["bucket"])
            core = {"limit": b["limit"], "used": b["used"], "remaining": max(0, b["limit"] - b["used"]),
                    "reset": int(b["reset"])}
        # GET /rate_limit does not count against the limit
        r = Resp(200, {"resources": {"core": core}, "rate": core})
        r.headers.update(self.rate_headers(b))
        return r

    # -- runs and jobs

    def page(self, items, q, path):
        st = self.server.st
        try:
            per = int(q.get("per_page", ["30"])[0])
            pg = int(q.get("page", ["1"])[0])
        except ValueError:
            raise BadRequest("per_page/page must be integers")
        per = max(1, min(per, 100))
        pg = max(1, pg)
        last = max(1, (len(items) + per - 1) // per)
        out = items[(pg - 1) * per:pg * per]
        links = []
        base = st.public_url + path

        def link(p, rel):
            qq = {k: v[0] for k, v in q.items()}
            qq["per_page"], qq["page"] = str(per), str(p)
            return '<%s?%s>; rel="%s"' % (base, urllib.parse.urlencode(qq), rel)
        if pg > 1:
            links += [link(pg - 1, "prev"), link(1, "first")]
        if pg < last:
            links += [link(pg + 1, "next"), link(last, "last")]
        return out, ({"Link": ", ".join(links)} if links else {})

    def op_runs(self, seq, ident, args, q, body):
        st = self.server.st
        with st.lock:
            r = self.need_repo(args[0], args[1])
            if r is None:
                return gh_error(404, "Not Found")
            status = q.get("status", [None])[0]
            if status is not None and status not in RUN_FILTERS:
                st.error("bad_query", "status=%r" % status, seq, "runs")
                return gh_error(422, "Validation Failed")
            runs = [x for x in st.runs.values() if x["repo"] is r]
            runs.sort(key=lambda x: -x["id"])
            out = []
            for run in runs:
                s, c = st.run_status(run)
                if status is not None and status != s and status != c:
                    continue
                if "head_sha" in q and q["head_sha"][0] != run["head_sha"]:
                    continue
                if "branch" in q and q["branch"][0] != run["head_branch"]:
                    continue
                out.append(st.run_view(run))
            items, h = self.page(out, q, "/repos/%s/actions/runs" % r["full_name"])
            return Resp(200, {"total_count": len(out), "workflow_runs": items}, h)

    def op_run(self, seq, ident, args, q, body):
        st = self.server.st
        with st.lock:
            r = self.need_repo(args[0], args[1])
            run = st.runs.get(int(args[2]))
            if r is None or run is None or run["repo"] is not r:
                return gh_error(404, "Not Found")
            return Resp(200, st.run_view(run))

    def op_jobs(self, seq, ident, args, q, body):
        st = self.server.st
        with st.lock:
            r = self.need_repo(args[0], args[1])
            run = st.runs.get(int(args[2]))
            if r is None or run is None or run["repo"] is not r:
                return gh_error(404, "Not Found")
            flt = q.get("filter", ["latest"])[0]
            if flt not in ("latest", "all"):
                st.error("bad_query", "filter=%r" % flt, seq, "jobs")
            out = [st.job_view(st.jobs[j]) for j in run["jobs"]]
            items, h = self.page(out, q, "/repos/%s/actions/runs/%d/jobs" % (r["full_name"], run["id"]))
            return Resp(200, {"total_count": len(out), "jobs": items}, h)

    def find_job(self, args):
        st = self.server.st
        r = self.need_repo(args[0], args[1])
        job = st.jobs.get(int(args[2]))
        if r is None or job is None or st.runs[job["run_id"]]["repo"] is not r:
            return None
        return job

    def op_job(self, seq, ident, args, q, body):
        st = self.server.st
        with st.lock:
            job = self.find_job(args)
            if job is None:
                return gh_error(404, "Not Found")
            return Resp(200, st.job_view(job))

    def op_job_logs(self, seq, ident, args, q, body):
        st = self.server.st
        with st.lock:
            job = self.find_job(args)
            if job is None:
                return gh_error(404, "Not Found")
            return Resp(302, b"", {"Location": "%s/_dl/logs/%d?sig=%s" % (st.public_url, job["id"],
                                                                          secrets.token_hex(8))})

    # -- runners

    def scope(self, args):
        """("repo", full name) or ("org", org), or None when unknown (404)."""
        st = self.server.st
        if args[0] == "repos":
            r = self.need_repo(args[1], args[2])
            return ("repo", r["full_name"]) if r else None
        return ("org", args[1]) if st.org_known(args[1]) else None

    def same_scope(self, a, b):
        return a[0] == b[0] and a[1].lower() == b[1].lower()

    def op_jitconfig(self, seq, ident, args, q, body):
        st = self.server.st
        doc = self.json_body(body, seq, "jitconfig")
        with st.lock:
            sc = self.scope(args)
            if sc is None:
                return gh_error(404, "Not Found")
            if doc is None:
                return gh_error(400, "Problems parsing JSON")
            for k in ("name", "runner_group_id", "labels"):
                if k not in doc:
                    return self.validation(seq, "jitconfig", "jitconfig_invalid",
                                           "Invalid request.\n\n\"%s\" wasn't supplied." % k)
            name, gid, labels = doc["name"], doc["runner_group_id"], doc["labels"]
            wf = doc.get("work_folder", "_work")
            if not isinstance(name, str) or not name or len(name) > 64 or re.search(r'[\x00-\x1f"/\\]', name):
                return self.validation(seq, "jitconfig", "jitconfig_invalid",
                                       "Invalid request.\n\nFor 'properties/name', %s is not a valid runner "
                                       "name." % json.dumps(name))
            if not isinstance(gid, int) or isinstance(gid, bool):
                return self.validation(seq, "jitconfig", "jitconfig_invalid",
                                       "Invalid request.\n\nFor 'properties/runner_group_id', %s is not an "
                                       "integer." % json.dumps(gid))
            if not isinstance(labels, list) or not 1 <= len(labels) <= 100 or \
                    not all(isinstance(l, str) and l.strip() and len(l) <= 256 for l in labels):
                return self.validation(seq, "jitconfig", "jitconfig_invalid",
                                       "Invalid request.\n\nFor 'properties/labels', %s is not a list of 1-100 "
                                       "non-empty strings." % json.dumps(labels)[:200])
            if not isinstance(wf, str) or not wf:
                return self.validation(seq, "jitconfig", "jitconfig_invalid",
                                       "Invalid request.\n\nFor 'properties/work_folder', %s is not a string." %
                                       json.dumps(wf))
            groups = st.groups.setdefault(sc[1].split("/")[0].lower(), {1: "Default"})
            if sc[0] == "repo" and gid != 1:
                st.error("jitconfig_group", "repository runners belong to the Default group (id 1), got %d" %
                         gid, seq, "jitconfig")
                return gh_error(404, "Not Found")
            if gid not in groups:
                st.error("jitconfig_group", "runner group %d does not exist" % gid, seq, "jitconfig")
                return gh_error(404, "Not Found")
            for rn in st.runners.values():
                if rn["deleted"] is None and self.same_scope(rn["scope"], sc) and rn["name"].lower() == name.lower():
                    st.error("runner_name_conflict", "a runner named %r is already registered" % name, seq,
                             "jitconfig")
                    return gh_error(409, "Already exists - A runner with the name %s already exists." % name)
            seen, labs = set(), []
            for l in labels:
                if l.lower() not in seen:
                    seen.add(l.lower())
                    labs.append(l)
            rid = st.next_runner
            st.next_runner += 1
            secret = secrets.token_urlsafe(32)
            gh_url = "%s/%s" % (st.public_url, sc[1])
            dot_runner = {"AgentId": rid, "AgentName": name, "PoolId": gid, "PoolName": groups[gid],
                          "ServerUrl": st.public_url + "/", "GitHubUrl": gh_url, "WorkFolder": wf,
                          "Ephemeral": True, "UseV2Flow": True, "StandIn": True}
            dot_creds = {"Scheme": "OAuth", "Data": {"clientId": str(uuid.uuid4()),
                                                     "authorizationUrl": st.public_url + "/_runner/claim",
                                                     "requireFipsCryptography": "False",
                                                     "standInSecret": secret}}
            dot_rsa = {"standIn": "the stand-in runner authenticates with Data.standInSecret, not RSA"}

            def b64j(o):
                return base64.b64encode(json.dumps(o).encode()).decode()
            jit = b64j({".runner": b64j(dot_runner), ".credentials": b64j(dot_creds),
                        ".credentials_rsaparams": b64j(dot_rsa)})
            rn = {"id": rid, "name": name, "scope": sc, "group_id": gid, "group_name": groups[gid],
                  "labels": labs, "work_folder": wf, "secret": secret, "jit": jit, "os": "unknown",
                  "status": "offline", "busy": False, "created_at": now_iso(), "deleted": None,
                  "job_id": None, "claims": 0, "session": None, "connected": False,
                  "last_seen": time.monotonic()}
            st.runners[rid] = rn
            return Resp(201, {"runner": st.runner_view(rn), "encoded_jit_config": jit})

    def op_reg_token(self, seq, ident, args, q, body):
        st = self.server.st
        with st.lock:
            if self.scope(args) is None:
                return gh_error(404, "Not Found")
        return Resp(201, {"token": secrets.token_hex(15).upper(), "expires_at": now_iso(time.time() + 3600)})

    def op_runners(self, seq, ident, args, q, body):
        st = self.server.st
        with st.lock:
            sc = self.scope(args)
            if sc is None:
                return gh_error(404, "Not Found")
            name = q.get("name", [None])[0]
            out = [st.runner_view(rn) for rn in sorted(st.runners.values(), key=lambda x: x["id"])
                   if rn["deleted"] is None and self.same_scope(rn["scope"], sc) and
                   (name is None or rn["name"] == name)]
            path = "/%s/%s/actions/runners" % (args[0], sc[1])
            items, h = self.page(out, q, path)
            return Resp(200, {"total_count": len(out), "runners": items}, h)

    def op_runner(self, seq, ident, args, q, body):
        st = self.server.st
        with st.lock:
            sc = self.scope(args)
            rn = st.runners.get(int(args[3]))
            if sc is None or rn is None or rn["deleted"] is not None or not self.same_scope(rn["scope"], sc):
                return gh_error(404, "Not Found")
            return Resp(200, st.runner_view(rn))

    def op_runner_delete(self, seq, ident, args, q, body):
        st = self.server.st
        with st.lock:
            sc = self.scope(args)
            rn = st.runners.get(int(args[3]))
            if sc is None or rn is None or rn["deleted"] is not None or not self.same_scope(rn["scope"], sc):
                return gh_error(404, "Not Found")
            if rn["busy"]:
                return gh_error(422, "Bad request - Runner \"%s\" is still running a job\"" % rn["name"])
            rn["deleted"] = {"by": "api", "at": now_iso(), "seq": seq}
            rn["status"] = "offline"
            st.cond.notify_all()
            return Resp(204, b"")

    # -- check runs and statuses

    def known_sha(self, r, sha):
        return sha in r["shas"]

    def check_output(self, seq, op, out):
        if not isinstance(out, dict):
            return self.validation(seq, op, "check_run_invalid", "Invalid request.\n\n\"output\" is not an object.")
        for k in ("title", "summary"):
            if not isinstance(out.get(k), str) or not out.get(k):
                return self.validation(seq, op, "check_run_invalid",
                                       "Invalid request.\n\n\"%s\" wasn't supplied (output)." % k)
        for k in ("summary", "text"):
            if k in out and (not isinstance(out[k], str) or len(out[k]) > 65535):
                return self.validation(seq, op, "check_run_invalid",
                                       "Invalid request.\n\noutput.%s is longer than 65535 characters." % k)
        ann = out.get("annotations", [])
        if not isinstance(ann, list) or len(ann) > 50:
            return self.validation(seq, op, "check_run_invalid",
                                   "Invalid request.\n\noutput.annotations: at most 50 per request.")
        for a in ann:
            if not isinstance(a, dict) or not all(k in a for k in ("path", "start_line", "end_line",
                                                                    "annotation_level", "message")) or \
                    a.get("annotation_level") not in ("notice", "warning", "failure"):
                return self.validation(seq, op, "check_run_invalid",
                                       "Invalid request.\n\nan annotation needs path, start_line, end_line, "
                                       "annotation_level (notice|warning|failure) and message.")
        return None

    def check_fields(self, seq, op, doc, create):
        st = self.server.st
        for k in ("status", "conclusion"):
            if k in doc and doc[k] is not None and doc[k] not in (STATUSES if k == "status" else CONCLUSIONS):
                return self.validation(seq, op, "check_run_invalid",
                                       "Invalid request.\n\nFor 'properties/%s', %s is not a possible value." %
                                       (k, json.dumps(doc[k])))
        for k in ("started_at", "completed_at"):
            if k in doc and (not isinstance(doc[k], str) or
                             not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", doc[k])):
                return self.validation(seq, op, "check_run_invalid",
                                       "Invalid request.\n\n%s must be an ISO 8601 timestamp." % k)
        status = doc.get("status")
        conc = doc.get("conclusion")
        if (status == "completed" or "completed_at" in doc) and not conc:
            return self.validation(seq, op, "check_run_invalid",
                                   "Invalid request.\n\nconclusion is required when status is completed "
                                   "(or completed_at is given).")
        if conc is not None and status not in (None, "completed"):
            return self.validation(seq, op, "check_run_invalid",
                                   "Invalid request.\n\nconclusion %s with status %s." % (conc, status))
        if conc == "action_required" and not doc.get("details_url"):
            return self.validation(seq, op, "check_run_invalid",
                                   "Invalid request.\n\nconclusion action_required needs details_url.")
        if "output" in doc:
            e = self.check_output(seq, op, doc["output"])
            if e is not None:
                return e
            scan = Scanner(st.secret_list)
            leaked = scan.feed(json.dumps(doc["output"]).encode())
            for name in set(leaked):
                st.error("secret_in_check_run", "%s appears in a check run's output" % name, seq, op)
        return None

    def check_view(self, cr):
        st = self.server.st
        api = "%s/repos/%s" % (st.public_url, cr["repo"])
        out = cr["output"]
        return {"id": cr["id"], "head_sha": cr["head_sha"], "node_id": node_id("CheckRun", cr["id"]),
                "external_id": cr.get("external_id", ""), "url": "%s/check-runs/%d" % (api, cr["id"]),
                "html_url": "%s/%s/runs/%d" % (st.public_url, cr["repo"], cr["id"]),
                "details_url": cr.get("details_url"), "status": cr["status"], "conclusion": cr["conclusion"],
                "started_at": cr["started_at"], "completed_at": cr["completed_at"],
                "output": {"title": out.get("title"), "summary": out.get("summary"), "text": out.get("text"),
                           "annotations_count": len(out.get("annotations", [])),
                           "annotations_url": "%s/check-runs/%d/annotations" % (api, cr["id"])},
                "name": cr["name"], "check_suite": {"id": cr["id"] + 7},
                "app": {"id": st.opts.app_id, "slug": "tdx-runner-test", "name": "tdx-runner test"},
                "pull_requests": []}

    def op_check_run(self, seq, ident, args, q, body):
        st = self.server.st
        doc = self.json_body(body, seq, "check_run")
        with st.lock:
            r = self.need_repo(args[0], args[1])
            if r is None:
                return gh_error(404, "Not Found")
            if doc is None:
                return gh_error(400, "Problems parsing JSON")
            if st.settings["checks_require_app"] and ident["kind"] != "installation":
                return gh_error(403, "You must authenticate via a GitHub App.")
            for k in ("name", "head_sha"):
                if not isinstance(doc.get(k), str) or not doc.get(k):
                    return self.validation(seq, "check_run", "check_run_invalid",
                                           "Invalid request.\n\n\"%s\" wasn't supplied." % k)
            e = self.check_fields(seq, "check_run", doc, True)
            if e is not None:
                return e
            if not re.match(r"^[0-9a-f]{40}$", doc["head_sha"]) or not self.known_sha(r, doc["head_sha"]):
                return self.validation(seq, "check_run", "check_run_sha", "No commit found for SHA: %s" %
                                       doc["head_sha"], [{"resource": "CheckRun", "code": "invalid",
                                                          "field": "head_sha"}])
            conc = doc.get("conclusion")
            status = "completed" if conc else doc.get("status", "queued")
            t = now_iso()
            cr = {"id": st.next_check, "repo": r["full_name"], "name": doc["name"], "head_sha": doc["head_sha"],
                  "status": status, "conclusion": conc,
                  "started_at": doc.get("started_at", t),
                  "completed_at": doc.get("completed_at", t if status == "completed" else None),
                  "output": doc.get("output", {}), "details_url": doc.get("details_url"),
                  "external_id": doc.get("external_id", ""), "updates": 0, "seq": seq}
            st.next_check += 1
            st.check_runs[cr["id"]] = cr
            return Resp(201, self.check_view(cr))

    def op_check_run_update(self, seq, ident, args, q, body):
        st = self.server.st
        doc = self.json_body(body, seq, "check_run_update")
        with st.lock:
            r = self.need_repo(args[0], args[1])
            cr = st.check_runs.get(int(args[2]))
            if r is None or cr is None or cr["repo"] != r["full_name"]:
                return gh_error(404, "Not Found")
            if doc is None:
                return gh_error(400, "Problems parsing JSON")
            if st.settings["checks_require_app"] and ident["kind"] != "installation":
                return gh_error(403, "You must authenticate via a GitHub App.")
            e = self.check_fields(seq, "check_run_update", doc, False)
            if e is not None:
                return e
            for k in ("name", "details_url", "external_id", "started_at", "completed_at", "output"):
                if k in doc:
                    cr[k] = doc[k]
            if doc.get("conclusion"):
                cr["conclusion"] = doc["conclusion"]
                cr["status"] = "completed"
                cr["completed_at"] = doc.get("completed_at") or cr["completed_at"] or now_iso()
            elif "status" in doc:
                cr["status"] = doc["status"]
            cr["updates"] += 1
            return Resp(200, self.check_view(cr))

    def op_check_run_get(self, seq, ident, args, q, body):
        st = self.server.st
        with st.lock:
            r = self.need_repo(args[0], args[1])
            cr = st.check_runs.get(int(args[2]))
            if r is None or cr is None or cr["repo"] != r["full_name"]:
                return gh_error(404, "Not Found")
            return Resp(200, self.check_view(cr))

    def op_status(self, seq, ident, args, q, body):
        st = self.server.st
        doc = self.json_body(body, seq, "status")
        with st.lock:
            r = self.need_repo(args[0], args[1])
            if r is None:
                return gh_error(404, "Not Found")
            if doc is None:
                return gh_error(400, "Problems parsing JSON")
            sha = args[2]
            if doc.get("state") not in ("error", "failure", "pending", "success"):
                return self.validation(seq, "status", "status_invalid",
                                       "Validation Failed", [{"resource": "Status", "code": "custom",
                                                              "field": "state"}])
            if not self.known_sha(r, sha):
                return self.validation(seq, "status", "status_sha", "No commit found for SHA: %s" % sha)
            if "description" in doc and isinstance(doc["description"], str) and len(doc["description"]) > 140:
                return self.validation(seq, "status", "status_invalid", "description is too long (maximum is "
                                       "140 characters)")
            s = {"id": len(st.statuses) + 1, "repo": r["full_name"], "sha": sha, "state": doc["state"],
                 "context": doc.get("context", "default"), "description": doc.get("description"),
                 "target_url": doc.get("target_url"), "created_at": now_iso()}
            st.statuses.append(s)
            return Resp(201, dict(s, url="%s/repos/%s/statuses/%s" % (st.public_url, r["full_name"], sha)))

    # -- releases

    def release_view(self, rel):
        st = self.server.st
        api = "%s/repos/%s" % (st.public_url, rel["repo"])
        up = st.opts.uploads_url or st.public_url
        return {"url": "%s/releases/%d" % (api, rel["id"]),
                "html_url": "%s/%s/releases/tag/%s" % (st.public_url, rel["repo"], rel["tag"]),
                "assets_url": "%s/releases/%d/assets" % (api, rel["id"]),
                "upload_url": "%s/repos/%s/releases/%d/assets{?name,label}" % (up, rel["repo"], rel["id"]),
                "tarball_url": "%s/tarball/%s" % (api, rel["tag"]), "zipball_url": "%s/zipball/%s" % (api, rel["tag"]),
                "id": rel["id"], "node_id": node_id("Release", rel["id"]), "tag_name": rel["tag"],
                "target_commitish": rel["target"], "name": rel["name"], "body": rel["body"],
                "draft": rel["draft"], "prerelease": rel["prerelease"], "immutable": False,
                "created_at": rel["created_at"], "published_at": None if rel["draft"] else rel["created_at"],
                "author": {"login": "octocat", "id": 1, "type": "User"},
                "assets": [self.asset_view(st.assets[a]) for a in rel["assets"] if a in st.assets]}

    def asset_view(self, a):
        st = self.server.st
        return {"url": "%s/repos/%s/releases/assets/%d" % (st.public_url, a["repo"], a["id"]),
                "browser_download_url": "%s/_dl/assets/%d/%s" % (st.public_url, a["id"], urllib.parse.quote(a["name"])),
                "id": a["id"], "node_id": node_id("ReleaseAsset", a["id"]), "name": a["name"],
                "label": a["label"], "state": a["state"], "content_type": a["content_type"], "size": a["size"],
                "digest": ("sha256:" + a["sha256"]) if a["sha256"] else None, "download_count": 0,
                "created_at": a["created_at"], "updated_at": a["created_at"],
                "uploader": {"login": "tdx-runner-test[bot]", "id": 2, "type": "Bot"}}

    def find_release(self, args):
        st = self.server.st
        r = self.need_repo(args[0], args[1])
        rel = st.releases.get(int(args[2]))
        if r is None or rel is None or rel["repo"] != r["full_name"]:
            return None
        return rel

    def op_release_by_tag(self, seq, ident, args, q, body):
        st = self.server.st
        with st.lock:
            r = self.need_repo(args[0], args[1])
            if r is None:
                return gh_error(404, "Not Found")
            for rel in st.releases.values():
                # a draft has no tag yet: GitHub's by-tag lookup does not find it
                if rel["repo"] == r["full_name"] and rel["tag"] == args[2] and not rel["draft"]:
                    return Resp(200, self.release_view(rel))
            return gh_error(404, "Not Found")

    def op_release(self, seq, ident, args, q, body):
        st = self.server.st
        with st.lock:
            rel = self.find_release(args)
            if rel is None:
                return gh_error(404, "Not Found")
            return Resp(200, self.release_view(rel))

    def op_release_assets(self, seq, ident, args, q, body):
        st = self.server.st
        with st.lock:
            rel = self.find_release(args)
            if rel is None:
                return gh_error(404, "Not Found")
            out = [self.asset_view(st.assets[a]) for a in rel["assets"] if a in st.assets]
            items, h = self.page(out, q, "/repos/%s/releases/%d/assets" % (rel["repo"], rel["id"]))
            return Resp(200, items, h)

    def asset_name(self, q):
        name = q.get("name", [""])[0]
        # GitHub renames special characters to '.' and drops leading/trailing periods
        return re.sub(r"[^A-Za-z0-9._+@-]", ".", name).strip(".")

    def starter_asset(self, args, q):
        """A failed upload can leave a 'starter' asset behind that blocks the name (GitHub does)."""
        st = self.server.st
        with st.lock:
            rel = self.find_release(args)
            name = self.asset_name(q)
            if rel is None or not name:
                return
            a = {"id": st.next_asset, "repo": rel["repo"], "release": rel["id"], "name": name,
                 "label": q.get("label", [""])[0], "state": "starter",
                 "content_type": self.headers.get("Content-Type") or "", "size": 0, "sha256": None,
                 "path": None, "created_at": now_iso(), "deleted": False}
            st.next_asset += 1
            st.assets[a["id"]] = a
            rel["assets"].append(a["id"])

    def op_asset_upload(self, seq, ident, args, q, body):
        st = self.server.st
        ctype = self.headers.get("Content-Type")
        with st.lock:
            rel = self.find_release(args)
            if rel is None:
                return gh_error(404, "Not Found")
            name = self.asset_name(q)
            if not name:
                return self.validation(seq, "asset_upload", "asset_name_missing", "Validation Failed",
                                       [{"resource": "ReleaseAsset", "code": "missing_field", "field": "name"}])
            if not ctype:
                st.error("asset_content_type", "asset upload without Content-Type", seq, "asset_upload")
            if not body.has_length:
                st.error("asset_no_length", "asset upload without Content-Length (chunked)", seq, "asset_upload")
            limit = st.settings["asset_max_bytes"]
            for aid in rel["assets"]:
                a = st.assets.get(aid)
                if a is not None and a["name"] == name:
                    return self.validation(seq, "asset_upload", "asset_duplicate", "Validation Failed",
                                           [{"resource": "ReleaseAsset", "code": "already_exists", "field": "name"}])
            aid = st.next_asset
            st.next_asset += 1
        d = os.path.join(st.state_dir, "assets")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "%d.bin" % aid)
        h = hashlib.sha256()
        size = 0
        scan = Scanner(st.secret_list)
        leaked = set()
        with open(path, "wb") as f:
            while True:
                chunk = body.read()
                if not chunk:
                    if body.done:
                        break
                    continue
                size += len(chunk)
                if size <= limit:
                    f.write(chunk)
                    h.update(chunk)
                    with st.lock:
                        leaked.update(scan.feed(chunk))
        with st.lock:
            if size > limit:
                os.unlink(path)
                return self.validation(seq, "asset_upload", "asset_too_big", "Validation Failed: size %d over %d" %
                                       (size, limit))
            for n in leaked:
                st.error("secret_in_asset", "%s appears in release asset %s" % (n, name), seq, "asset_upload")
            a = {"id": aid, "repo": rel["repo"], "release": rel["id"], "name": name,
                 "label": q.get("label", [""])[0], "state": "uploaded",
                 "content_type": ctype or "application/octet-stream", "size": size, "sha256": h.hexdigest(),
                 "path": path, "created_at": now_iso(), "deleted": False, "seq": seq}
            st.assets[aid] = a
            rel["assets"].append(aid)
            return Resp(201, self.asset_view(a))

    def find_asset(self, args):
        st = self.server.st
        r = self.need_repo(args[0], args[1])
        a = st.assets.get(int(args[2]))
        if r is None or a is None or a["repo"] != r["full_name"]:
            return None
        return a

    def op_asset(self, seq, ident, args, q, body):
        st = self.server.st
        with st.lock:
            a = self.find_asset(args)
            if a is None:
                return gh_error(404, "Not Found")
            return Resp(200, self.asset_view(a))

    def op_asset_delete(self, seq, ident, args, q, body):
        st = self.server.st
        with st.lock:
            a = self.find_asset(args)
            if a is None:
                return gh_error(404, "Not Found")
            del st.assets[a["id"]]
            rel = st.releases.get(a["release"])
            if rel is not None and a["id"] in rel["assets"]:
                rel["assets"].remove(a["id"])
            a["deleted"] = True
            st.deleted_assets.append(a)
            return Resp(204, b"")

    # -- downloads (github.com / objects.githubusercontent.com; no API headers)

    def download(self, method, path, body):
        st = self.server.st
        body.drain()
        with st.lock:
            st.seq += 1
            rec = {"seq": st.seq, "t": round(time.monotonic() - st.t0, 4), "method": method, "path": self.path,
                   "op": "download", "status": None, "fault": None, "auth": None, "etag": None,
                   "rate_remaining": None}
            st.requests.append(rec)
            f = self.take_fault("download", "before")
            tb = st.tarball
        if f is not None:
            rec["fault"] = f["mode"] if f["mode"] != "status" else f["status"]
            if f["mode"] != "status":
                return self.abort(f["mode"], f.get("hang", 30.0))
            rec["status"] = f["status"]
            return self.send(Resp(f["status"], "injected fault\n", ctype="text/plain"))
        if method not in ("GET", "HEAD"):
            rec["status"] = 405
            return self.send(Resp(405, "", ctype="text/plain"))
        r = None
        if path == "/_dl/actions-runner.tar.gz":
            r = Resp(302, b"", {"Location": "%s/_dl/blob/%s/%s?sig=%s" % (
                st.public_url, tb["sha256"], TARBALL_NAME, secrets.token_hex(8))}, ctype="text/html")
        elif path.startswith("/_dl/blob/"):
            if self.headers.get("Authorization"):
                with st.lock:
                    st.error("auth_forwarded_to_storage", "the GitHub token was sent to the storage host "
                             "after the redirect (S3 answers 400 to that)", rec["seq"], "download")
                r = Resp(400, "Only one auth mechanism allowed\n", ctype="application/xml")
            elif path == "/_dl/blob/%s/%s" % (tb["sha256"], TARBALL_NAME):
                with open(tb["path"], "rb") as fh:
                    data = fh.read()
                with st.lock:
                    if st.settings["tarball_corrupt"]:
                        data = data[:100] + bytes([data[100] ^ 1]) + data[101:]
                r = Resp(200, data, ctype="application/octet-stream")
        elif path.startswith("/_dl/assets/"):
            m = re.match(r"^/_dl/assets/(\d+)/", path)
            with st.lock:
                a = st.assets.get(int(m.group(1))) if m else None
            if a is not None and a["path"]:
                with open(a["path"], "rb") as fh:
                    r = Resp(200, fh.read(), ctype="application/octet-stream")
        elif path.startswith("/_dl/logs/"):
            m = re.match(r"^/_dl/logs/(\d+)$", path)
            with st.lock:
                job = st.jobs.get(int(m.group(1))) if m else None
                if job is not None:
                    r = Resp(200, bytes(job["log"]), ctype="text/plain")
        if r is None:
            r = Resp(404, "Not Found\n", ctype="text/plain")
        rec["status"] = r.status
        self.send(r, head_only=method == "HEAD")

    # -- the stand-in runner's protocol (not GitHub's API)

    def runner_api(self, method, path, body):
        st = self.server.st
        raw = body.read_all(JSON_MAX)
        if method != "POST":
            return Resp(405, {"message": "POST only"})
        try:
            doc = json.loads(raw.decode()) if raw else {}
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("runner body is not JSON")
        if not isinstance(doc, dict):
            raise BadRequest("runner body must be an object")
        auth = self.headers.get("Authorization") or ""
        secret = auth[len("RunnerSecret "):] if auth.startswith("RunnerSecret ") else ""
        with st.lock:
            rn = st.runners.get(doc.get("runner_id")) if isinstance(doc.get("runner_id"), int) else None
            if rn is None or not hmac.compare_digest(rn["secret"].encode(), secret.encode()):
                return Resp(401, {"message": "unknown runner or wrong secret"})
            if rn["deleted"] is not None and rn["job_id"] is None:
                return Resp(404, {"message": "Runner %s has been deleted (%s)" % (rn["name"], rn["deleted"]["by"])})
            rn["last_seen"] = time.monotonic()
            sess = doc.get("session")
            op = path[len("/_runner/"):]
            if op == "claim":
                return self.runner_claim(rn, sess, doc)
            job = st.jobs.get(doc.get("job_id")) if isinstance(doc.get("job_id"), int) else None
            if job is None or job["runner"] is not rn or rn["session"] != sess:
                return Resp(403, {"message": "job is not assigned to this runner session"})
            if job["status"] == "completed":
                return Resp(409, {"message": "job already completed (%s)" % job["conclusion"],
                                  "cancel": True})
            if op == "heartbeat":
                return Resp(200, {"cancel": job["cancel_requested"]})
            if op == "log":
                data = doc.get("data", "")
                if not isinstance(data, str):
                    raise BadRequest("data must be a string")
                append_log(st, job, data.encode("utf-8", errors="replace"), None)
                return Resp(200, {"cancel": job["cancel_requested"], "size": len(job["log"])})
            if op == "step":
                n = doc.get("number")
                steps = [s for s in job["steps"] if s["number"] == n]
                if not steps:
                    raise BadRequest("no step %r" % (n,))
                s = steps[0]
                status = doc.get("status")
                if status not in ("in_progress", "completed"):
                    raise BadRequest("status must be in_progress|completed")
                s["status"] = status
                if status == "in_progress":
                    s["started_at"] = now_iso()
                else:
                    c = doc.get("conclusion")
                    if c not in ("success", "failure", "skipped", "cancelled"):
                        raise BadRequest("bad step conclusion")
                    s["conclusion"] = c
                    s["started_at"] = s["started_at"] or now_iso()
                    s["completed_at"] = now_iso()
                st.touch_run(st.runs[job["run_id"]])
                return Resp(200, {"cancel": job["cancel_requested"]})
            if op == "complete":
                c = doc.get("conclusion")
                if c not in ("success", "failure", "cancelled"):
                    raise BadRequest("conclusion must be success|failure|cancelled")
                finish_job(st, job, c, "runner")
                return Resp(200, {"ok": True})
            return Resp(404, {"message": "unknown runner endpoint"})

    def runner_claim(self, rn, sess, doc):
        """Hand the runner ANY queued job whose labels are a subset of its labels (GitHub
        does not bind a JIT runner to the job it was made for). Long-polls up to `wait` s."""
        st = self.server.st
        if not isinstance(sess, str) or not sess:
            raise BadRequest("claim needs a session id")
        if rn["session"] is not None and rn["session"] != sess:
            return Resp(409, {"message": "A session for this runner already exists."})
        if rn["job_id"] is not None:
            return Resp(409, {"message": "runner already ran job %d" % rn["job_id"]})
        rn["session"] = sess
        rn["connected"] = True
        rn["status"] = "online"
        rn["os"] = "Linux"
        rn["claims"] += 1
        try:
            wait = float(doc.get("wait", 0))
        except (TypeError, ValueError):
            wait = 0.0
        deadline = time.monotonic() + max(0.0, min(wait, st.settings["claim_max_wait"]))
        labels = {l.lower() for l in rn["labels"]}
        while True:
            if rn["deleted"] is not None:
                rn["session"] = None
                return Resp(404, {"message": "Runner %s has been deleted" % rn["name"]})
            cands = []
            if not st.settings["claims_paused"]:
                for job in st.jobs.values():
                    if job["status"] != "queued" or job["hold"]:
                        continue
                    if job["reserve_for"] is not None and job["reserve_for"] != rn["name"]:
                        continue
                    repo = st.runs[job["run_id"]]["repo"]
                    sc = rn["scope"]
                    if sc[0] == "repo" and sc[1].lower() != repo["full_name"].lower():
                        continue
                    if sc[0] == "org" and sc[1].lower() != repo["owner"].lower():
                        continue
                    if not {l.lower() for l in job["labels"]} <= labels:
                        continue
                    cands.append(job)
            if cands:
                cands.sort(key=lambda j: j["id"], reverse=st.settings["claim_order"] == "lifo")
                job = cands[0]
                break
            left = deadline - time.monotonic()
            if left <= 0:
                rn["last_seen"] = time.monotonic()
                return Resp(204, b"")
            st.cond.wait(min(left, 0.5))
        t = now_iso()
        job["status"] = "in_progress"
        job["started_at"] = t
        job["runner"] = rn
        rn["busy"] = True
        rn["job_id"] = job["id"]
        rn["last_seen"] = time.monotonic()
        job["steps"] = [dict(s) for s in job["steps_all"]]
        job["steps"][0].update({"status": "in_progress", "started_at": t})
        run = st.runs[job["run_id"]]
        st.touch_run(run)
        st.hook(job, "in_progress")
        st.cond.notify_all()
        repo = run["repo"]
        return Resp(200, {"job": {
            "id": job["id"], "run_id": run["id"], "name": job["name"], "job_key": job["key"],
            "repository": repo["full_name"], "repository_owner": repo["owner"],
            "head_sha": run["head_sha"], "head_branch": run["head_branch"],
            "ref": "refs/heads/" + run["head_branch"], "workflow_name": run["workflow_name"],
            "run_number": run["run_number"], "run_attempt": 1, "event_name": run["event"],
            "server_url": st.public_url, "api_url": st.public_url, "labels": job["labels"],
            "env": job["env"], "steps": [dict(s, number=i + 2) for i, s in enumerate(job["spec_steps"])],
            "runner_group_name": rn["group_name"]}})

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
        m = re.match(r"^/_control/job/(\d+)(/[a-z_]+)?$", path)
        md = re.match(r"^/_control/deliveries/(\d+)/redeliver$", path)
        with st.lock:
            if path == "/_control/enqueue" and method == "POST":
                return Resp(200, self.enqueue(doc))
            if path == "/_control/release" and method == "POST":
                return Resp(200, self.make_release(doc))
            if path == "/_control/commit" and method == "POST":
                r = st.repo(str(doc.get("repo", "")), create=True)
                sha = str(doc.get("sha", ""))
                if not re.match(r"^[0-9a-f]{40}$", sha):
                    raise BadRequest("sha must be 40 lowercase hex digits")
                r["shas"].add(sha)
                return Resp(200, {"ok": True})
            if path == "/_control/runner_group" and method == "POST":
                org = str(doc.get("org", ""))
                gid = doc.get("id")
                if not org or not isinstance(gid, int):
                    raise BadRequest("need org and integer id")
                st.groups.setdefault(org.lower(), {1: "Default"})[gid] = str(doc.get("name", "group-%d" % gid))
                return Resp(200, {"ok": True, "groups": st.groups[org.lower()]})
            if path == "/_control/fault" and method == "POST":
                op = doc.get("op")
                ops = {o for _, _, o, _ in ROUTES} | {"any", "download"}
                if op not in ops:
                    raise BadRequest("op must be one of %s" % ", ".join(sorted(ops)))
                mode = doc.get("mode", "status")
                if mode not in ("status", "reset", "close", "hang"):
                    raise BadRequest("mode must be status|reset|close|hang")
                when = doc.get("when", "before")
                if when not in ("before", "after"):
                    raise BadRequest("when must be before|after")
                rl = doc.get("rate_limit")
                if rl not in (None, "primary", "secondary"):
                    raise BadRequest("rate_limit must be primary|secondary")
                if rl and when != "before":
                    raise BadRequest("rate-limit faults are 'before' faults")
                f = {"op": op, "status": int(doc.get("status", 403 if rl else 500)),
                     "count": int(doc.get("count", 1)), "retry_after": doc.get("retry_after"),
                     "reset_in": doc.get("reset_in"), "rate_limit": rl, "mode": mode, "when": when,
                     "hang": float(doc.get("hang", 30)), "leave_starter": bool(doc.get("leave_starter")),
                     "message": doc.get("message")}
                st.faults.append(f)
                return Resp(200, {"ok": True, "faults": len(st.faults)})
            if path == "/_control/faults/clear" and method == "POST":
                st.faults.clear()
                return Resp(200, {"ok": True})
            if path == "/_control/set" and method == "POST":
                for k, v in doc.items():
                    if k not in st.settings:
                        raise BadRequest("unknown setting %s" % k)
                    if k == "claim_order" and v not in ("fifo", "lifo"):
                        raise BadRequest("claim_order must be fifo|lifo")
                    st.settings[k] = type(st.settings[k])(v)
                st.cond.notify_all()
                return Resp(200, st.settings)
            if path == "/_control/tokens/expire" and method == "POST":
                n = 0
                for t in st.tokens.values():
                    if t["kind"] == "installation" and t["expires"] > time.time():
                        t["expires"] = time.time() - 1
                        n += 1
                return Resp(200, {"expired": n})
            if path == "/_control/state" and method == "GET":
                return Resp(200, self.dump())
            if path == "/_control/runners" and method == "GET":
                allr = [st.runner_dump(r) for r in sorted(st.runners.values(), key=lambda x: x["id"])]
                reg = [r for r in allr if r["deleted"] is None]
                return Resp(200, {"runners": allr, "registered": [r["name"] for r in reg],
                                  "stale": [r["name"] for r in reg if not r["busy"]],
                                  "busy": [r["name"] for r in reg if r["busy"]]})
            if path == "/_control/reset" and method == "POST":
                st.requests.clear()
                st.errors.clear()
                st.faults.clear()
                return Resp(200, {"ok": True})
            if path == "/_control/webhook" and method == "POST":
                job = st.jobs.get(doc.get("job_id"))
                if job is None:
                    raise BadRequest("unknown job_id")
                sig = doc.get("signature", "good")
                if sig not in ("good", "bad", "none", "wrong_secret"):
                    raise BadRequest("signature must be good|bad|none|wrong_secret")
                action = doc.get("action", {"queued": "queued", "in_progress": "in_progress"}.get(
                    job["status"], "completed"))
                d = st.hook(job, action, signature=sig, guid=doc.get("guid"))
                return Resp(200, delivery_view(d))
            if md and method == "POST":
                old = [d for d in st.deliveries if d["id"] == int(md.group(1))]
                if not old:
                    return Resp(404, {"message": "no such delivery"})
                o = old[0]
                d = st.hook(st.jobs.get(o["job_id"]), o["action"], signature=doc.get("signature", o["signature"]),
                            guid=o["guid"], body=o["_body"], redelivery=True)
                return Resp(200, delivery_view(d))
            if path == "/_control/deliveries" and method == "GET":
                want = int(q.get("min", ["0"])[0])
                deadline = time.monotonic() + float(q.get("timeout", ["0"])[0])
                while True:
                    done = [d for d in st.deliveries if d["state"] != "queued"]
                    left = deadline - time.monotonic()
                    if len(done) >= want or left <= 0:
                        break
                    st.cond.wait(min(left, 0.5))
                ok = len(done) >= want
                return Resp(200 if ok else 408, [delivery_view(d) for d in st.deliveries])
            if m:
                job = st.jobs.get(int(m.group(1)))
                if job is None:
                    return Resp(404, {"message": "no such job"})
                sub = m.group(2)
                if sub is None and method == "GET":
                    return Resp(200, self.job_dump(job, log=True))
                if sub == "/wait" and method == "GET":
                    want = q.get("status", ["completed"])[0]
                    order = {"queued": 0, "in_progress": 1, "completed": 2}
                    if want not in order:
                        raise BadRequest("status must be queued|in_progress|completed")
                    deadline = time.monotonic() + float(q.get("timeout", ["10"])[0])
                    while order[job["status"]] < order[want]:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        st.cond.wait(min(left, 0.5))
                    ok = order[job["status"]] >= order[want]
                    return Resp(200 if ok else 408, self.job_dump(job, log=False))
                if sub == "/cancel" and method == "POST":
                    if job["status"] == "completed":
                        return Resp(409, {"message": "job already completed"})
                    if job["status"] == "queued":
                        finish_job(st, job, "cancelled", "control")
                    else:
                        job["cancel_requested"] = True
                    return Resp(200, {"ok": True, "status": job["status"]})
                if sub == "/set" and method == "POST":
                    if "hold" in doc:
                        job["hold"] = bool(doc["hold"])
                    if "reserve_for" in doc:
                        job["reserve_for"] = doc["reserve_for"]
                    st.cond.notify_all()
                    return Resp(200, self.job_dump(job, log=False))
                if sub == "/log" and method == "GET":
                    return Resp(200, bytes(job["log"]), ctype="text/plain; charset=utf-8")
            return Resp(404, {"message": "unknown control endpoint"})

    def enqueue(self, doc):
        st = self.server.st
        r = st.repo(str(doc.get("repo", st.opts.repo[0])), create=True)
        sha = doc.get("head_sha") or hashlib.sha1(b"tdxr-%d" % st.next_run).hexdigest()
        if not isinstance(sha, str) or not re.match(r"^[0-9a-f]{40}$", sha):
            raise BadRequest("head_sha must be 40 lowercase hex digits")
        specs = doc.get("jobs")
        if specs is None:
            specs = [{k: doc[k] for k in ("name", "labels", "steps", "env", "conclusion", "reserve_for", "hold")
                      if k in doc}]
        if not isinstance(specs, list) or not specs:
            raise BadRequest("jobs must be a non-empty list")
        r["shas"].add(sha)
        r["run_number"] += 1
        t = now_iso()
        run = {"id": st.next_run, "repo": r, "head_sha": sha, "head_branch": str(doc.get("head_branch", "main")),
               "workflow_name": str(doc.get("workflow_name", "CI")), "event": str(doc.get("event", "push")),
               "title": str(doc.get("title", "test commit")), "run_number": r["run_number"],
               "created_at": t, "updated_at": t, "jobs": []}
        st.next_run += 1
        jobs = []
        for spec in specs:
            if not isinstance(spec, dict):
                raise BadRequest("each job must be an object")
            labels = spec.get("labels", ["self-hosted"])
            if not isinstance(labels, list) or not labels or not all(isinstance(l, str) and l for l in labels):
                raise BadRequest("labels must be a non-empty list of strings")
            steps = spec.get("steps", [{"name": "hello", "run": "echo hello"}])
            if not isinstance(steps, list):
                raise BadRequest("steps must be a list")
            norm = []
            for s in steps:
                if isinstance(s, str):
                    s = {"run": s}
                if not isinstance(s, dict) or not isinstance(s.get("run"), str):
                    raise BadRequest("each step needs a string 'run'")
                e = {"name": str(s.get("name") or "Run " + s["run"].strip().split("\n")[0][:60]),
                     "run": s["run"], "env": s.get("env", {}), "if": s.get("if", "success()"),
                     "continue-on-error": bool(s.get("continue-on-error", False))}
                if not isinstance(e["env"], dict):
                    raise BadRequest("step env must be an object")
                norm.append(e)
            c = spec.get("conclusion")
            if c not in (None, "success", "failure"):
                raise BadRequest("conclusion must be success|failure")
            if c == "failure":
                norm.append({"name": "Fail as asked", "run": "echo 'failing as the test asked'; exit 1",
                             "env": {}, "if": "success()", "continue-on-error": False})
            env = spec.get("env", {})
            if not isinstance(env, dict):
                raise BadRequest("env must be an object")
            name = str(spec.get("name", "build"))
            api_steps = [{"name": "Set up job", "status": "queued", "conclusion": None, "number": 1,
                          "started_at": None, "completed_at": None}]
            for i, s in enumerate(norm):
                api_steps.append({"name": s["name"], "status": "queued", "conclusion": None, "number": i + 2,
                                  "started_at": None, "completed_at": None})
            api_steps.append({"name": "Complete job", "status": "queued", "conclusion": None,
                              "number": len(norm) + 2, "started_at": None, "completed_at": None})
            job = {"id": st.next_job, "run_id": run["id"], "name": name,
                   "key": re.sub(r"[^A-Za-z0-9_-]", "_", str(spec.get("key", name))),
                   "labels": list(labels), "status": "queued", "conclusion": None, "created_at": t,
                   "started_at": t, "completed_at": None, "runner": None, "spec_steps": norm,
                   "steps_all": api_steps, "steps": [], "env": {str(k): str(v) for k, v in env.items()},
                   "reserve_for": spec.get("reserve_for"), "hold": bool(spec.get("hold", False)),
                   "cancel_requested": False, "log": bytearray(), "finished_by": None,
                   "scanner": Scanner(st.secret_list)}
            # the API shows no steps until a runner picked the job up
            st.next_job += 1
            st.jobs[job["id"]] = job
            run["jobs"].append(job["id"])
            jobs.append(job)
        st.runs[run["id"]] = run
        for job in jobs:
            st.hook(job, "queued")
        st.cond.notify_all()
        return {"run_id": run["id"], "run_number": run["run_number"], "head_sha": sha, "repo": r["full_name"],
                "jobs": [{"id": j["id"], "name": j["name"]} for j in jobs]}

    def make_release(self, doc):
        st = self.server.st
        r = st.repo(str(doc.get("repo", st.opts.repo[0])), create=True)
        tag = doc.get("tag")
        if not isinstance(tag, str) or not tag:
            raise BadRequest("need a tag")
        for rel in st.releases.values():
            if rel["repo"] == r["full_name"] and rel["tag"] == tag:
                raise BadRequest("release %s exists" % tag)
        rel = {"id": st.next_release, "repo": r["full_name"], "tag": tag, "name": str(doc.get("name", tag)),
               "body": str(doc.get("body", "")), "draft": bool(doc.get("draft", False)),
               "prerelease": bool(doc.get("prerelease", False)),
               "target": str(doc.get("target_commitish", "main")), "created_at": now_iso(), "assets": []}
        st.next_release += 1
        st.releases[rel["id"]] = rel
        return self.release_view(rel)

    def job_dump(self, job, log):
        st = self.server.st
        v = st.job_view(job)
        v.update({"hold": job["hold"], "reserve_for": job["reserve_for"],
                  "cancel_requested": job["cancel_requested"], "finished_by": job["finished_by"],
                  "repo": st.runs[job["run_id"]]["repo"]["full_name"], "log_size": len(job["log"]),
                  "spec_steps": job["spec_steps"]})
        if log:
            v["log"] = job["log"].decode("utf-8", errors="replace")
        return v

    def dump(self):
        st = self.server.st
        return {
            "url": st.public_url,
            "settings": st.settings,
            "app": {"app_id": st.opts.app_id, "installation_id": st.opts.installation_id,
                    "configured": st.app_key is not None},
            "tokens": {"static": sum(1 for t in st.tokens.values() if t["kind"] == "static"),
                       "installation_issued": st.tokens_issued,
                       "installation_live": sum(1 for t in st.tokens.values()
                                                if t["kind"] == "installation" and t["expires"] > time.time())},
            "rate": {k: {"limit": b["limit"], "used": b["used"], "reset": int(b["reset"])}
                     for k, b in st.buckets.items()},
            "repos": [{"full_name": r["full_name"], "id": r["id"], "shas": sorted(r["shas"])}
                      for r in st.repos.values()],
            "runs": [st.run_view(r) for r in st.runs.values()],
            "jobs": {str(j["id"]): self.job_dump(j, log=False) for j in st.jobs.values()},
            "runners": [st.runner_dump(r) for r in sorted(st.runners.values(), key=lambda x: x["id"])],
            "check_runs": [dict(self.check_view(c), updates=c["updates"]) for c in st.check_runs.values()],
            "statuses": st.statuses,
            "releases": [self.release_view(r) for r in st.releases.values()],
            "assets": [dict(self.asset_view(a), sha256=a["sha256"], path=a["path"]) for a in st.assets.values()],
            "deleted_assets": [{"id": a["id"], "name": a["name"], "state": a["state"]} for a in st.deleted_assets],
            "deliveries": [delivery_view(d) for d in st.deliveries],
            "requests": st.requests,
            "errors": st.errors,
            "faults": [f for f in st.faults if f["count"] != 0],
            "runner_tarball": {"url": st.public_url + "/_dl/actions-runner.tar.gz", "sha256": st.tarball["sha256"],
                               "size": st.tarball["size"], "name": TARBALL_NAME},
        }


# ---------------------------------------------------------------------------- main


def build_tarball(src, state_dir):
    """Deterministic tar.gz of the stand-in runner (fixed mtimes/owners, sorted): same
    files give the same SHA-256, so a test can pin it like a real release."""
    import gzip
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for root, dirs, files in os.walk(src):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for fn in sorted(files):
                if fn.endswith(".pyc"):
                    continue
                p = os.path.join(root, fn)
                arc = os.path.relpath(p, src)
                ti = tarfile.TarInfo("./" + arc)
                with open(p, "rb") as f:
                    data = f.read()
                ti.size = len(data)
                ti.mode = 0o755 if os.access(p, os.X_OK) else 0o644
                ti.mtime = 1767225600
                ti.uid = ti.gid = 1001
                ti.uname = ti.gname = "runner"
                tf.addfile(ti, io.BytesIO(data))
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, filename="") as g:
        g.write(buf.getvalue())
    data = gz.getvalue()
    path = os.path.join(state_dir, TARBALL_NAME)
    with open(path, "wb") as f:
        f.write(data)
    return {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def load_app_key(path):
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        raise SystemExit("github_server: --app-key-pub needs python3-cryptography")
    with open(path, "rb") as f:
        pem = f.read()
    if b"PRIVATE KEY" in pem:
        return serialization.load_pem_private_key(pem, password=None).public_key()
    return serialization.load_pem_public_key(pem)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--token", action="append", help="accepted static token (PAT-like; repeatable)")
    ap.add_argument("--app-id", type=int, default=1234)
    ap.add_argument("--app-client-id", default=None, help="also accepted as the JWT iss")
    ap.add_argument("--app-key-pub", default=None, help="PEM public key of the GitHub App (enables App auth)")
    ap.add_argument("--installation-id", type=int, default=4242)
    ap.add_argument("--token-ttl", type=float, default=3600.0, help="installation token lifetime, seconds")
    ap.add_argument("--repo", action="append", help="owner/name known from the start (repeatable; "
                    "default octo-org/octo-repo)")
    ap.add_argument("--webhook-url", default=None)
    ap.add_argument("--webhook-secret", default=None)
    ap.add_argument("--rate-limit", type=int, default=5000)
    ap.add_argument("--rate-window", type=float, default=3600.0)
    ap.add_argument("--runner-lost-timeout", type=float, default=30.0,
                    help="a runner silent this long loses its job (failure); 0: never")
    ap.add_argument("--claim-order", choices=("fifo", "lifo"), default="fifo")
    ap.add_argument("--runner-dir", default=os.path.join(here, "fake_runner"))
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--public-url", default=None, help="base URL in payloads (default http://127.0.0.1:PORT)")
    ap.add_argument("--uploads-url", default=None, help="base of release upload_url (default: --public-url)")
    ap.add_argument("--state-dir", default=None)
    ap.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes")
    ap.add_argument("--verbose", action="store_true")
    opts = ap.parse_args()
    opts.repo = opts.repo or ["octo-org/octo-repo"]
    if not opts.token and not opts.app_key_pub:
        ap.error("give --token and/or --app-key-pub")

    own_dir = opts.state_dir is None
    state_dir = tempfile.mkdtemp(prefix="github-server.") if own_dir else os.path.abspath(opts.state_dir)
    os.makedirs(state_dir, exist_ok=True)
    st = State(opts, state_dir)
    if opts.app_key_pub:
        st.app_key = load_app_key(opts.app_key_pub)
    for r in opts.repo:
        st.repo(r, create=True)
    st.tarball = build_tarball(opts.runner_dir, state_dir)
    srv = ThreadingHTTPServer(("127.0.0.1", opts.port), Handler)
    srv.daemon_threads = True
    srv.st = st
    st.public_url = (opts.public_url or "http://127.0.0.1:%d" % srv.server_address[1]).rstrip("/")
    threading.Thread(target=hook_sender, args=(st,), daemon=True).start()
    threading.Thread(target=ticker, args=(st,), daemon=True).start()

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
