#!/usr/bin/env bash
# test_run_phala.sh - `tdx-runner run --executor phala` end to end against
# phala_server.py whose CVMs are real local boxes: success, the fault matrix and the
# kill -9 crash matrix, with zero leaked CVMs and box processes (see cvm_e2e.sh).
exec bash "$(dirname "$0")/cvm_e2e.sh" phala
