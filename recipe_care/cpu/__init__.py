"""Opt-in CPU backend: run verl 0.9.1's real legacy trainer on a machine without a GPU (tests and smoke runs).

Importing this package does all of the registration, idempotently (importing or calling :func:`install` twice is
harmless):

1. the ``cpu`` platform through verl's platform plugin API (selected by ``VERL_PLATFORM=cpu``),
   see :mod:`recipe_care.cpu.platform`;
2. ``VERL_ENGINE_DEVICE=cuda`` (unless set) so ``EngineRegistry`` finds the FSDP engine, which verl registers for
   ``cuda``/``npu`` only but which is device-agnostic once the platform says ``cpu``;
3. two module-attribute patches (gloo process group, unpinned FSDP2 offload), see :mod:`recipe_care.cpu.patches`;
4. the ``hfcpu`` HF-``generate`` rollout (``actor_rollout_ref.rollout.name=hfcpu``), see
   :mod:`recipe_care.cpu.hf_rollout`.

It is imported only by ``recipe_care._verl_plugin`` when ``CARE_CPU_BACKEND=1`` (and by
``VERL_USE_EXTERNAL_MODULES=recipe_care.cpu`` in ``run_scripts/cpu_smoke.sh``); a GPU run never imports it.
"""

from __future__ import annotations

import os

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    os.environ.setdefault("VERL_ENGINE_DEVICE", "cuda")

    from recipe_care.cpu.hf_rollout import register_hfcpu_rollout
    from recipe_care.cpu.patches import apply_cpu_patches
    from recipe_care.cpu.platform import register_cpu_platform

    register_cpu_platform()
    apply_cpu_patches()
    register_hfcpu_rollout()
    _installed = True


install()
