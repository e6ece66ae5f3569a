"""Test fixtures built at test time: tiny random models, the smoke-run data and a plumbing reward.

Nothing here is used by a real training run. Importing this package is cheap (no torch, no verl); the builders are
loaded lazily, so ``python -m recipe_care.testing.tiny_models`` runs cleanly.
"""

__all__ = ["build_tiny_qwen2", "build_tiny_qwen25vl"]


def __getattr__(name):
    if name in __all__:
        from recipe_care.testing import tiny_models

        return getattr(tiny_models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
