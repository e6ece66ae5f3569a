# Sourced by run_scripts/*.sh: make sure the project's virtual environment exists and holds a pinned torch,
# the package and its test extra; then activate it. Reruns only check (under a second).
#
#   CARE_VENV      where the venv lives (default: <repo>/.venv)
#   CARE_TORCH     torch pin (default 2.14.1; with torchvision 0.29.1 it runs on CPU and carries the
#                  torchvision ops the Qwen2.5-VL processor of transformers 5 needs)
#   CARE_TORCHVISION  torchvision pin (default 0.29.1)
#   CARE_EXTRAS    pip extras of this package to install (default: test)
set -euo pipefail
CARE_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARE_VENV="${CARE_VENV:-$CARE_REPO/.venv}"
CARE_TORCH="${CARE_TORCH:-2.14.1}"
CARE_TORCHVISION="${CARE_TORCHVISION:-0.29.1}"
CARE_EXTRAS="${CARE_EXTRAS:-test}"
PY="${PYTHON:-python3}"

if [ ! -x "$CARE_VENV/bin/python" ]; then
  echo "[care] creating virtual environment $CARE_VENV" >&2
  "$PY" -m venv "$CARE_VENV"
  "$CARE_VENV/bin/python" -m pip install -q --upgrade pip
fi
# shellcheck disable=SC1091
. "$CARE_VENV/bin/activate"

# Keep pip's byte-compilation (no --no-compile): these hosts set PYTHONDONTWRITEBYTECODE=1, so the .pyc files pip
# writes are the only cache; without them every test process recompiles torch/transformers (suite 6:45 -> 15 min).
# torch first and pinned: verl's dependencies leave torch open, and an open resolve pulls a multi-GB CUDA build.
# The checks read package metadata instead of importing torch and verl (17 s -> 0.4 s per script start).
_care_has() {  # _care_has DIST==VERSION ...: each distribution installed at that version (local tags ignored)
  python - "$@" <<'PYEOF'
import sys
from importlib.metadata import PackageNotFoundError, version
for spec in sys.argv[1:]:
    dist, want = spec.split("==")
    try:
        if version(dist).split("+")[0] != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PYEOF
}
if ! _care_has "torch==$CARE_TORCH" "torchvision==$CARE_TORCHVISION"; then
  echo "[care] installing torch==$CARE_TORCH torchvision==$CARE_TORCHVISION" >&2
  python -m pip install -q "torch==$CARE_TORCH" "torchvision==$CARE_TORCHVISION"
fi

# The package itself (editable) with its extras; re-run only when setup.py changed since the last install.
stamp="$CARE_VENV/.care-install-stamp"
want="$(sha256sum "$CARE_REPO/setup.py" | cut -d' ' -f1) $CARE_EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! _care_has "verl==0.9.1" \
    || ! python -c "from importlib.metadata import version; version('recipe-care')" 2>/dev/null; then
  echo "[care] installing recipe-care[$CARE_EXTRAS] (pins verl[verl-core]==0.9.1)" >&2
  python -m pip install -q -e "$CARE_REPO[$CARE_EXTRAS]" "torch==$CARE_TORCH" "torchvision==$CARE_TORCHVISION"
  echo "$want" > "$stamp"
fi
