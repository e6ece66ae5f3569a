# Sourced by the GPU run scripts (qwen25vl_7b_care.sh, qwen25vl_7b_grpo.sh, qwen3vl_8b_care.sh, eval_benchmarks.sh).
# One place for every setting they share, so the CARE run and its GRPO baseline cannot drift apart: the scripts
# only set the model, the estimator and RGR, then call care_train / care_eval.
#
# What a run does, in this order (see docs/run_scripts.md):
#   1. GPU check (nvidia-smi / the NVIDIA driver, CUDA_VISIBLE_DEVICES): a machine without the GPUs fails here, in
#      a second, before anything else;
#   2. install what is missing: `pip install -e "<repo>[gpu]"` when recipe_care or vllm is not importable;
#   3. prepare the data files that are missing: `python -m data_prep.all --out $DATA_DIR --only <stems>`;
#   4. preflight: `python -m recipe_care.preflight --gpus N --data <files> --reward-check <first file>`;
#   5. `python -m recipe_care.main <every override> "$@"` (the caller's extra hydra overrides come last).
# With DRY_RUN=1: no GPU check, no install, no data preparation, no download; missing data files are listed;
# `CARE_DRY_RUN=1 python -m recipe_care.main ...` composes the full config, runs verl's validate_config and
# prints the config as YAML. It uses the active Python when recipe_care and verl import, else <repo>/.venv.
#
# Shared environment variables (defaults in brackets; the scripts' headers list the model-specific ones):
#   DATA_DIR [$HOME/data/care]   parquet files written by data_prep (file names: docs/data_prep.md)
#   OUTPUT_DIR [<repo>/outputs]  runs go to $OUTPUT_DIR/$EXPERIMENT_NAME (checkpoints, validation dumps, logs)
#   MODEL_PATH                   Hub id or local folder of the model
#   PROJECT_NAME, EXPERIMENT_NAME  trainer.project_name / trainer.experiment_name
#   WANDB [0]                    1: log to Weights & Biases as well (trainer.logger=[console,file,wandb])
#   LOGGER                       explicit trainer.logger list, e.g. "[console,tensorboard]" (overrides WANDB)
#   PYTHON                       interpreter to use [python, else python3]
#   DATA_PREP_ARGS               extra arguments for data_prep.all, e.g. "--local-root /data/copies"
#   Hardware (the defaults are the authors' 1 node x 8 x 80 GB):
#   NGPUS [8]  NNODES [1]  TP [2] (vLLM tensor parallel)  GPU_MEM_UTIL [0.6] (vLLM share of each GPU)
#   MICRO_UPDATE [4]  MICRO_LOGPROB [16]  sequences per GPU per micro-batch (update / log-prob); with dynamic batch
#                  size they set the token budgets per GPU: MICRO_x * 4096 (the authors' 2048 + 2048-token
#                  sequence), at least MAX_PROMPT_LENGTH + MAX_RESPONSE_LENGTH
#   ACTOR_MAX_TOKENS, LOGPROB_MAX_TOKENS  explicit token budgets per GPU (override the products above)
#   OFFLOAD [0]  1: FSDP parameter + optimizer offload to CPU for the actor (the reference model is always offloaded)
#   FUSED_KERNELS [False] actor_rollout_ref.model.use_fused_kernels (False: CARE's hidden-state embeddings are pooled at
#                 lm_head, which fused kernels skip; kept False for GRPO too so both runs differ only in the estimator)
#   MAX_PROMPT_LENGTH, MAX_RESPONSE_LENGTH  token limits (the prompt length counts the image tokens)
#   MIN_PIXELS [262144]  MAX_PIXELS [4194304]  image resolution bounds (authors: 512^2 .. 2048^2)

CARE_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

DRY_RUN="${DRY_RUN:-0}"
DATA_DIR="${DATA_DIR:-$HOME/data/care}"
OUTPUT_DIR="${OUTPUT_DIR:-$CARE_REPO/outputs}"
NGPUS="${NGPUS:-8}"
NNODES="${NNODES:-1}"
TP="${TP:-2}"
GPU_MEM_UTIL="${GPU_MEM_UTIL:-0.6}"
MICRO_UPDATE="${MICRO_UPDATE:-4}"
MICRO_LOGPROB="${MICRO_LOGPROB:-16}"
OFFLOAD="${OFFLOAD:-0}"
FUSED_KERNELS="${FUSED_KERNELS:-False}"
MIN_PIXELS="${MIN_PIXELS:-262144}"
MAX_PIXELS="${MAX_PIXELS:-4194304}"
WANDB="${WANDB:-0}"
DATA_PREP_ARGS="${DATA_PREP_ARGS:-}"

care_log() { echo "[care] $*" >&2; }
care_die() { echo "[care] FAILED: $*" >&2; exit 1; }

care_bool() {  # care_bool NAME VALUE -> True / False (hydra booleans), or die naming the variable
  case "$2" in
    1|true|True|TRUE|yes) echo True ;;
    0|false|False|FALSE|no|"") echo False ;;
    *) care_die "$1 must be 0 or 1, got '$2'" ;;
  esac
}

care_int() {  # care_int NAME VALUE -> VALUE if a positive integer, else die naming the variable
  case "$2" in
    ''|*[!0-9]*|0) care_die "$1 must be a positive integer, got '$2'" ;;
  esac
  echo "$2"
}

care_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  command -v python >/dev/null 2>&1 && { echo python; return; }
  command -v python3 >/dev/null 2>&1 && { echo python3; return; }
  care_die "no python interpreter found; set PYTHON=/path/to/python"
}
PY="$(care_python)"

# --- 1. GPUs -----------------------------------------------------------------------------------------------------
care_count_gpus() {
  local n=0 visible
  # the NVIDIA driver's own view, no Python import (the preflight re-checks with torch.cuda after the install)
  if command -v nvidia-smi >/dev/null 2>&1; then
    n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
  elif [ -d /proc/driver/nvidia/gpus ]; then
    n=$(find /proc/driver/nvidia/gpus -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  fi
  if [ -n "${CUDA_VISIBLE_DEVICES+x}" ]; then
    if [ -z "$CUDA_VISIBLE_DEVICES" ] || [ "$CUDA_VISIBLE_DEVICES" = "-1" ]; then
      visible=0
    else
      visible=$(echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c . || true)
    fi
    [ "$visible" -lt "$n" ] && n=$visible
  fi
  echo "${n:-0}"
}

care_require_gpus() {  # fails in seconds, before any install or download
  local want="$1" found
  found="$(care_count_gpus)"
  if [ "$found" -lt "$want" ]; then
    care_die "$(basename "$0") needs $want GPU(s) per node (NGPUS=$want), $found visible (nvidia-smi, CUDA_VISIBLE_DEVICES).
  Run it on a GPU node; for fewer or smaller GPUs set NGPUS / TP / MICRO_UPDATE / MICRO_LOGPROB / OFFLOAD=1
  (docs/run_scripts.md); DRY_RUN=1 only composes and prints the config (no GPU needed);
  bash run_scripts/cpu_smoke.sh runs the trainer on CPU with a tiny model."
  fi
  care_log "gpus: $found visible, $want needed"
}

# --- 2. packages -------------------------------------------------------------------------------------------------
care_has_modules() {  # care_has_modules MOD... : installed? (find_spec: no heavy import; the preflight imports)
  "$PY" -c 'import importlib.util as u, sys; sys.exit(0 if all(u.find_spec(m) for m in sys.argv[1:]) else 1)' "$@" \
    >/dev/null 2>&1
}

care_ensure_packages() {
  if [ "$DRY_RUN" = "1" ]; then
    # Compose-only: recipe_care + verl suffice (no vllm). Never install anything here.
    if ! care_has_modules recipe_care verl; then
      if [ -x "$CARE_REPO/.venv/bin/python" ]; then
        care_log "recipe_care/verl not installed for $PY; using $CARE_REPO/.venv"
        PY="$CARE_REPO/.venv/bin/python"
      fi
      care_has_modules recipe_care verl || care_die "DRY_RUN needs recipe_care and verl installed
  (\`bash run_scripts/test.sh\` creates .venv with them; or \`pip install -e \"$CARE_REPO[test]\"\`)"
    fi
    return
  fi
  if ! care_has_modules recipe_care verl vllm; then
    care_log "recipe_care, verl or vllm missing: pip install -e \"$CARE_REPO[gpu]\" (verl[vllm,fsdp]==0.9.1)"
    "$PY" -m pip install -e "$CARE_REPO[gpu]" || care_die "installing $CARE_REPO[gpu] failed (see pip's message above)"
    care_has_modules recipe_care verl vllm || care_die "recipe_care/verl/vllm still missing after the install"
  fi
}

# --- 3. data -----------------------------------------------------------------------------------------------------
CARE_MISSING_STEMS=()
care_ensure_data() {  # care_ensure_data STEM... (file $DATA_DIR/STEM.parquet each)
  local stem only
  CARE_MISSING_STEMS=()
  for stem in "$@"; do
    [ -f "$DATA_DIR/$stem.parquet" ] || CARE_MISSING_STEMS+=("$stem")
  done
  [ "${#CARE_MISSING_STEMS[@]}" -eq 0 ] && return 0
  only="$(IFS=,; echo "${CARE_MISSING_STEMS[*]}")"
  if [ "$DRY_RUN" = "1" ]; then
    for stem in "${CARE_MISSING_STEMS[@]}"; do
      echo "[care] DRY_RUN: missing data file $DATA_DIR/$stem.parquet (not fetched)"
    done
    echo "[care] DRY_RUN: a real run prepares them with: $PY -m data_prep.all --out $DATA_DIR --only $only $DATA_PREP_ARGS"
    return 0
  fi
  care_log "preparing missing data files: $only"
  mkdir -p "$DATA_DIR"
  # shellcheck disable=SC2086  # DATA_PREP_ARGS is a list of arguments
  "$PY" -m data_prep.all --out "$DATA_DIR" --only "$only" $DATA_PREP_ARGS \
    || care_die "data_prep.all failed for $only (reports: $DATA_DIR/<stem>.report.json); fix the source or pass
  DATA_PREP_ARGS='--local-root DIR' for local copies (docs/data_prep.md)"
  for stem in "${CARE_MISSING_STEMS[@]}"; do
    [ -f "$DATA_DIR/$stem.parquet" ] || care_die "data_prep.all did not write $DATA_DIR/$stem.parquet"
  done
}

# --- shared override groups --------------------------------------------------------------------------------------
care_hydra_list() {  # care_hydra_list a b c -> ['a','b','c'] (quoted: paths may hold hydra's special characters)
  local out="" item
  for item in "$@"; do out="$out${out:+,}'$item'"; done
  echo "[$out]"
}

care_logger() {  # sets CARE_LOGGER_LIST
  local wandb
  wandb="$(care_bool WANDB "$WANDB")"
  if [ -n "${LOGGER:-}" ]; then CARE_LOGGER_LIST="$LOGGER"
  elif [ "$wandb" = True ]; then CARE_LOGGER_LIST="[console,file,wandb]"
  else CARE_LOGGER_LIST="[console,file]"; fi
}

# Model + vLLM engine + images: what training and evaluation share. Needs MODEL_PATH, IMAGE_PATCH_SIZE,
# MAX_PROMPT_LENGTH, MAX_RESPONSE_LENGTH.
care_engine_overrides() {
  local max_len=$((MAX_PROMPT_LENGTH + MAX_RESPONSE_LENGTH)) fused
  local batched=$(( max_len > 8192 ? max_len : 8192 ))
  fused="$(care_bool FUSED_KERNELS "$FUSED_KERNELS")"
  care_logger
  CARE_ENGINE=(
    # legacy trainer: CARE needs the whole rollout batch at the advantage step
    trainer.use_v1=False
    # data: verl rows from data_prep; the prompt length counts the image tokens
    data.image_key=images
    data.prompt_key=prompt
    data.max_prompt_length="$MAX_PROMPT_LENGTH"
    data.max_response_length="$MAX_RESPONSE_LENGTH"
    data.filter_overlong_prompts=True
    data.truncation=error
    data.image_patch_size="$IMAGE_PATCH_SIZE"
    ++data.mm_processor_kwargs.min_pixels="$MIN_PIXELS"
    ++data.mm_processor_kwargs.max_pixels="$MAX_PIXELS"
    # model
    actor_rollout_ref.model.path="$MODEL_PATH"
    actor_rollout_ref.model.use_remove_padding=True
    actor_rollout_ref.model.enable_gradient_checkpointing=True
    actor_rollout_ref.model.use_fused_kernels="$fused"
    # rollout engine: vLLM, tensor parallel TP, one context = prompt + response
    actor_rollout_ref.rollout.name=vllm
    actor_rollout_ref.rollout.mode=async
    actor_rollout_ref.rollout.tensor_model_parallel_size="$TP"
    actor_rollout_ref.rollout.gpu_memory_utilization="$GPU_MEM_UTIL"
    actor_rollout_ref.rollout.max_model_len="$max_len"
    actor_rollout_ref.rollout.max_num_batched_tokens="$batched"
    actor_rollout_ref.rollout.enable_chunked_prefill=False
    actor_rollout_ref.rollout.enforce_eager=False
    actor_rollout_ref.rollout.free_cache_engine=True
    actor_rollout_ref.rollout.multi_stage_wake_up=True
    # reward: the project's verifiers
    reward.custom_reward_function.path=pkg://reward_fns
    reward.custom_reward_function.name=compute_score
    # trainer: hardware and logging
    trainer.device=cuda
    trainer.n_gpus_per_node="$NGPUS"
    trainer.nnodes="$NNODES"
    trainer.logger="$CARE_LOGGER_LIST"
    trainer.project_name="$PROJECT_NAME"
    trainer.experiment_name="$EXPERIMENT_NAME"
  )
}

# Everything a training run sets (the authors' hyper-parameters, care-algorithm.md §4). Needs ESTIMATOR, RGR
# (the only two settings in which the CARE run and the GRPO baseline differ) and the engine variables.
care_train_overrides() {
  local offload actor_tokens logprob_tokens max_len=$((MAX_PROMPT_LENGTH + MAX_RESPONSE_LENGTH))
  offload="$(care_bool OFFLOAD "$OFFLOAD")"
  # dynamic batch size: MICRO_x sequences of the authors' 2048 + 2048 tokens per GPU, at least one full sequence
  actor_tokens="${ACTOR_MAX_TOKENS:-$((MICRO_UPDATE * 4096 > max_len ? MICRO_UPDATE * 4096 : max_len))}"
  logprob_tokens="${LOGPROB_MAX_TOKENS:-$((MICRO_LOGPROB * 4096 > max_len ? MICRO_LOGPROB * 4096 : max_len))}"
  care_engine_overrides
  CARE_OVERRIDES=(
    "${CARE_ENGINE[@]}"
    # algorithm: the estimator under test; KL as a loss, not in the reward
    algorithm.adv_estimator="$ESTIMATOR"
    algorithm.use_kl_in_reward=False
    algorithm.norm_adv_by_std_in_grpo=True
    # CARE (authors' values; ignored by grpo)
    algorithm.care.K=4
    algorithm.care.M=6
    algorithm.care.s=0.5
    algorithm.care.eps=1e-6
    algorithm.care.equalize=True
    algorithm.care.rescue=faithful
    algorithm.care.rescue_delta=0.1
    algorithm.care.gamma_pos=0.005
    algorithm.care.token_weighting=region
    algorithm.care.anchor=shortest
    # RGR: on for CARE, off for the baseline; its sampling as in the authors' script
    algorithm.rgr.enable="$RGR"
    ++algorithm.rgr.temperature=0.6
    ++algorithm.rgr.top_p=0.95
    ++algorithm.rgr.max_tokens=512
    ++algorithm.rgr.max_cue_tokens=64
    # data: Geometry3K train / test, 512 prompts per rollout step
    data.train_files="$(care_hydra_list "$DATA_DIR/geometry3k_train.parquet")"
    data.val_files="$(care_hydra_list "$DATA_DIR/geometry3k_test.parquet")"
    data.train_batch_size="$ROLLOUT_BATCH"
    data.val_batch_size=null
    data.shuffle=True
    data.validation_shuffle=False
    data.dataloader_num_workers=8
    # actor: AdamW lr 1e-6, wd 1e-2, constant, no warmup, grad-norm clip 1.0; 128-prompt mini-batches (x G
    # sequences), one PPO epoch; dual-clip PPO 0.2 / 0.3 / 3.0, token-mean; KL loss low_var_kl 0.01; no entropy bonus
    actor_rollout_ref.actor.strategy=fsdp2
    actor_rollout_ref.actor.optim.lr=1e-6
    actor_rollout_ref.actor.optim.weight_decay=0.01
    "actor_rollout_ref.actor.optim.betas=[0.9,0.999]"
    actor_rollout_ref.actor.optim.lr_scheduler_type=constant
    actor_rollout_ref.actor.optim.lr_warmup_steps_ratio=0.0
    actor_rollout_ref.actor.optim.lr_warmup_steps=-1
    actor_rollout_ref.actor.optim.clip_grad=1.0
    actor_rollout_ref.actor.grad_clip=1.0
    actor_rollout_ref.actor.ppo_mini_batch_size="$MINI_BATCH"
    actor_rollout_ref.actor.ppo_epochs=1
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu="$MICRO_UPDATE"
    actor_rollout_ref.actor.use_dynamic_bsz=True
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu="$actor_tokens"
    actor_rollout_ref.actor.clip_ratio_low=0.2
    actor_rollout_ref.actor.clip_ratio_high=0.3
    actor_rollout_ref.actor.clip_ratio_c=3.0
    actor_rollout_ref.actor.loss_agg_mode=token-mean
    actor_rollout_ref.actor.use_kl_loss=True
    actor_rollout_ref.actor.kl_loss_type=low_var_kl
    actor_rollout_ref.actor.kl_loss_coef=0.01
    actor_rollout_ref.actor.entropy_coeff=0
    actor_rollout_ref.actor.freeze_vision_tower=False
    actor_rollout_ref.actor.fsdp_config.param_offload="$offload"
    actor_rollout_ref.actor.fsdp_config.optimizer_offload="$offload"
    # rollout: G=8 samples per prompt at T=1.0, top_p 1.0; old log-probs with dynamic batch size
    actor_rollout_ref.rollout.n=8
    actor_rollout_ref.rollout.temperature=1.0
    actor_rollout_ref.rollout.top_p=1.0
    actor_rollout_ref.rollout.top_k=-1
    actor_rollout_ref.rollout.do_sample=True
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu="$MICRO_LOGPROB"
    actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=True
    actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu="$logprob_tokens"
    # in-training validation as in the authors' config: T=1.0, one sample (the paper's protocol: eval_benchmarks.sh)
    actor_rollout_ref.rollout.val_kwargs.temperature=1.0
    actor_rollout_ref.rollout.val_kwargs.top_p=1.0
    actor_rollout_ref.rollout.val_kwargs.top_k=-1
    actor_rollout_ref.rollout.val_kwargs.n=1
    actor_rollout_ref.rollout.val_kwargs.do_sample=True
    # reference policy for the KL loss: forward only, parameters offloaded
    actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu="$MICRO_LOGPROB"
    actor_rollout_ref.ref.log_prob_use_dynamic_bsz=True
    actor_rollout_ref.ref.log_prob_max_token_len_per_gpu="$logprob_tokens"
    actor_rollout_ref.ref.fsdp_config.param_offload=True
    # reward: 0.9 * acc + 0.1 * format as the authors' EasyR1 reward (CARE itself reads acc)
    ++reward.custom_reward_function.reward_kwargs.format_weight="$FORMAT_WEIGHT"
    # trainer: 15 epochs, validation every 5 steps and before training, checkpoints under the run folder
    trainer.total_epochs="$TOTAL_EPOCHS"
    trainer.test_freq=5
    trainer.val_before_train=True
    trainer.save_freq="$SAVE_FREQ"
    trainer.max_actor_ckpt_to_keep="$MAX_CKPT_TO_KEEP"
    trainer.resume_mode=auto
    trainer.balance_batch=True
    trainer.critic_warmup=0
    trainer.default_local_dir="$RUN_DIR/checkpoints"
    trainer.validation_data_dir="$RUN_DIR/validation"
  )
}

# --- 4 + 5. preflight and launch ---------------------------------------------------------------------------------
care_hydra_dirs() {  # keep hydra's own output in the run folder (a dry run writes none)
  if [ "$DRY_RUN" = "1" ]; then
    CARE_HYDRA=(hydra.output_subdir=null "hydra.run.dir=${TMPDIR:-/tmp}/care-dry-run-hydra" hydra/job_logging=disabled
                hydra/hydra_logging=disabled)
  else
    CARE_HYDRA=("hydra.run.dir=$RUN_DIR/hydra/$(date +%Y%m%d-%H%M%S)")
  fi
}

care_launch() {  # care_launch FIRST_DATA_FILE DATA_FILE... -- extra hydra overrides (from "$@")
  local files=() rc
  while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do files+=("$1"); shift; done
  [ "${1:-}" = "--" ] && shift
  care_hydra_dirs
  if [ "$DRY_RUN" = "1" ]; then
    care_log "DRY_RUN: composing the config (nothing is launched, nothing is downloaded)"
    CARE_DRY_RUN=1 HYDRA_FULL_ERROR=1 "$PY" -m recipe_care.main "${CARE_OVERRIDES[@]}" "${CARE_HYDRA[@]}" "$@"
    return
  fi
  "$PY" -m recipe_care.preflight --gpus "$NGPUS" --data "${files[@]}" --reward-check "${files[0]}" \
    || care_die "preflight failed (messages above); nothing was launched"
  mkdir -p "$RUN_DIR"
  export VERL_FILE_LOGGER_PATH="${VERL_FILE_LOGGER_PATH:-$RUN_DIR/metrics.jsonl}"
  if [ -s "$VERL_FILE_LOGGER_PATH" ]; then  # verl's file logger truncates: keep the previous run's metrics
    mv "$VERL_FILE_LOGGER_PATH" "${VERL_FILE_LOGGER_PATH%.jsonl}.$(date +%Y%m%d-%H%M%S).jsonl"
  fi
  export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-true}" HYDRA_FULL_ERROR=1
  care_log "launching $EXPERIMENT_NAME: run folder $RUN_DIR, metrics $VERL_FILE_LOGGER_PATH"
  set +e +o pipefail
  "$PY" -m recipe_care.main "${CARE_OVERRIDES[@]}" "${CARE_HYDRA[@]}" "$@" 2>&1 | tee -a "$RUN_DIR/console.log"
  rc=${PIPESTATUS[0]}
  set -e -o pipefail
  care_log "$EXPERIMENT_NAME exited with status $rc (log: $RUN_DIR/console.log)"
  return "$rc"
}

# A training run: GPU check, packages, Geometry3K, preflight, launch. The caller sets MODEL_PATH, IMAGE_PATCH_SIZE,
# ESTIMATOR, RGR and EXPERIMENT_NAME's default; extra arguments are hydra overrides.
care_train() {
  MAX_PROMPT_LENGTH="${MAX_PROMPT_LENGTH:-4096}"
  MAX_RESPONSE_LENGTH="${MAX_RESPONSE_LENGTH:-2048}"
  ROLLOUT_BATCH="${ROLLOUT_BATCH:-512}"
  MINI_BATCH="${MINI_BATCH:-128}"
  TOTAL_EPOCHS="${TOTAL_EPOCHS:-15}"
  SAVE_FREQ="${SAVE_FREQ:-20}"
  MAX_CKPT_TO_KEEP="${MAX_CKPT_TO_KEEP:-3}"
  FORMAT_WEIGHT="${FORMAT_WEIGHT:-0.1}"
  PROJECT_NAME="${PROJECT_NAME:-care_geo3k}"
  RUN_DIR="$OUTPUT_DIR/$EXPERIMENT_NAME"
  local name
  for name in NGPUS NNODES TP MICRO_UPDATE MICRO_LOGPROB MAX_PROMPT_LENGTH MAX_RESPONSE_LENGTH ROLLOUT_BATCH \
              MINI_BATCH TOTAL_EPOCHS MIN_PIXELS MAX_PIXELS; do
    care_int "$name" "${!name}" >/dev/null
  done
  [ "$DRY_RUN" = "1" ] || care_require_gpus "$NGPUS"
  care_ensure_packages
  care_ensure_data geometry3k_train geometry3k_test
  care_train_overrides
  care_launch "$DATA_DIR/geometry3k_train.parquet" "$DATA_DIR/geometry3k_test.parquet" -- "$@"
}
