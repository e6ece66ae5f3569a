"""The recipe's logger and its one warn-once helper.

Configs are rebuilt and the estimator runs every training step, so a warning about a fallback (no tokenizer, no
``acc`` column, no hidden-state embeddings, ``care.M < care.K`` …) would repeat every step. :func:`warn_once` logs it
the first time its key is seen in the process and never again.
"""

from __future__ import annotations

import logging
from typing import Any, Hashable

logger = logging.getLogger("recipe_care")

_WARNED: set = set()


def warn_once(key: Hashable, message: str, *args: Any) -> bool:
    """Log ``message % args`` at WARNING on the ``recipe_care`` logger once per process and ``key``.

    Returns whether it was logged now. ``message`` carries its own prefix (``"CARE: …"``, ``"RGR: …"``).

    >>> reset_warnings()
    >>> warn_once("demo", "CARE: %s", "first"), warn_once("demo", "CARE: %s", "again")
    (True, False)
    """
    if key in _WARNED:
        return False
    _WARNED.add(key)
    logger.warning(message, *args)
    return True


def reset_warnings() -> None:
    """Forget which warnings were given (tests that check a warning appears)."""
    _WARNED.clear()
