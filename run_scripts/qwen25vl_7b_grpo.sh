#!/usr/bin/env bash
# The GRPO baseline for qwen25vl_7b_care.sh: every setting identical (run_scripts/_common.sh) but
# algorithm.adv_estimator=grpo and algorithm.rgr.enable=False (tests/test_run_scripts.py checks the two composed
# configs differ in nothing else than those and the run's name/folders). Same recipe entry point, so the signal
# diagnostics (signal/fail_adv_share, signal/zero_signal_group_rate) are logged for GRPO too.
#
#   bash run_scripts/qwen25vl_7b_grpo.sh [hydra overrides]      DRY_RUN=1 bash run_scripts/qwen25vl_7b_grpo.sh
#
# Environment: exactly as qwen25vl_7b_care.sh (MODEL_PATH, DATA_DIR, OUTPUT_DIR, WANDB, NGPUS, TP, OFFLOAD, ...),
# except EXPERIMENT_NAME [qwen25vl_7b_grpo].
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

MODEL_PATH="${MODEL_PATH:-Qwen/Qwen2.5-VL-7B-Instruct}"
EXPERIMENT_NAME="${EXPERIMENT_NAME:-qwen25vl_7b_grpo}"
IMAGE_PATCH_SIZE=14   # Qwen2.5-VL vision patch
ESTIMATOR=grpo
RGR=False

care_train "$@"
