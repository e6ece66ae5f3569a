#!/usr/bin/env bash
# CARE on Qwen3-VL-8B-Instruct: the qwen25vl_7b_care.sh recipe (Geometry3K, G=8, the authors' hyper-parameters,
# run_scripts/_common.sh) with the Qwen3-VL model and its 16-pixel vision patch (data.image_patch_size=16).
#
#   bash run_scripts/qwen3vl_8b_care.sh [hydra overrides]       DRY_RUN=1 bash run_scripts/qwen3vl_8b_care.sh
#   GRPO baseline on Qwen3-VL: bash run_scripts/qwen25vl_7b_grpo.sh with MODEL_PATH=Qwen/Qwen3-VL-8B-Instruct
#       EXPERIMENT_NAME=qwen3vl_8b_grpo and the override data.image_patch_size=16.
#
# Environment: as qwen25vl_7b_care.sh (DATA_DIR, OUTPUT_DIR, WANDB, NGPUS, TP, MICRO_*, OFFLOAD, ...), with
#   MODEL_PATH [Qwen/Qwen3-VL-8B-Instruct]  EXPERIMENT_NAME [qwen3vl_8b_care]. Qwen3-VL needs a verl/vLLM/transformers
#   stack that knows it (the gpu extra: verl[vllm,fsdp]==0.9.1).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

MODEL_PATH="${MODEL_PATH:-Qwen/Qwen3-VL-8B-Instruct}"
EXPERIMENT_NAME="${EXPERIMENT_NAME:-qwen3vl_8b_care}"
IMAGE_PATCH_SIZE=16   # Qwen3-VL vision patch
ESTIMATOR=care
RGR=True

care_train "$@"
