"""Rule-based verifiers for the CARE recipe: one ``compute_score`` for every benchmark, callable by verl.

verl wiring (0.9.1)::

    reward.custom_reward_function.path=pkg://reward_fns
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.format_weight=0.1    # optional, default 0

``compute_score(data_source, solution_str, ground_truth, extra_info=None, *, mode="train", format_weight=0.0)``
returns, for every sample of every source, ``{"score": float, "acc": float, "format": float, "extracted": float,
"pred": str}``: ``acc`` (1.0/0.0) is the verdict CARE must use to call a rollout correct; ``score`` is the training
scalar ``(1 - format_weight) * acc + format_weight * format``. See ``docs/verifiers.md``.

For evaluation runs, ``reward_fns.evaluation.compute_score`` (``path=pkg://reward_fns.evaluation``) returns the same
verdict plus each record's data source, id and verifier fields, which ``python -m recipe_care.eval_table`` tables.
"""

from __future__ import annotations

import importlib
import logging
import numbers
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from reward_fns import schema
from reward_fns.extract import as_text, format_ok
from reward_fns.mathcheck import sympy_budget
from reward_fns.schema import EXTRA_INFO_DEFAULTS, ExtraInfo, normalize_extra_info
from reward_fns.verdict import RESULT_KEYS, RecordError, Verdict, build_result

__all__ = [
    "DATA_SOURCES",
    "EXTRA_INFO_DEFAULTS",
    "MODES",
    "RESULT_KEYS",
    "RecordError",
    "UnknownDataSourceError",
    "compute_score",
]

logger = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("train", "official")

Verifier = Callable[[str, str, ExtraInfo, str], Verdict]

# data_source -> verifier(response, ground_truth, extra_info, mode), built from the one registry in
# ``reward_fns.schema.VERIFIER_MODULES`` (register a new benchmark there).
DATA_SOURCES: Mapping[str, Verifier] = MappingProxyType(
    {
        source: importlib.import_module(f"reward_fns.verifiers.{module}").verify
        for source, module in schema.VERIFIER_MODULES.items()
    }
)


class UnknownDataSourceError(KeyError):
    """``data_source`` has no verifier. (A KeyError whose message lists the known sources.)"""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def _ground_truth(value: Any, info: ExtraInfo, data_source: str) -> str:
    where = f"record id={info.id!r} of data_source {data_source!r}" if info.id else f"a record of {data_source!r}"
    if isinstance(value, str):
        text = value
    elif isinstance(value, numbers.Number) and not isinstance(value, bool):
        text = str(value)
    else:
        raise RecordError(
            f"ground_truth of {where} is {type(value).__name__} ({value!r:.60}); it must be the benchmark's "
            "published answer as a string in reward_model.ground_truth"
        )
    if not text.strip():
        raise RecordError(
            f"ground_truth of {where} is empty; an item without an answer cannot be scored — drop it in data prep "
            "(e.g. LogicVista v1_382)"
        )
    return text


def _format_weight(value: Any) -> float:
    if value is None:
        return 0.0
    try:
        weight = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"format_weight must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= weight <= 1.0:
        raise ValueError(
            f"format_weight must be in [0, 1], got {weight}; set reward.custom_reward_function.reward_kwargs."
            "format_weight (score = (1 - w) * acc + w * format)"
        )
    return weight


def compute_score(
    data_source: str,
    solution_str: Any,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    *,
    mode: str = "train",
    format_weight: float = 0.0,
    **kwargs: Any,
) -> dict:
    """Score one response. Raises only for bad *data or configuration* (unknown source, bad ground truth or
    extra_info, bad ``mode``/``format_weight``); any model output, however malformed, gets a result dict.

    Extra keyword arguments (verl adds ``reward_router_address`` etc.) are ignored.
    """
    verifier = DATA_SOURCES.get(data_source) if isinstance(data_source, str) else None
    if verifier is None:
        raise UnknownDataSourceError(
            f"unknown data_source {data_source!r}; reward_fns knows {', '.join(DATA_SOURCES)} "
            "(set the data_source column in data prep to one of them)"
        )
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    weight = _format_weight(format_weight)
    info = normalize_extra_info(extra_info, data_source)
    gt = _ground_truth(ground_truth, info, data_source)
    response = as_text(solution_str)
    try:
        with sympy_budget():  # one CPU-time budget for all sympy work of this response
            verdict = verifier(response, gt, info, mode)
    except RecordError:
        raise
    except Exception:
        logger.warning(
            "reward_fns: verifier for %s failed on record id=%r; scoring acc=0", data_source, info.id, exc_info=True
        )
        verdict = Verdict.none()
    return build_result(verdict, format_ok(response), weight)
