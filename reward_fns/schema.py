"""The contract shared by data prep and the verifiers: dispatch keys and the ``extra_info`` keys the verifiers read.

This module imports nothing heavy, so data-prep code can ``from reward_fns.schema import DATA_SOURCES,
EXTRA_INFO_DEFAULTS`` cheaply (importing the package itself pulls in sympy via the verifiers). It also holds the
verifier registry, ``VERIFIER_MODULES`` (data source -> verifier module), the one place a benchmark is registered.

Keys the verifiers read from ``extra_info`` (every other key, e.g. the ``num_turns`` / ``rollout_reward_scores``
that verl adds, is ignored):

=================  =========  ==========  =================================================================
key                type       default     meaning
=================  =========  ==========  =================================================================
``id``             str        ``""``      the benchmark's record id (used only in error messages / seeding)
``question_type``  str        ``""``      ``multi_choice`` | ``free_form``; ``""`` = let the verifier infer
                                          it from the benchmark and the ground truth
``answer_type``    str        ``""``      the benchmark's own (MathVista ``text``/``integer``/``float``/
                                          ``list``) or ``letter`` / ``letter_set`` / ``expr``; ``""`` = infer
``choices``        list[str]  ``[]``      option texts in letter order (A, B, …); ``[]`` when none
``precision``      int        ``-1``      decimal places for MathVista ``float`` answers; -1 when none
``unit``           str        ``""``      MathVista unit (e.g. ``"g"``), stripped from predictions
``question``       str        ``""``      question text; MathVerse/We-Math options are parsed from it when
                                          ``choices`` is empty
=================  =========  ==========  =================================================================

Data prep should always write concrete values (the types above, never ``None``) so every parquet file has the same
schema. ``normalize_extra_info`` applies the defaults, coerces the harmless variants (``None``, ``precision`` stored
as float ``1.0``, MathVerse's ``multi-choice`` with a hyphen, numpy arrays for lists) and raises a ``ValueError``
that names the record and the fix for anything else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

# The registry, defined here once: each dispatch key (the ``data_source`` column data prep writes) and the module of
# ``reward_fns/verifiers/`` that scores it. A module exposes ``verify(response, gt, info, mode) -> Verdict``.
# Registering a benchmark is one line here; ``reward_fns.DATA_SOURCES`` (key -> verify function) is built from it.
VERIFIER_MODULES: Mapping[str, str] = MappingProxyType(
    {
        "hiyouga/geometry3k": "geometry3k",
        "mathvista_testmini": "mathvista",
        "mmmu_pro_standard10": "mmmu_pro",
        "mmmu_pro_vision": "mmmu_pro",
        "mathverse_testmini": "mathverse",
        "mathvision_test": "mathvision",
        "mathvision_testmini": "mathvision",
        "wemath_testmini": "wemath",
        "logicvista_test": "logicvista",
        "synthetic_shapes": "synthetic_shapes",  # the CPU learning run's task (recipe_care.learn_demo.shapes_task)
    }
)
# The dispatch keys alone, for data prep (importing this module is cheap; importing ``reward_fns`` loads sympy).
DATA_SOURCES: tuple[str, ...] = tuple(VERIFIER_MODULES)

QUESTION_TYPES: tuple[str, ...] = ("multi_choice", "free_form")
# Answer types the verifiers act on; other strings (a benchmark's own) are accepted and treated like "".
ANSWER_TYPES: tuple[str, ...] = ("letter", "letter_set", "expr", "text", "integer", "float", "list")

EXTRA_INFO_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "id": "",
        "question_type": "",
        "answer_type": "",
        "choices": [],
        "precision": -1,
        "unit": "",
        "question": "",
    }
)

_QUESTION_TYPE_ALIASES = {
    "multi_choice": "multi_choice",
    "multi-choice": "multi_choice",
    "multiple_choice": "multi_choice",
    "multiple-choice": "multi_choice",
    "mc": "multi_choice",
    "free_form": "free_form",
    "free-form": "free_form",
    "open": "free_form",
    "": "",
}


@dataclass(frozen=True)
class ExtraInfo:
    """``extra_info`` after defaults and coercion (what every verifier receives)."""

    id: str = ""
    question_type: str = ""
    answer_type: str = ""
    choices: tuple[str, ...] = ()
    precision: int = -1
    unit: str = ""
    question: str = ""


def _where(record_id: str, data_source: str) -> str:
    rid = f"id={record_id!r}" if record_id else "id unknown (extra_info['id'] missing)"
    return f"record {rid} of data_source {data_source!r}" if data_source else f"record {rid}"


def _as_str(value: Any, key: str, where: str) -> str:
    if value is None:
        return str(EXTRA_INFO_DEFAULTS[key])
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(
        f"extra_info[{key!r}] of {where} must be a string, got {type(value).__name__} ({value!r:.80}); "
        f"fix data prep to write a string (default {EXTRA_INFO_DEFAULTS[key]!r})"
    )


def _as_choices(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        if not value.strip():
            return ()
        raise ValueError(
            f"extra_info['choices'] of {where} is a string ({value!r:.80}); it must be the list of option texts "
            "in letter order. Fix data prep: parse the benchmark's option string (MMMU-Pro: ast.literal_eval and "
            "flatten a single nested list; We-Math: split the 'A. …;B. …' string)"
        )
    if isinstance(value, Mapping):
        raise ValueError(f"extra_info['choices'] of {where} is a mapping; it must be a list of option texts")
    try:
        items = list(value)  # list, tuple, numpy array (parquet round trips)
    except TypeError:
        raise ValueError(
            f"extra_info['choices'] of {where} must be a list of option texts, got {type(value).__name__}"
        ) from None
    out = []
    for item in items:
        if item is None:
            out.append("")
        elif isinstance(item, str):
            out.append(item)
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            out.append(str(item))
        else:
            raise ValueError(
                f"extra_info['choices'] of {where} contains a {type(item).__name__} ({item!r:.60}); every option "
                "must be a string (flatten nested option lists in data prep)"
            )
    return tuple(out)


def _as_precision(value: Any, where: str) -> int:
    if value is None:
        return -1
    if isinstance(value, bool):
        raise ValueError(f"extra_info['precision'] of {where} is a bool; it must be an int (-1 when none)")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return -1
        try:
            value = float(text)
        except ValueError:
            raise ValueError(
                f"extra_info['precision'] of {where} is {value!r}; it must be an int (-1 when none)"
            ) from None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"extra_info['precision'] of {where} is {type(value).__name__}; it must be an int (-1 when none)"
        ) from None
    if math.isnan(number):
        return -1
    if not number.is_integer() or not -1 <= number <= 15:
        raise ValueError(
            f"extra_info['precision'] of {where} is {value!r}; it must be a whole number of decimal places in "
            "[0, 15] or -1 when none (MathVista stores 1.0/2.0: cast with int())"
        )
    return int(number)


def normalize_extra_info(extra_info: Any, data_source: str = "") -> ExtraInfo:
    """Apply ``EXTRA_INFO_DEFAULTS`` and coerce types; raise ``ValueError`` naming the record for bad data."""
    if extra_info is None:
        return ExtraInfo()
    if not isinstance(extra_info, Mapping):
        raise ValueError(
            f"extra_info for data_source {data_source!r} must be a dict (or None), got {type(extra_info).__name__}"
        )
    raw_id = extra_info.get("id")
    record_id = "" if raw_id is None else str(raw_id)
    where = _where(record_id, data_source)

    qtype_raw = _as_str(extra_info.get("question_type"), "question_type", where)
    qtype = _QUESTION_TYPE_ALIASES.get(qtype_raw.strip().lower())
    if qtype is None:
        raise ValueError(
            f"extra_info['question_type'] of {where} is {qtype_raw!r}; expected one of {QUESTION_TYPES} "
            "(or '' to let the verifier infer it)"
        )
    return ExtraInfo(
        id=record_id,
        question_type=qtype,
        answer_type=_as_str(extra_info.get("answer_type"), "answer_type", where).strip().lower(),
        choices=_as_choices(extra_info.get("choices"), where),
        precision=_as_precision(extra_info.get("precision"), where),
        unit=_as_str(extra_info.get("unit"), "unit", where).strip(),
        question=_as_str(extra_info.get("question"), "question", where),
    )
