"""Time the per-step think/answer span parsing on the TaskRunner: three parses (before) against one (now).

    python benchmarks/bench_spans.py [--rows 4096] [--tokens 2048] [--group 8] [--repeat 1]

Before, each of three consumers decoded the whole rollout batch and searched its tags: RGR's choice of the failure to
repair (at rollout time), the hidden-state pooling mask (old-log-prob pass) and the ``care`` estimator. Now the first
of them parses once and stores the spans on the batch (``recipe_care.spans.batch_spans``), RGR parses only the rows
it repaired (one per group) before splicing them in, verl's ``balance_batch`` reorders the span keys with the rows,
and the later consumers read them back after checking each row's fingerprint (a stale copy is parsed again, never
used). Both sides are timed with the recipe's own functions on a
``--rows`` x ``--tokens`` batch of byte-level BPE ids (the tiny test tokenizer of ``recipe_care.smoke``; responses
of random length with a ``<think>`` span of math words, then an ``<answer>`` span). Prints seconds per step.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from tensordict import TensorDict

WORDS = ("let x be the side so the area is half base times height since the triangle is right we use pythagoras "
         "then 3 squared plus 4 squared equals 25 and the hypotenuse is 5 check the angle 90 degrees sum of angles "
         "180 therefore answer").split()


def make_batch(tokenizer, rows: int, tokens: int, seed: int = 0) -> TensorDict:
    """A rollout batch as verl's legacy trainer holds it (responses right-padded, the response part of the attention
    mask marks real tokens)."""
    rng = random.Random(seed)
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    bodies = [encode(" ".join(rng.choice(WORDS) for _ in range(tokens))) for _ in range(16)]
    think_open, think_close, answer_open, answer_close = (encode(t) for t in ("<think>", "</think>", "\n<answer>",
                                                                               "</answer>"))
    responses = torch.full((rows, tokens), tokenizer.pad_token_id, dtype=torch.long)
    valid = torch.zeros(rows, tokens, dtype=torch.long)
    for i in range(rows):
        answer = encode(str(rng.randint(1, 999)))
        room = tokens - len(think_open) - len(think_close) - len(answer_open) - len(answer) - len(answer_close) - 1
        think = rng.choice(bodies)[: rng.randint(room // 4, room)]
        ids = think_open + think + think_close + answer_open + answer + answer_close + [tokenizer.eos_token_id]
        responses[i, : len(ids)] = torch.tensor(ids)
        valid[i, : len(ids)] = 1
    prompt = torch.ones(rows, 8, dtype=torch.long)
    return TensorDict({"responses": responses, "attention_mask": torch.cat([prompt, valid], 1)}, batch_size=[rows])


def step_before(batch: TensorDict, parser) -> None:
    """Three consumers, each parsing the whole batch (the batch carried no spans)."""
    for _ in range(3):
        parser.parse(batch["responses"], batch["attention_mask"][:, -batch["responses"].shape[1]:].bool())


def step_now(batch: TensorDict, parser, group: int) -> TensorDict:
    """The same three consumers with the spans carried on the batch; returns the batch they saw last."""
    from recipe_care.spans import SPAN_KEYS, batch_spans

    rollout = batch.clone()
    batch_spans(rollout, parser)  # RGR's selection: parses, stores on the rollout output
    repaired_rows = torch.arange(0, len(rollout), group)  # one repaired row per group, with a new response
    repair = batch[(repaired_rows + 1) % len(batch)].clone()
    batch_spans(repair, parser)  # the repaired rows only, parsed before the splice
    for key in ("responses", "attention_mask", *SPAN_KEYS):  # the splice: in place, every key of the row
        rollout[key][repaired_rows] = repair[key]
    order = torch.randperm(len(rollout), generator=torch.Generator().manual_seed(0))
    rollout = rollout[order]  # verl's balance_batch reorders every key with its row
    batch_spans(rollout, parser)  # the hidden-state pooling mask: read back
    batch_spans(rollout, parser)  # the estimator: read back
    return rollout


def seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--group", type=int, default=8, help="rollouts per prompt (RGR repairs one per group)")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer

    from recipe_care.spans import TagSpanParser, batch_spans
    from recipe_care.smoke.tiny_models import build_tiny_qwen2

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = AutoTokenizer.from_pretrained(build_tiny_qwen2(Path(tmp) / "qwen2"))
    span_parser = TagSpanParser(tokenizer)
    batch = make_batch(tokenizer, args.rows, args.tokens)
    real = int(batch["attention_mask"].sum()) - 8 * args.rows
    print(f"batch: {args.rows} x {args.tokens} response tokens ({real / 1e6:.1f} M real), groups of {args.group}")

    # the carried spans are the spans a fresh parse of the spliced, reordered batch finds
    seen = step_now(batch, span_parser, args.group)
    carried = batch_spans(seen, None)
    fresh = span_parser.parse(seen["responses"], seen["attention_mask"][:, -args.tokens:].bool())
    assert all(torch.equal(getattr(carried, f), getattr(fresh, f)) for f in ("think_mask", "answer_mask", "has_think"))

    before_times, now_times = [], []
    for _ in range(args.repeat):  # alternated, so a load change on a shared machine hits both sides alike
        before_times.append(seconds(lambda: step_before(batch, span_parser)))
        now_times.append(seconds(lambda: step_now(batch, span_parser, args.group)))
    before, now = statistics.median(before_times), statistics.median(now_times)
    print(f"before (3 full parses per step):                 {before:8.2f} s")
    print(f"now (1 full parse + repaired rows, carried):      {now:8.2f} s")
    print(f"saved per step: {before - now:.2f} s ({before / now:.2f}x less time in span parsing)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
