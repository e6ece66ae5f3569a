# Sourced by the GPU run scripts (qwen25vl_7b_care.sh, qwen25vl_7b_grpo.sh, qwen3vl_8b_care.sh, eval_benchmarks.sh).
# Machinery only; no training setting lives here. The recipe's hyper-parameters are in
# recipe_care/config/care_trainer.yaml, CARE's defaults in recipe_care.config.CareConfig, and each script spells its
# own overrides in its one `python -m recipe_care.main` call (docs/run_scripts.md).
#
#   care_prepare STEM...  1. GPU check: NGPUS GPUs on this node, in a second, before anything else (skipped with
#                            RAY_ADDRESS: on a cluster the preflight checks every node's GPUs);
#                         2. install: `pip install -e "<repo>[gpu]"` when recipe_care, verl or vllm is missing;
#                         3. data: `python -m data_prep.all --out $DATA_DIR --only <stems>` for the missing files.
#   care_launch CMD...    4. preflight of this node: `python -m recipe_care.preflight --gpus --data --reward-check`;
#                         5. CMD, with its console in $RUN_DIR/console.log and verl's metrics in $RUN_DIR/metrics.jsonl
#                            (on a Ray cluster recipe_care.main checks every node before verl starts); with a
#                            checkpoint in $RUN_DIR/checkpoints (CARE_CKPT_DIR) it resumes, else starts fresh, and a
#                            run that stops early ends console.log with `[care] stopped: <why>` (_long_runs.sh).
# DRY_RUN=1: no GPU check, install, data preparation or preflight (missing data files are listed), and
# `CARE_DRY_RUN=1 CMD` composes the config, validates it (verl's validate_config too) and prints it.
# Values: care_int NAME... / care_bool NAME... check variables and die naming the one that is wrong (run them before
# the call: a failure inside "$(...)" would not stop the script); care_bool NAME prints True / False for hydra;
# care_list a b -> ['a','b'].

CARE_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=run_scripts/_long_runs.sh
. "$CARE_REPO/run_scripts/_long_runs.sh"
DRY_RUN="${DRY_RUN:-0}"
DATA_PREP_ARGS="${DATA_PREP_ARGS:-}"

care_log() { echo "[care] $*" >&2; }
care_die() { echo "[care] FAILED: $*" >&2; exit 1; }

care_int() {  # care_int NAME... : each variable holds a positive integer
  local name
  for name in "$@"; do
    case "${!name:-}" in ''|*[!0-9]*|0) care_die "$name must be a positive integer, got '${!name:-}'" ;; esac
  done
}

care_int_if_set() {  # care_int_if_set NAME... : as care_int, for the variables that are set
  local name
  for name in "$@"; do [ -z "${!name:-}" ] || care_int "$name"; done
}

care_bool() {  # care_bool NAME... : each variable holds 0/1 (true/false); with one NAME, print True / False
  local name
  for name in "$@"; do
    case "${!name:-}" in
      1|true|True|TRUE|yes) [ "$#" -gt 1 ] || echo True ;;
      0|false|False|FALSE|no|"") [ "$#" -gt 1 ] || echo False ;;
      *) care_die "$name must be 0 or 1, got '${!name}'" ;;
    esac
  done
}

care_list() {  # care_list a b -> ['a','b'] (quoted: paths may hold hydra's special characters)
  local out="" item
  for item in "$@"; do out="$out${out:+,}'$item'"; done
  echo "[$out]"
}

if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif command -v python >/dev/null 2>&1; then PY=python
elif command -v python3 >/dev/null 2>&1; then PY=python3
else care_die "no python interpreter found; set PYTHON=/path/to/python"; fi

care_has_modules() {  # installed? (find_spec: no heavy import; the preflight imports)
  "$PY" -c 'import importlib.util as u, sys; sys.exit(0 if all(u.find_spec(m) for m in sys.argv[1:]) else 1)' "$@" \
    >/dev/null 2>&1
}

care_count_gpus() {  # the NVIDIA driver's view (no Python import), limited by CUDA_VISIBLE_DEVICES
  local n=0 visible
  if command -v nvidia-smi >/dev/null 2>&1; then
    n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
  elif [ -d /proc/driver/nvidia/gpus ]; then
    n=$(find /proc/driver/nvidia/gpus -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  fi
  if [ -n "${CUDA_VISIBLE_DEVICES+x}" ]; then
    visible=0
    if [ -n "$CUDA_VISIBLE_DEVICES" ] && [ "$CUDA_VISIBLE_DEVICES" != "-1" ]; then
      visible=$(echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c . || true)
    fi
    [ "$visible" -lt "$n" ] && n=$visible
  fi
  echo "${n:-0}"
}

care_prepare() {  # care_prepare STEM... (data files $DATA_DIR/STEM.parquet); sets CARE_DATA_FILES
  local stem found missing=()
  care_int NGPUS NNODES
  if [ "$NNODES" -gt 1 ] && [ -z "${RAY_ADDRESS:-}" ]; then
    care_die "NNODES=$NNODES needs a running Ray cluster: start the head and the workers, then set
  RAY_ADDRESS=<head ip>:6379 (docs/run_scripts.md, 'Several nodes')"
  fi
  # 1. GPUs
  if [ "$DRY_RUN" != 1 ] && [ -z "${RAY_ADDRESS:-}" ]; then
    found="$(care_count_gpus)"
    [ "$found" -ge "$NGPUS" ] || care_die "$(basename "$0") needs $NGPUS GPU(s) per node (NGPUS=$NGPUS), \
$found visible (nvidia-smi, CUDA_VISIBLE_DEVICES).
  Run it on a GPU node; for fewer or smaller GPUs set NGPUS / TP / MICRO_UPDATE / MICRO_LOGPROB / OFFLOAD=1
  (docs/run_scripts.md); DRY_RUN=1 only composes and prints the config (no GPU needed);
  bash run_scripts/cpu_smoke.sh runs the trainer on CPU with a tiny model."
    care_log "gpus: $found visible, $NGPUS needed"
  fi
  # 2. packages (DRY_RUN: recipe_care + verl suffice, never installed; the repository's .venv if it has them)
  if [ "$DRY_RUN" = 1 ]; then
    if ! care_has_modules recipe_care verl && [ -x "$CARE_REPO/.venv/bin/python" ]; then
      care_log "recipe_care/verl not installed for $PY; using $CARE_REPO/.venv"
      PY="$CARE_REPO/.venv/bin/python"
    fi
    care_has_modules recipe_care verl || care_die "DRY_RUN needs recipe_care and verl installed
  (\`bash run_scripts/test.sh\` creates .venv with them; or \`pip install -e \"$CARE_REPO[test]\"\`)"
  elif ! care_has_modules recipe_care verl vllm; then
    care_log "recipe_care, verl or vllm missing: pip install -e \"$CARE_REPO[gpu]\" (verl[vllm,fsdp]==0.9.1)"
    "$PY" -m pip install -e "$CARE_REPO[gpu]" || care_die "installing $CARE_REPO[gpu] failed (see pip's message above)"
    care_has_modules recipe_care verl vllm || care_die "recipe_care/verl/vllm still missing after the install"
  fi
  # 3. data
  CARE_DATA_FILES=()
  for stem in "$@"; do
    CARE_DATA_FILES+=("$DATA_DIR/$stem.parquet")
    [ -f "$DATA_DIR/$stem.parquet" ] || missing+=("$stem")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  local only
  only="$(IFS=,; echo "${missing[*]}")"
  if [ "$DRY_RUN" = 1 ]; then
    for stem in "${missing[@]}"; do echo "[care] DRY_RUN: missing data file $DATA_DIR/$stem.parquet (not fetched)"; done
    echo "[care] DRY_RUN: a real run prepares them with:" \
      "$PY -m data_prep.all --out $DATA_DIR --only $only $DATA_PREP_ARGS"
    return 0
  fi
  care_log "preparing missing data files: $only"
  mkdir -p "$DATA_DIR"
  # shellcheck disable=SC2086  # DATA_PREP_ARGS is a list of arguments
  "$PY" -m data_prep.all --out "$DATA_DIR" --only "$only" $DATA_PREP_ARGS \
    || care_die "data_prep.all failed for $only (reports: $DATA_DIR/<stem>.report.json); fix the source or pass
  DATA_PREP_ARGS='--local-root DIR' for local copies (docs/data_prep.md)"
  for stem in "${missing[@]}"; do
    [ -f "$DATA_DIR/$stem.parquet" ] || care_die "data_prep.all did not write $DATA_DIR/$stem.parquet"
  done
}

care_hydra_dir() {  # hydra's own output goes with the run (a dry run writes nothing there)
  if [ "$DRY_RUN" = 1 ]; then echo "${TMPDIR:-/tmp}/care-dry-run-hydra"
  else echo "$RUN_DIR/hydra/$(date +%Y%m%d-%H%M%S)"; fi
}

care_launch() {  # care_launch CMD... (after care_prepare; needs RUN_DIR, EXPERIMENT_NAME)
  local rc gpus=()
  if [ "$DRY_RUN" = 1 ]; then
    care_log "DRY_RUN: composing the config (nothing is launched, nothing is downloaded)"
    CARE_DRY_RUN=1 HYDRA_FULL_ERROR=1 "$@"
    return
  fi
  [ -n "${RAY_ADDRESS:-}" ] || gpus=(--gpus "$NGPUS")  # on a cluster, recipe_care.main checks every node's GPUs
  "$PY" -m recipe_care.preflight "${gpus[@]}" --data "${CARE_DATA_FILES[@]}" --reward-check "${CARE_DATA_FILES[0]}" \
    || care_die "preflight failed (messages above); nothing was launched"
  mkdir -p "$RUN_DIR"
  export VERL_FILE_LOGGER_PATH="${VERL_FILE_LOGGER_PATH:-$RUN_DIR/metrics.jsonl}"
  # a checkpoint in the run folder: resume (trainer.resume_mode=auto) and keep the metrics; else a fresh file
  care_resume "${CARE_CKPT_DIR:-$RUN_DIR/checkpoints}" "$VERL_FILE_LOGGER_PATH"
  export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-true}" HYDRA_FULL_ERROR=1
  care_log "launching $EXPERIMENT_NAME: run folder $RUN_DIR, metrics $VERL_FILE_LOGGER_PATH"
  local cmd=("$@") i
  for i in "${!cmd[@]}"; do  # right after `-m MODULE`: the script's own overrides and its extra arguments win
    if [ "${cmd[$i]}" = -m ]; then cmd=("${cmd[@]:0:i+2}" "${CARE_RESUME[@]}" "${cmd[@]:i+2}"); break; fi
  done
  rc=0
  care_run_logged "$RUN_DIR/console.log" "${cmd[@]}" || rc=$?
  care_log "$EXPERIMENT_NAME exited with status $rc (log: $RUN_DIR/console.log)"
  return "$rc"
}
