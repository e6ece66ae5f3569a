"""Agreement of ``compute_score(..., mode="official")`` with the verdicts the benchmarks' own pipelines published.

    python benchmarks/bench_official_agreement.py DATA_DIR [--list N] [--targets]

``DATA_DIR`` holds ``*.jsonl`` files of real model responses with the official verdict, one JSON object per line:
``benchmark`` (a ``reward_fns`` data source such as ``mathvista_testmini``), ``id``, ``model``, ``question_type``,
``answer_type``, ``question``, ``choices``, ``precision``, ``unit``, ``ground_truth``, ``response``,
``official_correct`` (bool) and, where the pipeline recorded them, ``official_extraction`` /
``official_prediction`` / ``official_notes``. Each row is scored with

    compute_score(benchmark, response, ground_truth,
                  {id, question_type, answer_type, choices or [], precision or -1, unit or "", question},
                  mode="official")

and ``acc`` is compared with ``official_correct``. Printed: agreement per benchmark (with the target where the
project set one), per model and per answer type; every disagreement, grouped by cause; the slowest single call
(thread CPU time; every call must stay under 1 s). Exit status 1 when a target is missed, a call raised, or a call
took 1 s or more.

Causes of a disagreement (from what our verifier returned and what the official pipeline recorded):

* ``no answer read``: we extracted nothing, the official pipeline did (or judged it right);
* ``different answer read``: both read an answer, and they differ (extraction or normalisation);
* ``same answer, different verdict``: our normalised prediction equals the official prediction, yet the verdicts
  differ (the comparison itself);
* ``official read nothing``: the official pipeline recorded no answer, we read one.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reward_fns import compute_score  # noqa: E402

# Agreement targets (issue 14).
TARGETS = {
    "mathvista_testmini": 0.92,
    "logicvista_test": 0.95,
    "mathvision_test": 0.97,
    "mathvision_testmini": 0.97,
    "mmmu_pro_standard10": 0.99,
    "mmmu_pro_vision": 0.99,
}
MAX_CALL_S = 1.0


def extra_info(row: dict) -> dict:
    return {
        "id": str(row.get("id") or ""),
        "question_type": row.get("question_type") or "",
        "answer_type": row.get("answer_type") or "",
        "choices": row.get("choices") or [],
        "precision": -1 if row.get("precision") is None else row["precision"],
        "unit": row.get("unit") or "",
        "question": row.get("question") or "",
    }


def _key(text) -> str:
    """Loose comparison key for predictions: lower case, no spaces/punctuation around, letters sorted for sets."""
    if text is None:
        return ""
    text = str(text).strip().lower()
    if re.fullmatch(r"[a-z](?:\s*,\s*[a-z])+|[a-z]", text):
        return ",".join(sorted(re.findall(r"[a-z]", text)))
    return re.sub(r"\s+", "", text).strip(".")


def official_answer(row: dict) -> str:
    """What the official pipeline read: its normalised prediction, else its extraction ('' / zzzzz = nothing)."""
    pred = row.get("official_prediction")
    if pred is None or pred == "":
        pred = row.get("official_extraction")
    if pred is None or str(pred).strip().lower() in ("", "zzzzz", "none"):
        return ""
    return str(pred)


def cause(row: dict, result: dict) -> str:
    theirs = official_answer(row)
    if not result["extracted"]:
        return "no answer read"
    if not theirs:
        return "official read nothing"
    if _key(result["pred"]) == _key(theirs):
        return "same answer, different verdict"
    return "different answer read"


def load(data_dir: Path) -> list[dict]:
    files = sorted(data_dir.glob("*.jsonl"))
    if not files:
        raise SystemExit(f"no *.jsonl files in {data_dir}; pass the folder that holds the agreement data")
    rows = []
    for path in files:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = [k for k in ("benchmark", "response", "ground_truth", "official_correct") if k not in row]
            if missing:
                raise SystemExit(f"{path.name}:{n} lacks {missing}; see this script's docstring for the schema")
            row["_where"] = f"{path.name}:{n}"
            rows.append(row)
    return rows


def _ratio(hits: int, total: int) -> str:
    return f"{hits / total:.3f} ({hits}/{total})" if total else "-"


def _snippet(text, width: int = 90) -> str:
    text = re.sub(r"\s+", " ", str(text if text is not None else "")).strip()
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path, help="folder with the *.jsonl agreement files")
    parser.add_argument("--list", type=int, default=1000, help="disagreements listed per cause (default: all)")
    args = parser.parse_args(argv)

    rows = load(args.data_dir)
    stats: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    misses: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    crashes, slowest = [], (0.0, None)
    for row in rows:
        bench = row["benchmark"]
        t0 = time.thread_time()
        try:
            result = compute_score(bench, row["response"], row["ground_truth"], extra_info(row), mode="official")
        except Exception as exc:  # noqa: BLE001 - reported, and fails the run
            crashes.append((row, repr(exc)))
            continue
        finally:
            dt = time.thread_time() - t0
            if dt > slowest[0]:
                slowest = (dt, row)
        agree = (result["acc"] == 1.0) == bool(row["official_correct"])
        for key in ((bench,), (bench, "model", row.get("model", "?")), (bench, "type", _atype(row))):
            stats[key][0] += agree
            stats[key][1] += 1
        if not agree:
            misses[bench][cause(row, result)].append((row, result))

    failed = bool(crashes)
    for bench in sorted({k[0] for k in stats}):
        hits, total = stats[(bench,)]
        target = TARGETS.get(bench)
        ok = target is None or hits / total >= target
        failed |= not ok
        mark = "" if target is None else f"   target ≥ {target:.2f}: {'met' if ok else 'NOT met'}"
        print(f"\n== {bench}: agreement {_ratio(hits, total)}{mark}")
        for kind, label in (("model", "per model"), ("type", "per answer type")):
            print(f"  {label}:")
            for key in sorted(k for k in stats if len(k) == 3 and k[0] == bench and k[1] == kind):
                print(f"    {key[2]:<34} {_ratio(*stats[key])}")
        by_cause = misses.get(bench, {})
        if by_cause:
            print("  disagreements by cause:")
        for why, items in sorted(by_cause.items(), key=lambda kv: -len(kv[1])):
            print(f"    {why}: {len(items)}")
            for row, result in items[: args.list]:
                print(
                    f"      id={row.get('id')} [{row.get('model')}] {_atype(row)}"
                    f" gt={_snippet(row['ground_truth'], 30)!r}"
                    f" official={'right' if row['official_correct'] else 'wrong'}"
                    f" (read {_snippet(official_answer(row), 30)!r}) ours={'right' if result['acc'] else 'wrong'}"
                    f" (read {_snippet(result['pred'], 30)!r})\n        response: {_snippet(row['response'])!r}"
                )
    for row, err in crashes:
        print(f"CRASH {row['_where']} id={row.get('id')}: {err}")
    dt, row = slowest
    where = f" ({row['benchmark']} id={row.get('id')}, {len(str(row['response']))} chars)" if row else ""
    print(f"\nslowest call: {dt * 1000:.1f} ms thread CPU{where}; limit {MAX_CALL_S:.0f} s")
    failed |= dt >= MAX_CALL_S
    print(f"{len(rows)} responses, {len(crashes)} crashes; {'all targets met' if not failed else 'FAILED'}")
    return 1 if failed else 0


def _atype(row: dict) -> str:
    qtype, atype = row.get("question_type") or "?", row.get("answer_type") or "?"
    if qtype == "multi_choice":
        gt = str(row.get("ground_truth", ""))
        return "multi_choice/" + ("letter set" if re.fullmatch(r"[A-Z](?:\s*,\s*[A-Z])+", gt.strip()) else atype)
    return f"{qtype}/{atype}"


if __name__ == "__main__":
    sys.exit(main())
