#!/usr/bin/env bash
# The project's one test command: creates/reuses the venv (pinned torch first), installs the package with [test]
# and runs the whole CPU suite in CARE_TEST_WORKERS pytest-xdist workers (default 2; each test module stays in one
# worker, see tests/conftest.py). Extra arguments go to pytest, e.g. `bash run_scripts/test.sh -k advantage`.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$CARE_REPO"
python -m pytest -q -p no:cacheprovider -n "${CARE_TEST_WORKERS:-2}" --dist loadgroup --durations=15 "$@" tests
