"""The one row schema every prepared parquet file has (verl 0.9.1 ``RLHFDataset`` rows).

::

    data_source  : string                      # reward_fns dispatch key, e.g. "mathvista_testmini"
    prompt       : list<{role, content}>       # one user message; one "<image>" per image, in image order
    images       : list<Image>                 # HF Image structs {bytes: PNG/JPEG bytes, path: null}
    ability      : string                      # "math" | "multiple_choice" | "logic" ...
    reward_model : {style: "rule", ground_truth: string}   # the benchmark's published answer
    extra_info   : {canonical keys below, identical in every file, never null}

``extra_info`` = the verifiers' keys with their defaults (:data:`reward_fns.schema.EXTRA_INFO_DEFAULTS`) + the
keys data prep adds (:data:`DATA_PREP_EXTRA_DEFAULTS`). Every file is written with the same Arrow schema
(:data:`ARROW_SCHEMA`, which carries the ``datasets`` features metadata), so all files concatenate with
``datasets.concatenate_datasets``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from datasets import Features, Image, List, Value

from reward_fns.schema import EXTRA_INFO_DEFAULTS as VERIFIER_DEFAULTS

#: Keys data prep adds to the verifiers' keys (defaults = the value written when a source has nothing).
DATA_PREP_EXTRA_DEFAULTS: dict[str, Any] = {
    "benchmark": "",  # data_prep script name: "mathvista", "mmmu_pro", ...
    "variant": "",  # config / version inside the benchmark: "standard10", "vision", "Vision Only", "testmini" ...
    "split": "",  # the source split: "train", "test", "testmini"
    "index": -1,  # position of the record in the source stream (stable: skipped records keep their number)
    "meta_json": "{}",  # JSON object of the source fields not promoted to a column (subject, skills, level, key ...)
}

EXTRA_INFO_DEFAULTS: dict[str, Any] = {**VERIFIER_DEFAULTS, **DATA_PREP_EXTRA_DEFAULTS}
for _k in set(VERIFIER_DEFAULTS) & set(DATA_PREP_EXTRA_DEFAULTS):  # a shared key must keep one type
    if type(VERIFIER_DEFAULTS[_k]) is not type(DATA_PREP_EXTRA_DEFAULTS[_k]):
        raise TypeError(f"extra_info key {_k!r}: reward_fns.schema and data_prep disagree on its type")


def _feature_for(key: str, default: Any):
    if isinstance(default, bool):
        return Value("bool")
    if isinstance(default, int):
        return Value("int64")
    if isinstance(default, float):
        return Value("float64")
    if isinstance(default, str):
        return Value("string")
    if isinstance(default, (list, tuple)):
        if any(not isinstance(x, str) for x in default):
            raise TypeError(f"extra_info key {key!r}: only list[str] defaults are supported, got {default!r}")
        return List(Value("string"))
    raise TypeError(f"extra_info key {key!r}: unsupported default {default!r} ({type(default).__name__})")


EXTRA_INFO_FEATURES = {k: _feature_for(k, v) for k, v in EXTRA_INFO_DEFAULTS.items()}

FEATURES = Features(
    {
        "data_source": Value("string"),
        "prompt": List({"role": Value("string"), "content": Value("string")}),
        "images": List(Image()),
        "ability": Value("string"),
        "reward_model": {"style": Value("string"), "ground_truth": Value("string")},
        "extra_info": EXTRA_INFO_FEATURES,
    }
)

#: The Arrow schema of every output file (with ``datasets`` features metadata, like ``Dataset.to_parquet``).
ARROW_SCHEMA = FEATURES.arrow_schema


def _coerce(key: str, value: Any, default: Any) -> Any:
    if value is None:
        return copy.deepcopy(default)
    if isinstance(default, bool):
        return bool(value)
    if isinstance(default, int):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"extra_info[{key!r}] must be an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise TypeError(f"extra_info[{key!r}] must be a string, got {type(value).__name__}: {value!r}")
        return value
    if isinstance(default, (list, tuple)):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise TypeError(f"extra_info[{key!r}] must be a list of strings, got {value!r}")
        return [str(x) for x in value]
    raise TypeError(f"extra_info[{key!r}]: unsupported default type")  # pragma: no cover (checked at import)


def make_extra_info(meta: dict[str, Any] | None = None, **values: Any) -> dict[str, Any]:
    """A complete canonical ``extra_info`` dict: defaults, overridden by ``values`` (None -> default).

    ``meta`` (the source fields kept for breakdowns) is serialised into ``meta_json``. Unknown keys raise: the
    schema must stay identical in every file.
    """
    unknown = set(values) - set(EXTRA_INFO_DEFAULTS)
    if unknown:
        raise KeyError(f"unknown extra_info keys {sorted(unknown)}; canonical keys: {sorted(EXTRA_INFO_DEFAULTS)}")
    out = {k: _coerce(k, values.get(k), d) for k, d in EXTRA_INFO_DEFAULTS.items()}
    if meta is not None:
        out["meta_json"] = json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str)
    return out
