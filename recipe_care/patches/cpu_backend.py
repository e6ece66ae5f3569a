"""The opt-in CPU backend's changes to verl 0.9.1: run the real legacy trainer on a machine without a GPU.

Installed by :func:`install` (idempotent), which ``recipe_care.cpu`` calls when it is imported: by the verl plugin
when ``CARE_CPU_BACKEND=1``, or through ``VERL_USE_EXTERNAL_MODULES=recipe_care.cpu`` (``run_scripts/cpu_smoke.sh``
sets both). A GPU run never imports this module.

Registrations through verl's extension points:

1. the ``cpu`` platform (:class:`recipe_care.cpu.platform.PlatformCPU`) in ``verl.plugin.platform.PlatformRegistry``,
   selected by ``VERL_PLATFORM=cpu``;
2. ``VERL_ENGINE_DEVICE=cuda`` (unless set) so ``EngineRegistry`` finds the FSDP engine, which verl registers for
   ``cuda``/``npu`` only but which is device-agnostic once the platform says ``cpu``;
3. (the rollout is verl's own vLLM server on vLLM's CPU build; the vLLM side of the backend is
   :mod:`recipe_care.patches.vllm_cpu`, loaded by vLLM's plugin entry point in vLLM's processes only).

Three module-attribute patches of verl (listed in ``recipe_care.patches.PATCHED_SYMBOLS``, group ``cpu_backend``):

4. ``verl.utils.distributed.initialize_global_process_group_ray`` builds the backend string
   ``"cpu:gloo,{device}:{backend}"``, which on the ``cpu`` platform is ``"cpu:gloo,cpu:gloo"`` and torch rejects it
   (``Duplicate device type cpu``). The wrapper defaults ``backend="cpu:gloo"``.
5. The FSDP2 forward-only (ref) engine hard-codes ``CPUOffloadPolicy(pin_memory=True)``
   (``workers/engine/fsdp/transformer_impl.py``); pinning needs an accelerator. The replacement is a real
   ``CPUOffloadPolicy`` subclass (torch checks ``isinstance``) that always sets ``pin_memory=False``.

6. ``verl.utils.torch_functional.logprobs_from_logits`` falls back, without flash-attn or an NPU, to
   ``logprobs_from_logits_v2``, which calls ``logsumexp`` once per row of the flattened ``(tokens, vocab)`` logits
   (about 10,000 calls and a 10,000-way ``stack`` per 64-row batch of the CPU learning run, forward and backward).
   The replacement computes the same ``x[label] - logsumexp(x)`` in one call (``-cross_entropy(reduction="none")``):
   equal to verl's to float rounding, with the same gradient, about 60 times faster
   (``python benchmarks/bench_cpu_logprobs.py``).

Patches 4-6 are applied where the attribute is defined and, if already imported, where it was copied by
``from ... import`` (``verl.workers.engine_workers``, ``verl.workers.engine.fsdp.transformer_impl``).

One method patch of transformers (listed in ``PATCHED_SYMBOLS`` too):

7. ``transformers.processing_utils.ProcessorMixin._check_special_mm_tokens``, the sanity check at the end of every
   processor call, counts the image tokens of each prompt with ``list(ids).count(token_id)``, one 0-d tensor and
   one comparison per token, for each of three modalities. verl's agent loop calls the processor two to three times
   per request; on the CPU learning run this check was a fifth of the agent-loop workers' time. The replacement
   counts with one tensor comparison per modality and raises the same error on a mismatch; anything but a 2-D
   tensor of ids goes to the original.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys

from recipe_care.patches import PATCHED_SYMBOLS, is_marked, mark

_installed = False


def register_cpu_platform() -> None:
    """Registration 1: :class:`~recipe_care.cpu.platform.PlatformCPU` as ``"cpu"`` (a second call is a no-op)."""
    from verl.plugin.platform import PlatformRegistry

    from recipe_care.cpu.platform import PLATFORM_NAME, PlatformCPU

    registered = PlatformRegistry.get(PLATFORM_NAME)
    if (
        registered is not None
        and registered.__qualname__ == PlatformCPU.__qualname__
        and registered.__module__ == PlatformCPU.__module__
    ):
        return
    PlatformRegistry.register(PLATFORM_NAME)(PlatformCPU)


def _set_everywhere(attr: str, new) -> None:
    """Set ``attr`` on every module that ``PATCHED_SYMBOLS`` lists for it: the defining module (listed first, imported
    now) and the importers that are already loaded."""
    modules = [s.module for s in PATCHED_SYMBOLS if s.group == "cpu_backend" and s.attribute == attr]
    for i, name in enumerate(modules):
        mod = importlib.import_module(name) if i == 0 else sys.modules.get(name)
        if mod is not None and hasattr(mod, attr):
            setattr(mod, attr, new)


def patch_gloo_process_group() -> None:
    """Patch 4: the Ray workers' process group uses the single backend ``cpu:gloo``."""
    from verl.utils import distributed

    original = distributed.initialize_global_process_group_ray
    if is_marked(original):
        return

    @functools.wraps(original)
    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        return original(timeout_second=timeout_second, backend=backend or "cpu:gloo")

    _set_everywhere("initialize_global_process_group_ray", mark(initialize_global_process_group_ray))


def patch_fsdp2_offload_unpinned() -> None:
    """Patch 5: FSDP2's ``CPUOffloadPolicy`` as verl builds it never pins memory."""
    from verl.utils import fsdp_utils

    original = fsdp_utils.CPUOffloadPolicy
    if original is None or is_marked(original):
        return

    class UnpinnedCPUOffloadPolicy(original):
        """``CPUOffloadPolicy`` whose ``pin_memory`` is always False (no accelerator to pin for)."""

        def __init__(self, pin_memory: bool = False):
            super().__init__(pin_memory=False)

    _set_everywhere("CPUOffloadPolicy", mark(UnpinnedCPUOffloadPolicy))


def logprobs_from_logits(logits, labels, inplace_backward=True):
    """Patch 6: ``log softmax(logits)[label]`` over the last dimension, in one vectorized call.

    >>> import torch
    >>> logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    >>> logprobs_from_logits(logits, torch.tensor([0, 0])).exp()  # 1/2 and e^2 / (e^2 + 1)
    tensor([0.5000, 0.8808])
    """
    import torch.nn.functional as F

    del inplace_backward  # only verl's flash-attn kernel uses it
    batch_shape = logits.shape[:-1]
    flat = -F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
    return flat.view(batch_shape)


def patch_vectorized_logprobs() -> None:
    """Patch 6: ``logprobs_from_logits`` without a per-row loop (only when neither flash-attn nor an NPU kernel is
    available, i.e. where verl would use its row loop)."""
    from verl.utils import torch_functional

    original = torch_functional.logprobs_from_logits
    if is_marked(original):
        return
    if torch_functional.FLAH_ATTN_CROSS_ENTROPY_LOSS_AVAILABLE or torch_functional.NPU_CROSS_ENTROPY_LOSS_AVAILABLE:
        return
    _set_everywhere("logprobs_from_logits", mark(logprobs_from_logits))


def patch_mm_token_check() -> None:
    """Patch 7: the processor's special-token count check with one tensor comparison per modality."""
    from transformers.processing_utils import ProcessorMixin

    original = ProcessorMixin._check_special_mm_tokens
    if is_marked(original):
        return

    @functools.wraps(original)
    def _check_special_mm_tokens(self, text, text_inputs, modalities):
        import torch

        ids = text_inputs["input_ids"]
        if not (isinstance(ids, torch.Tensor) and ids.dim() == 2):
            return original(self, text, text_inputs, modalities)
        for modality in modalities:
            token_str = getattr(self, f"{modality}_token", None)
            token_id = getattr(self, f"{modality}_token_id", None)
            if token_str is not None and token_id is not None:
                ids_count = (ids == token_id).sum(-1).tolist()
                text_count = [sample.count(token_str) for sample in text]
                if ids_count != text_count:  # transformers' own message
                    raise ValueError(
                        f"Mismatch in `{modality}` token count between text and `input_ids`. Got ids={ids_count} and "
                        f"text={text_count}. Likely due to `truncation='max_length'`. Please disable truncation or "
                        "increase `max_length`."
                    )

    ProcessorMixin._check_special_mm_tokens = mark(_check_special_mm_tokens)


def install() -> None:
    """Registrations 1-2 and patches 4-7, once per process."""
    global _installed
    if _installed:
        return
    os.environ.setdefault("VERL_ENGINE_DEVICE", "cuda")

    register_cpu_platform()
    patch_gloo_process_group()
    patch_fsdp2_offload_unpinned()
    patch_vectorized_logprobs()
    patch_mm_token_check()
    _installed = True
