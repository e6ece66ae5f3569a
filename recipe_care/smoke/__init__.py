"""The CPU smoke run's pieces (``run_scripts/cpu_smoke.sh``): tiny random models, a few data rows, a plumbing reward.

* ``tiny_models``: tiny random Qwen2.5-VL / Qwen3-VL / Qwen2 checkpoints built locally in seconds (also the base of the learning
  demo's policy, ``recipe_care.learn_demo.learn_policy``, and the model of many CPU tests);
* ``smoke_data``: a few rows cut from the ``data_prep`` output of a benchmark fixture;
* ``smoke_reward``: a deterministic hash reward (``pkg://recipe_care.smoke.smoke_reward``) so groups have mixed rewards.

Nothing here is used by a real training run. Importing this package is cheap (no torch, no verl); the builders are
loaded lazily, so ``python -m recipe_care.smoke.tiny_models`` runs cleanly.
"""

__all__ = ["build_tiny_qwen2", "build_tiny_qwen25vl", "build_tiny_qwen3vl"]


def __getattr__(name):
    if name in __all__:
        from recipe_care.smoke import tiny_models

        return getattr(tiny_models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
