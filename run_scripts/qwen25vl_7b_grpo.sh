#!/usr/bin/env bash
# The GRPO baseline of qwen25vl_7b_care.sh: the same call, line for line, but algorithm.adv_estimator=grpo and
# algorithm.rgr.enable=False (tests/test_run_scripts.py checks that the two composed configs differ in nothing else
# but the run's name and folders). Same entry point, so the failure-signal diagnostics (signal/fail_adv_share,
# signal/zero_signal_group_rate) are logged for GRPO too; algorithm.care.* is read by the care estimator only.
#
#   bash run_scripts/qwen25vl_7b_grpo.sh [hydra overrides]      DRY_RUN=1 bash run_scripts/qwen25vl_7b_grpo.sh
#
# Environment: exactly as qwen25vl_7b_care.sh, except EXPERIMENT_NAME [qwen25vl_7b_grpo]. Defaults:
#   MODEL_PATH [Qwen/Qwen2.5-VL-7B-Instruct]  PROJECT_NAME [care_geo3k]  DATA_DIR [$HOME/data/care]
#   OUTPUT_DIR [<repo>/outputs]  NGPUS [8]  NNODES [1]  RAY_ADDRESS []  TP [2]  GPU_MEM_UTIL [0.6]  OFFLOAD [0]
#   MICRO_UPDATE [4]  MICRO_LOGPROB [6]  ACTOR_MAX_TOKENS / LOGPROB_MAX_TOKENS  FUSED_KERNELS [0]
#   MAX_PROMPT_LENGTH [4096]  MAX_RESPONSE_LENGTH [2048]
#   MIN_PIXELS [262144]  MAX_PIXELS [4194304]  WANDB [0]  LOGGER  DRY_RUN [0]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

MODEL_PATH="${MODEL_PATH:-Qwen/Qwen2.5-VL-7B-Instruct}"
EXPERIMENT_NAME="${EXPERIMENT_NAME:-qwen25vl_7b_grpo}"
PROJECT_NAME="${PROJECT_NAME:-care_geo3k}"
DATA_DIR="${DATA_DIR:-$HOME/data/care}"
OUTPUT_DIR="${OUTPUT_DIR:-$CARE_REPO/outputs}"
RUN_DIR="$OUTPUT_DIR/$EXPERIMENT_NAME"
NGPUS="${NGPUS:-8}"
NNODES="${NNODES:-1}"
RAY_ADDRESS="${RAY_ADDRESS:-}"
TP="${TP:-2}"
GPU_MEM_UTIL="${GPU_MEM_UTIL:-0.6}"
OFFLOAD="${OFFLOAD:-0}"
MICRO_UPDATE="${MICRO_UPDATE:-4}"
MICRO_LOGPROB="${MICRO_LOGPROB:-6}"
FUSED_KERNELS="${FUSED_KERNELS:-0}"
MAX_PROMPT_LENGTH="${MAX_PROMPT_LENGTH:-4096}"
MAX_RESPONSE_LENGTH="${MAX_RESPONSE_LENGTH:-2048}"
MIN_PIXELS="${MIN_PIXELS:-262144}"
MAX_PIXELS="${MAX_PIXELS:-4194304}"
WANDB="${WANDB:-0}"
care_int NGPUS NNODES TP MICRO_UPDATE MICRO_LOGPROB MAX_PROMPT_LENGTH MAX_RESPONSE_LENGTH MIN_PIXELS MAX_PIXELS
care_int_if_set ROLLOUT_BATCH MINI_BATCH TOTAL_EPOCHS
care_bool OFFLOAD FUSED_KERNELS WANDB
LOGGER="${LOGGER:-$([ "$(care_bool WANDB)" = True ] && echo "[console,file,wandb]" || echo "[console,file]")}"
MAX_LEN=$((MAX_PROMPT_LENGTH + MAX_RESPONSE_LENGTH))
ACTOR_MAX_TOKENS="${ACTOR_MAX_TOKENS:-$((MICRO_UPDATE * 4096 > MAX_LEN ? MICRO_UPDATE * 4096 : MAX_LEN))}"
LOGPROB_MAX_TOKENS="${LOGPROB_MAX_TOKENS:-$((MICRO_LOGPROB * 4096 > MAX_LEN ? MICRO_LOGPROB * 4096 : MAX_LEN))}"

care_prepare geometry3k_train geometry3k_test

care_launch "$PY" -m recipe_care.main \
    algorithm.adv_estimator=grpo \
    algorithm.rgr.enable=False \
    algorithm.care.similarity=hidden \
    data.train_files="$(care_list "$DATA_DIR/geometry3k_train.parquet")" \
    data.val_files="$(care_list "$DATA_DIR/geometry3k_test.parquet")" \
    data.max_prompt_length="$MAX_PROMPT_LENGTH" \
    data.max_response_length="$MAX_RESPONSE_LENGTH" \
    data.filter_overlong_prompts=True \
    ++data.mm_processor_kwargs.min_pixels="$MIN_PIXELS" \
    ++data.mm_processor_kwargs.max_pixels="$MAX_PIXELS" \
    actor_rollout_ref.model.path="$MODEL_PATH" \
    actor_rollout_ref.model.use_remove_padding=True \
    actor_rollout_ref.model.enable_gradient_checkpointing=True \
    actor_rollout_ref.model.use_fused_kernels="$(care_bool FUSED_KERNELS)" \
    actor_rollout_ref.actor.strategy=fsdp2 \
    actor_rollout_ref.actor.use_dynamic_bsz=True \
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu="$MICRO_UPDATE" \
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu="$ACTOR_MAX_TOKENS" \
    actor_rollout_ref.actor.entropy_from_logits_with_chunking=True \
    actor_rollout_ref.actor.fsdp_config.param_offload="$(care_bool OFFLOAD)" \
    actor_rollout_ref.actor.fsdp_config.optimizer_offload="$(care_bool OFFLOAD)" \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu="$MICRO_LOGPROB" \
    actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu="$LOGPROB_MAX_TOKENS" \
    actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu="$MICRO_LOGPROB" \
    actor_rollout_ref.ref.log_prob_max_token_len_per_gpu="$LOGPROB_MAX_TOKENS" \
    actor_rollout_ref.ref.fsdp_config.param_offload=True \
    actor_rollout_ref.rollout.name=vllm \
    actor_rollout_ref.rollout.tensor_model_parallel_size="$TP" \
    actor_rollout_ref.rollout.gpu_memory_utilization="$GPU_MEM_UTIL" \
    actor_rollout_ref.rollout.max_model_len="$MAX_LEN" \
    actor_rollout_ref.rollout.enable_chunked_prefill=False \
    actor_rollout_ref.rollout.multi_stage_wake_up=True \
    ${ROLLOUT_BATCH:+data.train_batch_size="$ROLLOUT_BATCH"} \
    ${MINI_BATCH:+actor_rollout_ref.actor.ppo_mini_batch_size="$MINI_BATCH"} \
    ${TOTAL_EPOCHS:+trainer.total_epochs="$TOTAL_EPOCHS"} \
    ${SAVE_FREQ:+trainer.save_freq="$SAVE_FREQ"} \
    ${MAX_CKPT_TO_KEEP:+trainer.max_actor_ckpt_to_keep="$MAX_CKPT_TO_KEEP"} \
    ${FORMAT_WEIGHT:+reward.custom_reward_function.reward_kwargs.format_weight="$FORMAT_WEIGHT"} \
    trainer.n_gpus_per_node="$NGPUS" \
    trainer.nnodes="$NNODES" \
    ${RAY_ADDRESS:+ray_kwargs.ray_init.address="$RAY_ADDRESS"} \
    ray_kwargs.ray_init.runtime_env.py_modules="$(care_list "$CARE_REPO/recipe_care" "$CARE_REPO/reward_fns")" \
    ++ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH="${VERL_FILE_LOGGER_PATH:-$RUN_DIR/metrics.jsonl}" \
    trainer.logger="$LOGGER" \
    trainer.project_name="$PROJECT_NAME" \
    trainer.experiment_name="$EXPERIMENT_NAME" \
    trainer.default_local_dir="$RUN_DIR/checkpoints" \
    trainer.validation_data_dir="$RUN_DIR/validation" \
    hydra.run.dir="$(care_hydra_dir)" \
    "$@"
