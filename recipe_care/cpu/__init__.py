"""Opt-in CPU backend: run verl 0.9.1's real legacy trainer on a machine without a GPU (tests and smoke runs).

- :mod:`recipe_care.cpu.platform`: ``PlatformCPU``, a verl platform for hosts without an accelerator;
- :mod:`recipe_care.cpu.hf_rollout`: the ``hfcpu`` rollout (HF ``generate`` in a Ray actor).

Importing this package installs the backend (idempotently): the platform and rollout registrations and the two
patches of verl that it needs, all in :mod:`recipe_care.patches.cpu_backend`. It is imported only by
``recipe_care._verl_plugin`` when ``CARE_CPU_BACKEND=1`` (and by ``VERL_USE_EXTERNAL_MODULES=recipe_care.cpu`` in
``run_scripts/cpu_smoke.sh``); a GPU run never imports it.
"""

from __future__ import annotations


def install() -> None:
    """Install the CPU backend (a second call is a no-op)."""
    from recipe_care.patches import cpu_backend

    cpu_backend.install()


install()
