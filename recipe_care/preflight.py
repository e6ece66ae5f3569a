"""Preflight: fail loudly, in seconds, before an expensive verl launch.

verl loads plugins with their import errors swallowed, so a broken ``care`` registration would only surface at the
first advantage step, after model loading and a full rollout. This module imports the plugin *directly*, so the
real error is printed.

    python -m recipe_care.preflight                      # plugin, registry, patches
    python -m recipe_care.preflight --gpus 8 --data train.parquet test.parquet --reward-check train.parquet

Exit status 0 when every requested check passes, 1 otherwise (each failure is printed with its fix).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from typing import Callable

VERL_VERSION = "0.9.1"


class PreflightError(RuntimeError):
    pass


def check_plugin() -> str:
    """Import the plugin module directly and check that ``care`` resolves to our estimator, patches included."""
    try:
        importlib.import_module("recipe_care._verl_plugin")
    except Exception as err:  # the error verl would have swallowed
        raise PreflightError(
            "importing recipe_care._verl_plugin failed (verl hides this error and would crash at the first "
            f"advantage step):\n{traceback.format_exc()}"
        ) from err
    import verl
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn

    version = getattr(verl, "__version__", "?")
    if version != VERL_VERSION:
        raise PreflightError(f"verl {version} is installed, recipe_care needs verl=={VERL_VERSION}: pip install 'verl[verl-core]=={VERL_VERSION}'")
    fn = get_adv_estimator_fn("care")
    if getattr(fn, "__qualname__", "") != "compute_care_advantage":
        raise PreflightError(f"'care' resolves to {fn!r}, not recipe_care's estimator")
    from verl.trainer.ppo import ray_trainer

    from recipe_care.patches import is_patched

    if not is_patched(ray_trainer):
        raise PreflightError("verl.trainer.ppo.ray_trainer was imported without recipe_care's patches")
    return f"plugin ok: verl {version}, 'care' registered, legacy-trainer patches installed"


def check_gpus(n: int) -> str:
    import torch

    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if found < n:
        raise PreflightError(
            f"{n} GPU(s) needed, {found} visible. This script trains on GPUs; without one, try "
            "`bash run_scripts/cpu_smoke.sh` (tiny model on CPU) or DRY_RUN=1 to only compose the config."
        )
    return f"gpus ok: {found} visible"


def check_data(paths: list[str]) -> str:
    import pyarrow.parquet as pq

    lines = []
    for path in paths:
        try:
            meta = pq.ParquetFile(path).metadata
        except FileNotFoundError as err:
            raise PreflightError(f"data file {path} does not exist: prepare it with `python -m data_prep.all --out DIR`") from err
        except Exception as err:
            raise PreflightError(f"data file {path} is not a readable parquet file: {err}") from err
        names = set(meta.schema.to_arrow_schema().names)  # top-level columns (schema.names lists leaves)
        missing = {"data_source", "prompt", "reward_model", "extra_info"} - names
        if missing:
            raise PreflightError(f"data file {path} lacks columns {sorted(missing)}: regenerate it with data_prep")
        lines.append(f"{path}: {meta.num_rows} rows")
    return "data ok: " + "; ".join(lines)


def check_reward(path: str, reward_module: str = "reward_fns") -> str:
    """Score the first row of ``path`` with its own ground truth as the answer: the verifier must say acc 1."""
    import pyarrow.parquet as pq

    row = pq.ParquetFile(path).read_row_group(0).slice(0, 1).to_pylist()[0]
    module = importlib.import_module(reward_module)
    gt = row["reward_model"]["ground_truth"]
    response = f"<think>check</think><answer>{gt}</answer>"
    out = module.compute_score(row["data_source"], response, gt, extra_info=row.get("extra_info"))
    acc = out["acc"] if isinstance(out, dict) else out
    if float(acc) != 1.0:
        raise PreflightError(f"the reward function scores the ground truth of {path} row 0 ({gt!r}) as {out!r}, not acc 1")
    return f"reward ok: {row['data_source']} row 0 verifies"


def run_checks(checks: list[tuple[str, Callable[[], str]]]) -> int:
    failed = 0
    for name, fn in checks:
        try:
            print(f"[preflight] {fn()}")
        except Exception as err:  # noqa: BLE001 - every failure is reported, then the exit status says it
            failed += 1
            print(f"[preflight] FAILED {name}: {err}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipe_care.preflight", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=0, help="fail unless at least this many CUDA GPUs are visible")
    parser.add_argument("--data", nargs="*", default=[], help="parquet files that must exist in verl's row schema")
    parser.add_argument("--reward-check", default=None, help="parquet file whose first row the verifier must accept")
    args = parser.parse_args(argv)
    checks: list[tuple[str, Callable[[], str]]] = [("plugin", check_plugin)]
    if args.gpus:
        checks.append(("gpus", lambda: check_gpus(args.gpus)))
    if args.data:
        checks.append(("data", lambda: check_data(args.data)))
    if args.reward_check:
        checks.append(("reward", lambda: check_reward(args.reward_check)))
    return run_checks(checks)


if __name__ == "__main__":
    sys.exit(main())
