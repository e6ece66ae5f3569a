# Sourced by run_scripts/cpu_smoke.sh and cpu_learn.sh (after _venv.sh): the environment of a run on the CPU backend.
#
# The CPU backend in every process (driver, TaskRunner, Ray workers): through the plugin's switch, and directly as
# an external module as well (idempotent), so it loads even if the plugin entry point is disabled or broken.
export CARE_CPU_BACKEND=1 VERL_PLATFORM=cpu VERL_USE_EXTERNAL_MODULES=recipe_care.cpu
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false HYDRA_FULL_ERROR=1
export RAY_DEDUP_LOGS=0 RAY_USAGE_STATS_ENABLED=0
# Ray lowers its workers to nice 15 (RAY_worker_niceness), and all of a run's work happens in Ray workers: beside
# any other busy process (a browser, the other pytest worker of the test command) they got what was left of the
# cores. Nice 0 gives them their fair share; a value set by the caller wins.
export RAY_worker_niceness="${RAY_worker_niceness:-0}"
# vLLM on CPU: 1 GiB of KV cache (vLLM's default is 4 GiB), and no TorchDynamo (about 25 s of each engine start is
# Dynamo compiling vLLM's sampler; without it no C++ compiler is needed either).
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}" TORCHDYNAMO_DISABLE="${TORCHDYNAMO_DISABLE:-1}"

# What a run leaves behind (every CPU run script calls care_on_exit from its EXIT trap): shared-memory segments of
# the vLLM engines that Ray killed (recipe_care/leftovers.py), and vLLM's ZeroMQ sockets, which
# VLLM_RPC_BASE_PATH puts into the run folder (care_ipc_dir RUN_DIR) instead of /tmp.
CARE_RUN_STARTED="$(date +%s)"
CARE_IPC_TMPS=""
care_ipc_dir() {
  # vLLM names a socket "$VLLM_RPC_BASE_PATH/<uuid4>" (vllm/utils/network_utils.py, get_open_zmq_ipc_path) and a
  # Unix socket path holds at most 107 bytes: a base of over 70 fails the engine start ("ipc path ... is longer than
  # 107 characters"). A run folder that deep gets /tmp/care-ipc-<hash of the run folder> instead: the same folder for
  # a resumed run, whose exit trap also removes what a killed run left there; removed when the script ends.
  local dir="$1/ipc"
  if [ "$(printf %s "$dir" | wc -c)" -gt 70 ]; then
    dir="/tmp/care-ipc-$(printf %s "$1" | sha1sum | cut -c1-12)"  # the scripts pass absolute run folders
    CARE_IPC_TMPS="$CARE_IPC_TMPS $dir"
  fi
  mkdir -p "$dir"
  export VLLM_RPC_BASE_PATH="$dir"
}
care_on_exit() {
  python -m recipe_care.leftovers --since "$CARE_RUN_STARTED" || true
  if [ -n "${VLLM_RPC_BASE_PATH:-}" ] && [ -d "$VLLM_RPC_BASE_PATH" ]; then
    find "$VLLM_RPC_BASE_PATH" -maxdepth 1 -type s -delete 2>/dev/null || true
  fi
  local dir
  for dir in $CARE_IPC_TMPS; do
    find "$dir" -maxdepth 1 -type s -delete 2>/dev/null || true
    rmdir "$dir" 2>/dev/null || true
  done
}
