#!/usr/bin/env bash
# The paper's evaluation protocol on the six benchmarks: verl `trainer.val_only=True` (no training step), greedy
# decoding (temperature 0, do_sample False), one sample per question, the same prompt format and verifiers as in
# training; every response is dumped (trainer.validation_data_dir) and tabled at the end by
# `python -m recipe_care.eval_table` (per-benchmark accuracy + macro average, Markdown and CSV, with the decoding).
#
# Benchmarks (data_prep stems): mathvista_testmini, mmmu_pro_standard10 + mmmu_pro_vision (MMMU-Pro = their mean),
# mathverse_testmini, mathvision_$MATHVISION_SPLIT, wemath_testmini, logicvista_test.
#
#   bash run_scripts/eval_benchmarks.sh                                    # the base model (Qwen2.5-VL-7B-Instruct)
#   MODEL_PATH=/ckpt/qwen25vl_7b_care_hf bash run_scripts/eval_benchmarks.sh   # a trained model (HF folder)
#   DRY_RUN=1 bash run_scripts/eval_benchmarks.sh                          # compose + validate + print (no GPU)
#   bash run_scripts/eval_benchmarks.sh data.val_max_samples=50            # extra hydra overrides, applied last
# A verl checkpoint is FSDP shards: merge it into a Hugging Face folder first, e.g.
#   python -m verl.model_merger merge --backend fsdp --local_dir OUT/qwen25vl_7b_care/checkpoints/global_step_60/actor \
#       --target_dir OUT/qwen25vl_7b_care/hf_step60
#
# Environment (defaults in brackets):
#   MODEL_PATH [Qwen/Qwen2.5-VL-7B-Instruct]  (Qwen3-VL models get data.image_patch_size=16; IMAGE_PATCH_SIZE forces it)
#   EXPERIMENT_NAME [eval_<basename of MODEL_PATH>]  PROJECT_NAME [care_eval]
#   DATA_DIR [$HOME/data/care]  OUTPUT_DIR [<repo>/outputs]: results in $OUTPUT_DIR/$EXPERIMENT_NAME:
#       generations/0.jsonl (every response, its acc and record), metrics.jsonl, eval_settings.json,
#       eval_table.{md,csv} and, with RESCORE=official, eval_table_official.{md,csv}; console.log
#   MATHVISION_SPLIT [test] (or testmini)   BENCHMARKS: explicit space-separated list of stems (default: the six)
#   EVAL_TEMPERATURE [0]  EVAL_TOP_P [1.0]  EVAL_TOP_K [-1]  EVAL_N [1]  (do_sample = temperature > 0)
#   MAX_PROMPT_LENGTH [16384] (image tokens included; longer prompts are dropped by verl and reported by the table)
#   MAX_RESPONSE_LENGTH [2048]  MIN_PIXELS [262144]  MAX_PIXELS [4194304]
#   VERIFIER_MODE [train]  (reward_fns mode during the run)   RESCORE [official] (also table the official re-score;
#       none: only the run's verifier). We-Math's official rule reads only its own `<Answer>: <<option>>` template,
#       which this prompt does not ask for: that table marks We-Math not comparable and shows its train-rule number
#   Hardware: NGPUS [8]  NNODES [1]  RAY_ADDRESS [] (a Ray cluster: docs/run_scripts.md)  TP [2]  GPU_MEM_UTIL [0.6]
#       OFFLOAD [1] (the actor is only loaded, not trained)
#   WANDB [0]  LOGGER  DRY_RUN [0]  PYTHON  DATA_PREP_ARGS (e.g. "--local-root /data/copies")
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

MODEL_PATH="${MODEL_PATH:-Qwen/Qwen2.5-VL-7B-Instruct}"
EXPERIMENT_NAME="${EXPERIMENT_NAME:-eval_$(basename "$MODEL_PATH")}"
PROJECT_NAME="${PROJECT_NAME:-care_eval}"
DATA_DIR="${DATA_DIR:-$HOME/data/care}"
OUTPUT_DIR="${OUTPUT_DIR:-$CARE_REPO/outputs}"
RUN_DIR="$OUTPUT_DIR/$EXPERIMENT_NAME"
MATHVISION_SPLIT="${MATHVISION_SPLIT:-test}"
BENCHMARKS="${BENCHMARKS:-mathvista_testmini mmmu_pro_standard10 mmmu_pro_vision mathverse_testmini mathvision_$MATHVISION_SPLIT wemath_testmini logicvista_test}"
EVAL_TEMPERATURE="${EVAL_TEMPERATURE:-0}"
EVAL_TOP_P="${EVAL_TOP_P:-1.0}"
EVAL_TOP_K="${EVAL_TOP_K:--1}"
EVAL_N="${EVAL_N:-1}"
VERIFIER_MODE="${VERIFIER_MODE:-train}"
RESCORE="${RESCORE:-official}"
NGPUS="${NGPUS:-8}"
NNODES="${NNODES:-1}"
RAY_ADDRESS="${RAY_ADDRESS:-}"
TP="${TP:-2}"
GPU_MEM_UTIL="${GPU_MEM_UTIL:-0.6}"
OFFLOAD="${OFFLOAD:-1}"
MAX_PROMPT_LENGTH="${MAX_PROMPT_LENGTH:-16384}"
MAX_RESPONSE_LENGTH="${MAX_RESPONSE_LENGTH:-2048}"
MIN_PIXELS="${MIN_PIXELS:-262144}"
MAX_PIXELS="${MAX_PIXELS:-4194304}"
WANDB="${WANDB:-0}"
case "$MATHVISION_SPLIT" in test|testmini) ;; *) care_die "MATHVISION_SPLIT must be test or testmini, got '$MATHVISION_SPLIT'" ;; esac
case "$VERIFIER_MODE" in train|official) ;; *) care_die "VERIFIER_MODE must be train or official, got '$VERIFIER_MODE'" ;; esac
case "$RESCORE" in official|none) ;; *) care_die "RESCORE must be official or none, got '$RESCORE'" ;; esac
care_int NGPUS NNODES TP EVAL_N MAX_PROMPT_LENGTH MAX_RESPONSE_LENGTH MIN_PIXELS MAX_PIXELS
care_bool OFFLOAD WANDB
LOGGER="${LOGGER:-$([ "$(care_bool WANDB)" = True ] && echo "[console,file,wandb]" || echo "[console,file]")}"
MAX_LEN=$((MAX_PROMPT_LENGTH + MAX_RESPONSE_LENGTH))
EVAL_BATCH=$((NGPUS * NNODES))   # verl still builds a train loader (never used with val_only): one batch per GPU
# greedy unless a temperature is given
if "$PY" -c "import sys; sys.exit(0 if float('$EVAL_TEMPERATURE') > 0 else 1)" 2>/dev/null; then EVAL_DO_SAMPLE=True
else EVAL_DO_SAMPLE=False; fi
if [ -z "${IMAGE_PATCH_SIZE:-}" ]; then  # Qwen3-VL: 16-pixel patches (from the name or the folder's config.json)
  model_type=""
  [ -f "$MODEL_PATH/config.json" ] && model_type="$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1])).get('model_type',''))" "$MODEL_PATH/config.json" 2>/dev/null || true)"
  case "$model_type:$MODEL_PATH" in
    qwen3_vl*:*|*:*[Qq]wen3-[Vv][Ll]*) IMAGE_PATCH_SIZE=16 ;;
    *) IMAGE_PATCH_SIZE=14 ;;
  esac
fi
read -r -a stems <<< "$BENCHMARKS"
[ "${#stems[@]}" -gt 0 ] || care_die "BENCHMARKS is empty"

care_prepare "${stems[@]}"

if [ "$DRY_RUN" != "1" ]; then
  mkdir -p "$RUN_DIR"
  # The decoding settings beside the dump, for the table.
  EVAL_TEMPERATURE="$EVAL_TEMPERATURE" EVAL_TOP_P="$EVAL_TOP_P" EVAL_TOP_K="$EVAL_TOP_K" EVAL_N="$EVAL_N" \
  EVAL_DO_SAMPLE="$EVAL_DO_SAMPLE" MAX_RESPONSE_LENGTH="$MAX_RESPONSE_LENGTH" MAX_PROMPT_LENGTH="$MAX_PROMPT_LENGTH" \
  MIN_PIXELS="$MIN_PIXELS" MAX_PIXELS="$MAX_PIXELS" MODEL_PATH="$MODEL_PATH" VERIFIER_MODE="$VERIFIER_MODE" \
  "$PY" - "$RUN_DIR/eval_settings.json" "${CARE_DATA_FILES[@]}" <<'EOF'
import json, os, sys
e = os.environ
settings = {
    "temperature": float(e["EVAL_TEMPERATURE"]), "top_p": float(e["EVAL_TOP_P"]), "top_k": int(e["EVAL_TOP_K"]),
    "n": int(e["EVAL_N"]), "do_sample": e["EVAL_DO_SAMPLE"] == "True",
    "max_response_length": int(e["MAX_RESPONSE_LENGTH"]), "max_prompt_length": int(e["MAX_PROMPT_LENGTH"]),
    "min_pixels": int(e["MIN_PIXELS"]), "max_pixels": int(e["MAX_PIXELS"]),
    "model_path": e["MODEL_PATH"], "verifier_mode": e["VERIFIER_MODE"], "val_files": sys.argv[2:],
}
with open(sys.argv[1], "w") as fh:
    json.dump(settings, fh, indent=2)
EOF
fi

rc=0
care_launch "$PY" -m recipe_care.main \
    trainer.val_only=True \
    trainer.resume_mode=disable \
    trainer.total_epochs=1 \
    trainer.save_freq=-1 \
    trainer.test_freq=-1 \
    algorithm.rgr.enable=False \
    data.val_files="$(care_list "${CARE_DATA_FILES[@]}")" \
    data.train_files="$(care_list "${CARE_DATA_FILES[0]}")" \
    data.train_max_samples=$((EVAL_BATCH * 4)) \
    data.train_batch_size="$EVAL_BATCH" \
    data.shuffle=False \
    data.max_prompt_length="$MAX_PROMPT_LENGTH" \
    data.max_response_length="$MAX_RESPONSE_LENGTH" \
    data.filter_overlong_prompts=True \
    data.filter_overlong_prompts_workers=8 \
    data.image_patch_size="$IMAGE_PATCH_SIZE" \
    ++data.mm_processor_kwargs.min_pixels="$MIN_PIXELS" \
    ++data.mm_processor_kwargs.max_pixels="$MAX_PIXELS" \
    actor_rollout_ref.model.path="$MODEL_PATH" \
    actor_rollout_ref.model.use_remove_padding=True \
    actor_rollout_ref.model.enable_gradient_checkpointing=True \
    actor_rollout_ref.actor.strategy=fsdp2 \
    actor_rollout_ref.actor.use_kl_loss=False \
    actor_rollout_ref.actor.ppo_mini_batch_size="$EVAL_BATCH" \
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1 \
    actor_rollout_ref.actor.use_dynamic_bsz=True \
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu="$MAX_LEN" \
    actor_rollout_ref.actor.fsdp_config.param_offload="$(care_bool OFFLOAD)" \
    actor_rollout_ref.actor.fsdp_config.optimizer_offload="$(care_bool OFFLOAD)" \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=1 \
    actor_rollout_ref.rollout.n=1 \
    actor_rollout_ref.rollout.val_kwargs.temperature="$EVAL_TEMPERATURE" \
    actor_rollout_ref.rollout.val_kwargs.top_p="$EVAL_TOP_P" \
    actor_rollout_ref.rollout.val_kwargs.top_k="$EVAL_TOP_K" \
    actor_rollout_ref.rollout.val_kwargs.n="$EVAL_N" \
    actor_rollout_ref.rollout.val_kwargs.do_sample="$EVAL_DO_SAMPLE" \
    actor_rollout_ref.rollout.name=vllm \
    actor_rollout_ref.rollout.tensor_model_parallel_size="$TP" \
    actor_rollout_ref.rollout.gpu_memory_utilization="$GPU_MEM_UTIL" \
    actor_rollout_ref.rollout.max_model_len="$MAX_LEN" \
    actor_rollout_ref.rollout.max_num_batched_tokens="$((MAX_LEN > 8192 ? MAX_LEN : 8192))" \
    actor_rollout_ref.rollout.enable_chunked_prefill=False \
    actor_rollout_ref.rollout.multi_stage_wake_up=True \
    reward.custom_reward_function.path=pkg://reward_fns.evaluation \
    reward.custom_reward_function.reward_kwargs.format_weight=0.0 \
    ++reward.custom_reward_function.reward_kwargs.mode="$VERIFIER_MODE" \
    trainer.n_gpus_per_node="$NGPUS" \
    trainer.nnodes="$NNODES" \
    ${RAY_ADDRESS:+ray_kwargs.ray_init.address="$RAY_ADDRESS"} \
    ray_kwargs.ray_init.runtime_env.py_modules="$(care_list "$CARE_REPO/recipe_care" "$CARE_REPO/reward_fns")" \
    ++ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH="${VERL_FILE_LOGGER_PATH:-$RUN_DIR/metrics.jsonl}" \
    trainer.logger="$LOGGER" \
    trainer.project_name="$PROJECT_NAME" \
    trainer.experiment_name="$EXPERIMENT_NAME" \
    trainer.default_local_dir="$RUN_DIR/checkpoints" \
    trainer.validation_data_dir="$RUN_DIR/generations" \
    hydra.run.dir="$(care_hydra_dir)" \
    "$@" || rc=$?
[ "$DRY_RUN" = "1" ] && exit "$rc"
[ "$rc" -eq 0 ] || care_die "the evaluation run failed with status $rc (log: $RUN_DIR/console.log)"

# The tables (cheap to redo: the same commands, printed here, work on the dump at any time).
table=("$PY" -m recipe_care.eval_table --generations "$RUN_DIR/generations" --metrics "$VERL_FILE_LOGGER_PATH"
       --settings "$RUN_DIR/eval_settings.json" --out "$RUN_DIR" --label "$EXPERIMENT_NAME")
care_log "table: ${table[*]}"
"${table[@]}" || care_die "eval_table failed; the dump is in $RUN_DIR/generations, rerun: ${table[*]}"
if [ "$RESCORE" = "official" ]; then
  care_log "table (official re-score): ${table[*]} --rescore official"
  "${table[@]}" --rescore official || care_die "official re-score failed; rerun: ${table[*]} --rescore official"
fi
