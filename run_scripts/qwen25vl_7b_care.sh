#!/usr/bin/env bash
# CARE on Qwen2.5-VL-7B-Instruct, trained on Geometry3K (train), validated on Geometry3K (test) every 5 steps, with
# the authors' hyper-parameters (care-algorithm.md §4): G=8, 512 prompts per step, 128-prompt mini-batches, lr 1e-6,
# KL loss low_var_kl 0.01, dual-clip 0.2 / 0.3 / 3.0, token-mean, 15 epochs, vLLM TP=2, 1 node x 8 x 80 GB.
# The GRPO baseline (qwen25vl_7b_grpo.sh) shares every setting but the estimator and RGR (run_scripts/_common.sh).
#
#   bash run_scripts/qwen25vl_7b_care.sh                       # installs / prepares what is missing, preflight, train
#   DRY_RUN=1 bash run_scripts/qwen25vl_7b_care.sh             # compose + validate + print the config (no GPU)
#   bash run_scripts/qwen25vl_7b_care.sh trainer.total_epochs=1   # extra arguments: hydra overrides, applied last
#
# Environment (defaults in brackets):
#   MODEL_PATH [Qwen/Qwen2.5-VL-7B-Instruct]   EXPERIMENT_NAME [qwen25vl_7b_care]   PROJECT_NAME [care_geo3k]
#   DATA_DIR [$HOME/data/care]  OUTPUT_DIR [<repo>/outputs]: run folder $OUTPUT_DIR/$EXPERIMENT_NAME with
#       checkpoints/, validation/ (generations of every validation), metrics.jsonl, console.log, hydra/
#   WANDB [0] (1: also log to wandb)  LOGGER (explicit list)  DRY_RUN [0]  PYTHON  DATA_PREP_ARGS
#   Training: ROLLOUT_BATCH [512] prompts/step  MINI_BATCH [128] prompts  TOTAL_EPOCHS [15]  SAVE_FREQ [20]
#       MAX_CKPT_TO_KEEP [3]  MAX_PROMPT_LENGTH [4096] (image tokens included)  MAX_RESPONSE_LENGTH [2048]
#       MIN_PIXELS [262144]  MAX_PIXELS [4194304]  FORMAT_WEIGHT [0.1] (score = 0.9 acc + 0.1 format)
#   Hardware: NGPUS [8]  NNODES [1]  TP [2]  GPU_MEM_UTIL [0.6]  MICRO_UPDATE [4]  MICRO_LOGPROB [16]
#       ACTOR_MAX_TOKENS / LOGPROB_MAX_TOKENS (token budgets per GPU; default MICRO_x * 4096, >= prompt + response)
#       OFFLOAD [0]  FUSED_KERNELS [True]
#   Smaller GPUs, e.g. 8 x 40-48 GB:  OFFLOAD=1 MICRO_UPDATE=2 MICRO_LOGPROB=8 GPU_MEM_UTIL=0.5
#                      4 x 80 GB:     NGPUS=4 (same global batch; fewer sequences in flight per step)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

MODEL_PATH="${MODEL_PATH:-Qwen/Qwen2.5-VL-7B-Instruct}"
EXPERIMENT_NAME="${EXPERIMENT_NAME:-qwen25vl_7b_care}"
IMAGE_PATCH_SIZE=14   # Qwen2.5-VL vision patch
ESTIMATOR=care
RGR=True

care_train "$@"
