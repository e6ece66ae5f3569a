"""Throughput of ``reward_fns.compute_score`` on a realistic mix, next to verl's built-in Geometry3K scorer.

    python benchmarks/bench_verifiers.py [--fixtures DIR] [--n 8] [--seed 0]

``--fixtures`` defaults to the benchmark fixtures the test suite uses (``tests/conftest.py``'s ``FIXTURES``).

The mix: every benchmark fixture record plus 60 Geometry3K-style items (answers shaped like the dataset's:
integers, decimals, ``\\frac { 4 } { 3 }``, ``2 \\sqrt { 221 }``), each with ``--n`` sampled responses like a GRPO
group: ~1-2 KB of reasoning, then the right answer in one of several forms, a wrong answer, the option text, two
boxes, an ``Answer:`` line, or no final answer. Single process, single thread (= one core); times are CPU time of
this process (``time.process_time``), so a busy machine does not distort them; wall time is printed too.

Reported:
  * mix, train mode: the first pass in a fresh process (sympy cold), then the steady state (median of
    ``--repeat`` passes, reward_fns' answer caches cleared before each; GRPO samples repeat answers within a pass);
  * mix, official mode (steady state);
  * mix with every cache cleared before each response (no repetition at all: the worst case);
  * Geometry3K responses only: reward_fns vs ``verl.utils.reward_score.geo3k.compute_score`` (mathruler), with their
    agreement on ``acc``;
  * the slowest single call and what it was.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reward_fns import compute_score, mathcheck

WORDS = ["the", "triangle", "angle", "side", "therefore", "we", "compute", "area", "using", "the", "formula", "so", "that", "it", "equals", "by", "symmetry", "hence", "let", "x", "be", "the", "length", "and", "note", "that", "the", "circle", "radius", "is", "given", "ratio", "of", "similar", "triangles", "implies"]
LATEX = ["$x^2 + y^2 = r^2$", "$\\frac{a}{b}$", "$\\sqrt{3}$", "$2\\pi r$", "$\\angle ABC = 60^\\circ$", "$AB = 12$"]


def reasoning(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(40, 250)):
        parts.append(rng.choice(LATEX) if rng.random() < 0.08 else rng.choice(WORDS))
    return " ".join(parts)


def geometry3k_items(rng: random.Random) -> list[tuple[str, list[str], list[str]]]:
    """(ground truth as published, right forms, wrong answers) — Geometry3K answer shapes."""
    items = []
    for _ in range(60):
        kind = rng.random()
        a, b = rng.randint(2, 30), rng.randint(2, 9)
        if kind < 0.45:
            gt, right = str(a * b), [str(a * b), f"{a * b}.0"]
        elif kind < 0.65:
            v = round(a + b / 10, 1)
            gt, right = str(v), [str(v)]
        elif kind < 0.82:
            gt, right = f"\\frac {{ {a * 2 + 1} }} {{ {b} }}", [f"\\frac{{{a * 2 + 1}}}{{{b}}}", f"{a * 2 + 1}/{b}"]
        else:
            gt, right = f"{b} \\sqrt {{ {a + 1} }}", [f"{b}\\sqrt{{{a + 1}}}", f"{b} \\sqrt{{{a + 1}}}"]
        wrong = [str(a * b + 1), str(round(a * 1.5, 2)), f"\\frac{{{a}}}{{{b + 1}}}", f"{b + 1}\\sqrt{{{a}}}"]
        items.append((gt, right, wrong))
    return items


def fixture_items(fixtures: Path) -> list[tuple[str, str, dict, list[str], list[str]]]:
    """(data_source, ground truth, extra_info, right answers, wrong answers) from the benchmark fixtures."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_reward_records import (  # the hand-written answer tables
        RIGHT,
        TEXT,
        WRONG,
        rows,
    )

    out = []
    for source, rid, gt, info in rows(fixtures):
        if source == "hiyouga/geometry3k":
            continue
        right = list(RIGHT[(source, rid)]) + ([TEXT[(source, rid)]] if (source, rid) in TEXT else [])
        out.append((source, gt, info, right, [WRONG[(source, rid)]]))
    return out


def respond(rng: random.Random, right: list[str], wrong: list[str]) -> str:
    think = reasoning(rng)
    r = rng.random()
    if r < 0.40:
        return f"<think>{think}</think>\n<answer>\\boxed{{{rng.choice(right)}}}</answer>"
    if r < 0.75:
        return f"<think>{think}</think>\n<answer>\\boxed{{{rng.choice(wrong)}}}</answer>"
    if r < 0.82:
        return f"<think>{think}</think>\n<answer>Answer: {rng.choice(right + wrong)}</answer>"
    if r < 0.88:
        return f"<think>{think}</think>\n<answer>\\boxed{{{rng.choice(wrong)}}} or \\boxed{{{rng.choice(right)}}}</answer>"
    if r < 0.94:
        return f"{think}\nSo the answer is \\boxed{{{rng.choice(right + wrong)}}}."
    return f"<think>{think}</think>\nI am not sure."  # no final answer


def build_mix(fixtures: Path, n: int, seed: int):
    rng = random.Random(seed)
    cases, g3k = [], []
    for gt, right, wrong in geometry3k_items(rng):
        for _ in range(n):
            case = ("hiyouga/geometry3k", respond(rng, right, wrong), gt, {})
            cases.append(case)
            g3k.append(case)
    for source, gt, info, right, wrong in fixture_items(fixtures):
        for _ in range(n):
            cases.append((source, respond(rng, right, wrong), gt, info))
    rng.shuffle(cases)
    return cases, g3k


def clear_caches() -> None:
    for fn in (mathcheck._symbolic_equal, mathcheck._parse_gold, mathcheck._parse_pred, mathcheck._mathruler_cached,
               mathcheck._numeric_value_cached):
        fn.cache_clear()


def run(cases, mode="train", clear=False, scorer=None):
    slowest = (0.0, None)
    accs = []
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for case in cases:
        if clear:
            clear_caches()
        t = time.thread_time()
        if scorer is None:
            source, response, gt, info = case
            result = compute_score(source, response, gt, info, mode=mode)
            accs.append(result["acc"])
        else:
            accs.append(scorer(case))
        dt = time.thread_time() - t
        if dt > slowest[0]:
            slowest = (dt, case)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"n": len(cases), "cpu_s": cpu, "wall_s": wall, "per_s_cpu": len(cases) / cpu, "slowest": slowest, "accs": accs}


def show(label: str, stats: dict) -> None:
    dt, case = stats["slowest"]
    print(
        f"{label:<46} {stats['n']:>6} responses  {stats['per_s_cpu']:>9.0f} responses/s per core (CPU)"
        f"  [{stats['n'] / stats['wall_s']:.0f}/s wall]  mean acc {sum(stats['accs']) / len(stats['accs']):.3f}"
    )
    if case is not None:
        source, response, gt = case[0], case[1], case[2]
        print(f"{'':<46} slowest {dt * 1000:.1f} ms: {source}, gt={gt!r}, answer …{response[-70:]!r}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import FIXTURES  # the test suite's fixture folder (one place decides where it is)

    parser.add_argument("--fixtures", type=Path, default=FIXTURES, help=f"benchmark fixtures (default: {FIXTURES})")
    parser.add_argument("--n", type=int, default=8, help="responses per item (GRPO group size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="passes per steady-state measurement (median shown)")
    args = parser.parse_args(argv)

    cases, g3k = build_mix(args.fixtures, args.n, args.seed)
    sources = sorted({c[0] for c in cases})
    print(f"mix: {len(cases)} responses over {len(sources)} data sources ({', '.join(sources)}); "
          f"mean response length {sum(len(c[1]) for c in cases) / len(cases):.0f} chars\n")

    clear_caches()
    show("reward_fns, train mode, first pass (cold process)", run(cases, "train"))

    def steady(label, cases_, mode="train", scorer=None):
        """Median of --repeat passes; the answer caches are cleared before each (sympy's own stay warm, as in a
        long training run). The CPU of a shared machine is noisy: the median is the number to quote."""
        passes = []
        for _ in range(args.repeat):
            clear_caches()
            passes.append(run(cases_, mode, scorer=scorer))
        passes.sort(key=lambda st: st["per_s_cpu"])
        median = passes[len(passes) // 2]
        show(f"{label} (median of {args.repeat})", median)
        return median

    train = steady("reward_fns, train mode", cases)
    steady("reward_fns, official mode", cases, "official")
    show("reward_fns, train mode, caches cleared per call", run(cases, "train", clear=True))

    from verl.utils.reward_score import geo3k

    print()
    ours = steady("Geometry3K: reward_fns (train)", g3k)
    theirs = steady(
        "Geometry3K: verl.utils.reward_score.geo3k", g3k, scorer=lambda c: float(geo3k.compute_score(c[1], c[2]) >= 0.9)
    )
    agree = sum(a == b for a, b in zip(ours["accs"], theirs["accs"])) / len(g3k)
    only_ours = sum(a > b for a, b in zip(ours["accs"], theirs["accs"]))
    only_theirs = sum(a < b for a, b in zip(ours["accs"], theirs["accs"]))
    print(f"{'':<46} acc agreement {agree:.3f} (right only for reward_fns: {only_ours}, only for geo3k: {only_theirs})")
    shown = 0
    for case, a, b in zip(g3k, ours["accs"], theirs["accs"]):
        if a != b and shown < 4:
            shown += 1
            print(f"{'':<46}   reward_fns {a:.0f} / geo3k {b:.0f}: gt={case[2]!r} …{case[1][-60:]!r}")
    ok = train["per_s_cpu"] >= 500
    print(f"\ntarget ≥ 500 responses/s per core on the mix: {'met' if ok else 'NOT met'} ({train['per_s_cpu']:.0f}/s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
