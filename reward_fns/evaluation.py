"""The evaluation reward: ``reward_fns.compute_score`` plus the identity of each record, so verl's dump can be tabled.

verl wiring (0.9.1; ``run_scripts/eval_benchmarks.sh`` sets it)::

    reward.custom_reward_function.path=pkg://reward_fns.evaluation
    reward.custom_reward_function.name=compute_score

verl's validation dump (``trainer.validation_data_dir``) holds the prompt, the response, the ground truth, the score
and every key of the reward dict, but not the record's ``data_source``. This function returns the verifiers' dict
unchanged (same verdict, same keys) plus three strings: :data:`TAG_DATA_SOURCE`, :data:`TAG_RECORD_ID` and
:data:`TAG_EXTRA_INFO` (JSON of the verifier keys of ``extra_info``). verl copies them into the dump and skips
strings in its metric means; ``python -m recipe_care.eval_table`` reads them back to table each benchmark and to
re-score a response with ``mode="official"``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import reward_fns
from reward_fns.schema import EXTRA_INFO_DEFAULTS

__all__ = ["TAG_DATA_SOURCE", "TAG_EXTRA_INFO", "TAG_RECORD_ID", "TAGS", "compute_score"]

TAG_DATA_SOURCE = "eval_data_source"
TAG_RECORD_ID = "eval_record_id"
TAG_EXTRA_INFO = "eval_extra_info"
TAGS: tuple[str, ...] = (TAG_DATA_SOURCE, TAG_RECORD_ID, TAG_EXTRA_INFO)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays / scalars from parquet
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


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
    """``reward_fns.compute_score`` (same verdict, same keys) plus ``eval_data_source``, ``eval_record_id`` and
    ``eval_extra_info``.

    >>> out = compute_score("wemath_testmini", "<think>t</think><answer>B</answer>", "B",
    ...                     {"id": "7|2steps_1", "choices": ["1", "2"], "meta_json": "{}"})
    >>> out["acc"], out["eval_data_source"], out["eval_record_id"], out["eval_extra_info"]
    (1.0, 'wemath_testmini', '7|2steps_1', '{"id": "7|2steps_1", "choices": ["1", "2"]}')
    """
    result = dict(
        reward_fns.compute_score(
            data_source, solution_str, ground_truth, extra_info, mode=mode, format_weight=format_weight, **kwargs
        )
    )
    info = dict(extra_info or {})
    kept = {key: _jsonable(info[key]) for key in EXTRA_INFO_DEFAULTS if key in info}
    result[TAG_DATA_SOURCE] = str(data_source)
    result[TAG_RECORD_ID] = str(info.get("id", "") or "")
    result[TAG_EXTRA_INFO] = json.dumps(kept, ensure_ascii=False, default=str)
    return result
