"""The two module-attribute patches verl 0.9.1 needs to train on a CPU (opt-in backend only).

Each is tiny, named, idempotent, and replaces one module attribute; nothing in verl's files is edited.
``PATCHED_SYMBOLS`` lists every (module, attribute) touched so a test can assert they still exist in the pinned verl.

1. ``cpu_gloo_process_group``: ``verl.utils.distributed.initialize_global_process_group_ray`` builds the backend
   string ``"cpu:gloo,{device}:{backend}"``, which on the ``cpu`` platform is ``"cpu:gloo,cpu:gloo"`` and torch rejects
   it (``Duplicate device type cpu``). The wrapper defaults ``backend="cpu:gloo"``.
2. ``fsdp2_offload_unpinned``: the FSDP2 forward-only (ref) engine hard-codes ``CPUOffloadPolicy(pin_memory=True)``
   (``workers/engine/fsdp/transformer_impl.py``); pinning needs an accelerator. The replacement is a real
   ``CPUOffloadPolicy`` subclass (torch checks ``isinstance``) that always sets ``pin_memory=False``.

Both are applied where the attribute is defined and, if already imported, where it was copied by
``from ... import`` (``verl.workers.engine_workers``, ``verl.workers.engine.fsdp.transformer_impl``).
"""

from __future__ import annotations

import functools
import importlib
import sys

PATCHED_SYMBOLS: list[tuple[str, str]] = [
    ("verl.utils.distributed", "initialize_global_process_group_ray"),
    ("verl.workers.engine_workers", "initialize_global_process_group_ray"),
    ("verl.utils.fsdp_utils", "CPUOffloadPolicy"),
    ("verl.workers.engine.fsdp.transformer_impl", "CPUOffloadPolicy"),
]

_MARK = "__care_cpu_patch__"


def _set_everywhere(attr: str, new, modules: list[str]) -> None:
    """Set ``attr`` on the defining module (first) and on the importers that are already loaded."""
    for i, name in enumerate(modules):
        mod = importlib.import_module(name) if i == 0 else sys.modules.get(name)
        if mod is not None and hasattr(mod, attr):
            setattr(mod, attr, new)


def patch_cpu_gloo_process_group() -> None:
    """Patch 1: the Ray workers' process group uses the single backend ``cpu:gloo``."""
    from verl.utils import distributed

    original = distributed.initialize_global_process_group_ray
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        return original(timeout_second=timeout_second, backend=backend or "cpu:gloo")

    setattr(initialize_global_process_group_ray, _MARK, True)
    _set_everywhere(
        "initialize_global_process_group_ray",
        initialize_global_process_group_ray,
        ["verl.utils.distributed", "verl.workers.engine_workers"],
    )


def patch_fsdp2_offload_unpinned() -> None:
    """Patch 2: FSDP2's ``CPUOffloadPolicy`` as verl builds it never pins memory."""
    from verl.utils import fsdp_utils

    original = fsdp_utils.CPUOffloadPolicy
    if original is None or getattr(original, _MARK, False):
        return

    class UnpinnedCPUOffloadPolicy(original):
        """``CPUOffloadPolicy`` whose ``pin_memory`` is always False (no accelerator to pin for)."""

        def __init__(self, pin_memory: bool = False):
            super().__init__(pin_memory=False)

    setattr(UnpinnedCPUOffloadPolicy, _MARK, True)
    _set_everywhere(
        "CPUOffloadPolicy",
        UnpinnedCPUOffloadPolicy,
        ["verl.utils.fsdp_utils", "verl.workers.engine.fsdp.transformer_impl"],
    )


def apply_cpu_patches() -> None:
    patch_cpu_gloo_process_group()
    patch_fsdp2_offload_unpinned()
