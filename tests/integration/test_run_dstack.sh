#!/usr/bin/env bash
# test_run_dstack.sh - `tdx-runner run --executor dstack` end to end against
# dstack_vmm_server.py whose VMs are real local boxes: success, the fault matrix and
# the kill -9 crash matrix, with zero leaked VMs and box processes (see cvm_e2e.sh).
exec bash "$(dirname "$0")/cvm_e2e.sh" dstack
