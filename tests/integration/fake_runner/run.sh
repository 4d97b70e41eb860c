#!/usr/bin/env bash
# run.sh - STAND-IN for the official GitHub Actions runner's ./run.sh. TESTS ONLY: this is
# not actions/runner and speaks no part of GitHub's broker protocol. It takes the same command
# line (`./run.sh --jitconfig <encoded>`, or the config from ACTIONS_RUNNER_INPUT_JITCONFIG so
# no secret is on argv), claims ONE job from tests/integration/github_server.py's /_runner/
# endpoints, runs the job's step commands with bash in the current directory and exits.
# Exit codes: 0 the job ran (whatever its conclusion), 1 runner-level error, 124 no job within
# the idle timeout (--idle-timeout S / TDXR_FAKE_RUNNER_IDLE_TIMEOUT, default 120). With
# TDXR_FAKE_RUNNER_REAL_EXIT_CODES=1 it exits 0 in every case, as the real run.sh does.
# Needs only bash and python3 (stdlib). Trust: runs the job's commands as the calling user.
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec python3 "$DIR/fake_runner.py" "$@"
