#!/usr/bin/env bash
# The project's one test command: creates/reuses the venv (pinned torch first), installs the package with [test]
# and runs the whole CPU suite in CARE_TEST_WORKERS pytest-xdist workers (default 2; each test module stays in one
# worker, so a module's shared run -- the CPU smoke run, the learning run -- happens once, and modules are handed out
# in collection order, where tests/conftest.py puts those two runs first; every test that starts
# Ray starts a local cluster of its own, so two never join each other). Extra arguments go to pytest, e.g.
# `bash run_scripts/test.sh -k advantage`; CARE_TEST_WORKERS=0 runs in one process.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$CARE_REPO"
python -m pytest -q -p no:cacheprovider -n "${CARE_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder --durations=15 "$@" tests
