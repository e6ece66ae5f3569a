"""Registration of the ``care`` estimator in verl's advantage-estimator registry (idempotent)."""

from __future__ import annotations

import logging

logger = logging.getLogger("recipe_care")

NAME = "care"


def register_care_estimator() -> None:
    """Register ``care`` in ``verl.trainer.ppo.core_algos`` once per process.

    Safe to call any number of times and from a second copy of this module (e.g. imported under another module
    object): a function of the same qualified name already registered is kept, never re-registered (verl's
    ``register_adv_est`` raises on a *different* function object under the same name). A foreign ``care`` from
    another package is left alone with a warning.
    """
    from verl.trainer.ppo import core_algos

    from recipe_care.verl_adapter import compute_care_advantage

    existing = core_algos.ADV_ESTIMATOR_REGISTRY.get(NAME)
    if existing is None:
        core_algos.register_adv_est(NAME)(compute_care_advantage)
    elif existing is not compute_care_advantage:
        ours = (compute_care_advantage.__module__, compute_care_advantage.__qualname__)
        if (getattr(existing, "__module__", None), getattr(existing, "__qualname__", None)) != ours:
            logger.warning("advantage estimator %r is already registered by %r; recipe_care keeps it", NAME, existing)


def is_registered() -> bool:
    from verl.trainer.ppo import core_algos

    fn = core_algos.ADV_ESTIMATOR_REGISTRY.get(NAME)
    return fn is not None and getattr(fn, "__qualname__", "") == "compute_care_advantage"
