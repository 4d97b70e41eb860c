#!/usr/bin/env python3
"""fake_runner.py - STAND-IN for GitHub's actions/runner (Runner.Listener), tests only.

The official runner cannot be downloaded in this project's test environment, so this stand-in
follows its command-line contract: `run.sh --jitconfig <encoded>` or, preferred, the same value in
ACTIONS_RUNNER_INPUT_JITCONFIG (like the real CommandSettings it removes every
ACTIONS_RUNNER_INPUT_* variable from its environment before running anything). It refuses to run
as root unless RUNNER_ALLOW_RUNASROOT is set (run-helper.sh does that). It decodes the JIT config
(base64 JSON of base64 ".runner"/".credentials"/".credentials_rsaparams", as GitHub's is), claims
ONE job from the test server (POST /_runner/claim: the server may hand it ANY queued job whose
labels it has), prints "Running job: <name>" and each step's output, runs every step with
`bash --noprofile --norc -eo pipefail` in the current directory with GITHUB_* variables, honours
GITHUB_ENV/GITHUB_PATH, reports steps, log and completion, and exits.
Exit codes: 0 job ran (any conclusion); 1 runner-level error; 124 no job within the idle timeout.
TDXR_FAKE_RUNNER_REAL_EXIT_CODES=1: always 0, as the real run.sh (run-helper.sh maps the
listener's codes to 0). Trust: the job's commands run as this user; stdlib only (python3 3.6+).
"""
import base64
import binascii
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

VERSION = "2.999.0-stand-in"
EXIT_OK, EXIT_ERROR, EXIT_NO_JOB = 0, 1, 124


class Shutdown(Exception):
    pass


class RunnerError(Exception):
    pass


def ts():
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())


def say(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def usage():
    say("Usage (stand-in): ./run.sh [--jitconfig <encoded>] [--idle-timeout <seconds>] [--once]\n"
        "  The JIT config may instead come from ACTIONS_RUNNER_INPUT_JITCONFIG.")


class Runner:
    def __init__(self):
        self.real_codes = os.environ.get("TDXR_FAKE_RUNNER_REAL_EXIT_CODES") == "1"
        self.shutdown = False
        self.in_job = False
        self.cancel = threading.Event()
        self.log_lock = threading.Lock()
        self.log_buf = []
        self.stop_hb = threading.Event()
        self.server = self.secret = self.name = None
        self.rid = None
        self.session = str(uuid.uuid4())
        self.job = None
        self.pgids = []

    # -- configuration

    def parse(self, argv):
        env_args = {}
        for k in list(os.environ):
            if k.upper().startswith("ACTIONS_RUNNER_INPUT_"):
                v = os.environ.pop(k).strip()
                if v:
                    env_args[k[len("ACTIONS_RUNNER_INPUT_"):].lower()] = v
        args, flags, unknown = {}, set(), []
        i = 0
        while i < len(argv):
            a = argv[i]
            if a.startswith("--") and "=" in a:
                k, v = a[2:].split("=", 1)
                args[k.lower()] = v
            elif a in ("--jitconfig", "--idle-timeout", "--startuptype"):
                if i + 1 >= len(argv):
                    unknown.append(a)
                else:
                    args[a[2:]] = argv[i + 1]
                    i += 1
            elif a in ("--once", "--help", "--version", "--check"):
                flags.add(a[2:])
            else:
                unknown.append(a)
            i += 1
        for k in args:
            if k not in ("jitconfig", "idle-timeout", "startuptype"):
                unknown.append("--" + k)
        if unknown:
            raise RunnerError("Unrecognized command-line input arguments: '%s'. For usage refer to: "
                              "./config.sh --help" % ", ".join(unknown))
        self.flags = flags
        self.jit = args.get("jitconfig") or env_args.get("jitconfig")
        it = args.get("idle-timeout") or os.environ.get("TDXR_FAKE_RUNNER_IDLE_TIMEOUT") or "120"
        try:
            self.idle_timeout = float(it)
        except ValueError:
            raise RunnerError("idle timeout %r is not a number" % it)

    def decode(self):
        if not self.jit:
            raise RunnerError("Not configured. Run config.(sh/cmd) to configure the runner.")
        try:
            outer = json.loads(base64.b64decode(self.jit, validate=True).decode())
            runner = json.loads(base64.b64decode(outer[".runner"], validate=True).decode())
            creds = json.loads(base64.b64decode(outer[".credentials"], validate=True).decode())
            self.server = (os.environ.get("TDXR_FAKE_RUNNER_SERVER_URL") or runner["ServerUrl"]).rstrip("/")
            self.rid = int(runner["AgentId"])
            self.name = str(runner["AgentName"])
            self.secret = str(creds["Data"]["standInSecret"])
        except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
            raise RunnerError("Invalid JIT configuration (not the base64 JSON that generate-jitconfig returns)")

    # -- HTTP

    def post(self, op, doc, timeout=30.0):
        body = dict(doc, runner_id=self.rid, session=self.session)
        if self.job is not None:
            body.setdefault("job_id", self.job["id"])
        req = urllib.request.Request(
            self.server + "/_runner/" + op, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": "RunnerSecret " + self.secret,
                     "User-Agent": "GitHubActionsRunner-stand-in/" + VERSION})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                data = r.read()
                code = r.status
        except urllib.error.HTTPError as e:
            code, data = e.code, e.read()
        try:
            d = json.loads(data.decode()) if data else {}
        except (ValueError, UnicodeDecodeError):
            d = {}
        return code, d

    def report(self, op, doc):
        """Best-effort report (step/log): a lost report must not kill the job."""
        for _ in range(3):
            try:
                return self.post(op, doc, timeout=10)
            except OSError:
                time.sleep(0.5)
        return None

    # -- claim

    def claim(self):
        say("\u221a Connected to GitHub")
        say("")
        say("Current runner version: '%s'" % VERSION)
        say("%s: Listening for Jobs" % ts())
        deadline = time.monotonic() + self.idle_timeout
        conn_err = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            wait = min(left, 10.0)
            try:
                code, d = self.post("claim", {"wait": wait}, timeout=wait + 15)
            except OSError as e:
                conn_err = e
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                continue
            conn_err = None
            if code == 200 and isinstance(d.get("job"), dict):
                return d["job"]
            if code == 204:
                continue
            if code == 404:
                raise RunnerError("Runner registration has been deleted from the server, please re-configure. "
                                  "(%s)" % d.get("message", ""))
            if code == 401:
                raise RunnerError("The runner's credentials were rejected (401).")
            if code == 409:
                raise RunnerError("A session for this runner already exists. (%s)" % d.get("message", ""))
            time.sleep(1.0)
        if conn_err is not None:
            raise RunnerError("Could not reach %s: %s" % (self.server, conn_err))
        return None

    # -- job

    def ship(self, text):
        with self.log_lock:
            self.log_buf.append(text)

    def flush(self):
        with self.log_lock:
            data, self.log_buf = "".join(self.log_buf), []
        if not data:
            return None
        return self.report("log", {"data": data})

    def heartbeat(self):
        while not self.stop_hb.wait(0.5):
            try:
                r = self.flush() or self.post("heartbeat", {}, timeout=10)
            except OSError:
                continue
            if r and r[1].get("cancel"):
                self.cancel.set()

    def step_env(self, base, extra_env, files):
        env = dict(base)
        env.update(extra_env)
        env.update(files)
        return env

    def read_env_file(self, path, env):
        try:
            with open(path, "r", encoding="utf-8", errors="replace") as f:
                lines = f.read().split("\n")
        except OSError:
            return
        i = 0
        while i < len(lines):
            ln = lines[i]
            i += 1
            if "<<" in ln and ("=" not in ln or ln.index("<<") < ln.index("=")):
                k, delim = ln.split("<<", 1)
                vals = []
                while i < len(lines) and lines[i] != delim:
                    vals.append(lines[i])
                    i += 1
                i += 1
                env[k] = "\n".join(vals)
            elif "=" in ln:
                k, v = ln.split("=", 1)
                env[k] = v

    def run_step(self, step, env, tmp):
        script = os.path.join(tmp, "%s.sh" % uuid.uuid4())
        with open(script, "w") as f:
            f.write(step["run"])
            if not step["run"].endswith("\n"):
                f.write("\n")
        header = "##[group]Run %s\n%s\n##[endgroup]\n" % (step["name"], step["run"].rstrip("\n"))
        self.ship(header)
        p = subprocess.Popen(["bash", "--noprofile", "--norc", "-eo", "pipefail", script], cwd=os.getcwd(),
                             env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
        self.pgids.append(p.pid)

        def reader():
            for line in iter(p.stdout.readline, b""):
                sys.stdout.buffer.write(line)
                sys.stdout.flush()
                self.ship(line.decode("utf-8", errors="replace"))
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        kill_at, stage = None, 0
        while True:
            try:
                rc = p.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                pass
            if (self.cancel.is_set() or self.shutdown) and kill_at is None:
                kill_at = time.monotonic()
            if kill_at is not None:
                # the real runner: SIGINT, 7.5 s, SIGTERM, 2.5 s, SIGKILL
                el = time.monotonic() - kill_at
                sig = None
                if stage == 0:
                    sig, stage = signal.SIGINT, 1
                elif stage == 1 and el > 7.5:
                    sig, stage = signal.SIGTERM, 2
                elif stage == 2 and el > 10.0:
                    sig, stage = signal.SIGKILL, 3
                if sig is not None:
                    try:
                        os.killpg(p.pid, sig)
                    except OSError:
                        pass
        t.join(1.0)  # a background child may keep the pipe open: do not wait for it
        if rc < 0:
            rc = 128 - rc  # killed by a signal: report it as a shell would
        if rc != 0:
            msg = "##[error]Process completed with exit code %d.\n" % rc
            say(msg.rstrip("\n"))
            self.ship(msg)
        return rc

    def run_job(self, job):
        self.job = job
        self.in_job = True
        say("%s: Running job: %s" % (ts(), job["name"]))
        hb = threading.Thread(target=self.heartbeat, daemon=True)
        hb.start()
        tmp = tempfile.mkdtemp(prefix="runner-temp.")
        cwd = os.getcwd()
        event = os.path.join(tmp, "event.json")
        with open(event, "w") as f:
            json.dump({"ref": job["ref"], "after": job["head_sha"],
                       "repository": {"full_name": job["repository"]}}, f)
        arch = {"x86_64": "X64", "aarch64": "ARM64", "arm64": "ARM64"}.get(platform.machine(), "X64")
        base = dict(os.environ)
        base.update({
            "CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_SHA": job["head_sha"],
            "GITHUB_REPOSITORY": job["repository"], "GITHUB_REPOSITORY_OWNER": job["repository_owner"],
            "GITHUB_RUN_ID": str(job["run_id"]), "GITHUB_RUN_NUMBER": str(job["run_number"]),
            "GITHUB_RUN_ATTEMPT": str(job["run_attempt"]), "GITHUB_JOB": job["job_key"],
            "GITHUB_WORKFLOW": job["workflow_name"], "GITHUB_REF": job["ref"],
            "GITHUB_REF_NAME": job["head_branch"], "GITHUB_REF_TYPE": "branch", "GITHUB_HEAD_REF": "",
            "GITHUB_BASE_REF": "", "GITHUB_EVENT_NAME": job["event_name"], "GITHUB_EVENT_PATH": event,
            "GITHUB_ACTOR": "octocat", "GITHUB_SERVER_URL": job["server_url"], "GITHUB_API_URL": job["api_url"],
            "GITHUB_GRAPHQL_URL": job["api_url"] + "/graphql", "GITHUB_WORKSPACE": cwd,
            "RUNNER_NAME": self.name, "RUNNER_OS": "Linux", "RUNNER_ARCH": arch, "RUNNER_TEMP": tmp,
            "RUNNER_TOOL_CACHE": os.path.join(tmp, "_tool"), "RUNNER_ENVIRONMENT": "self-hosted",
            "RUNNER_TRACKING_ID": "github_" + str(uuid.uuid4()), "TDXR_FAKE_RUNNER": "1",
        })
        base.update(job.get("env") or {})
        added_env, added_path = {}, []
        failed = False
        steps = job["steps"]
        self.report("step", {"number": 1, "status": "completed", "conclusion": "success"})
        for idx, step in enumerate(steps):
            n = step["number"]
            cond = (step.get("if") or "success()").replace(" ", "")
            cancelled = self.cancel.is_set() or self.shutdown
            run = {"success()": not failed and not cancelled, "always()": True,
                   "failure()": failed and not cancelled, "cancelled()": cancelled}.get(cond, not failed)
            if not run:
                self.report("step", {"number": n, "status": "completed", "conclusion": "skipped"})
                continue
            self.report("step", {"number": n, "status": "in_progress"})
            files = {}
            for k in ("GITHUB_ENV", "GITHUB_PATH", "GITHUB_OUTPUT", "GITHUB_STATE", "GITHUB_STEP_SUMMARY"):
                files[k] = os.path.join(tmp, "%s_%d" % (k.lower(), n))
                open(files[k], "w").close()
            env = self.step_env(base, added_env, files)
            env.update({str(k): str(v) for k, v in (step.get("env") or {}).items()})
            env["GITHUB_ACTION"] = "__run" if idx == 0 else "__run_%d" % (idx + 1)
            if added_path:
                env["PATH"] = ":".join(reversed(added_path)) + ":" + env.get("PATH", "")
            rc = self.run_step(step, env, tmp)
            self.read_env_file(files["GITHUB_ENV"], added_env)
            try:
                with open(files["GITHUB_PATH"]) as f:
                    added_path += [x.strip() for x in f if x.strip()]
            except OSError:
                pass
            if rc == 0:
                conc = "success"
            elif self.cancel.is_set() and not self.shutdown:
                conc = "cancelled"
            else:
                conc = "failure"
                if step.get("continue-on-error"):
                    conc = "success"
                else:
                    failed = True
            self.report("step", {"number": n, "status": "completed", "conclusion": conc})
        last = steps[-1]["number"] + 1 if steps else 2
        self.report("step", {"number": last, "status": "in_progress"})
        self.ship("Cleaning up orphan processes\n")
        for pg in self.pgids:
            try:
                os.killpg(pg, signal.SIGKILL)
            except OSError:
                pass
        if self.shutdown:
            msg = "##[error]The runner has received a shutdown signal. This can happen when the runner service " \
                  "is stopped, or a manually started runner is canceled."
            say(msg)
            self.ship(msg + "\n")
            conclusion = "failure"
        elif self.cancel.is_set():
            conclusion = "cancelled"
        else:
            conclusion = "failure" if failed else "success"
        self.report("step", {"number": last, "status": "completed", "conclusion": "success"})
        self.stop_hb.set()
        hb.join(15)
        self.flush()
        for i in range(5):
            try:
                code, d = self.post("complete", {"conclusion": conclusion}, timeout=15)
                if code in (200, 409):
                    break
            except OSError:
                pass
            time.sleep(1.0)
        else:
            raise RunnerError("could not report the job's completion")
        word = {"success": "Succeeded", "failure": "Failed", "cancelled": "Canceled"}[conclusion]
        say("%s: Job %s completed with result: %s" % (ts(), job["name"], word))
        self.in_job = False
        try:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass
        return 1 if self.shutdown else 0

    def on_signal(self, signum, _frame):
        self.shutdown = True
        if not self.in_job:
            raise Shutdown()

    def main(self, argv):
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        code = EXIT_OK
        try:
            self.parse(argv)
            if "version" in self.flags:
                say(VERSION)
                return EXIT_OK
            if "help" in self.flags:
                usage()
                return EXIT_OK
            if os.getuid() == 0 and not os.environ.get("RUNNER_ALLOW_RUNASROOT"):
                raise RunnerError("Must not run interactively with sudo")
            self.decode()
            job = self.claim()
            if job is None:
                say("%s: No job was assigned to runner %s within %g s (stand-in idle timeout)" %
                    (ts(), self.name, self.idle_timeout))
                code = EXIT_NO_JOB
            else:
                code = self.run_job(job)
        except RunnerError as e:
            say("%s: %s" % (ts(), e))
            sys.stderr.write("fake_runner: %s\n" % e)
            code = EXIT_ERROR
        except Shutdown:
            say("%s: Runner listener exited: shutdown signal" % ts())
            code = EXIT_ERROR
        if self.real_codes:
            say("Runner listener exit with %d return code (stand-in; the real run.sh exits 0)." % code)
            say("Exiting runner...")
            return 0
        return code


if __name__ == "__main__":
    sys.exit(Runner().main(sys.argv[1:]))
