"""Time the CARE advantage against verl's ``grpo`` and ``grpo_vectorized`` on the same batch; print ratios.

    python benchmarks/bench_advantage.py [--rows 4096] [--tokens 2048] [--group 8] [--dim 3584] [--repeat 7]

CARE is timed end to end as the estimator's math runs in training: anchor + hard-negative selection (embeddings
given) + rescue + region-weighted token advantages (think/answer masks given). Target: CARE <= 1.5x grpo_vectorized.
Timings are medians of ``--repeat`` runs after one warm-up, on whatever threads torch uses here.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def make_batch(rows: int, tokens: int, group: int, dim: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(tokens // 8, tokens + 1, (rows,), generator=g)
    ar = torch.arange(tokens).unsqueeze(0)
    # dtypes as in training: verl's response_mask is int64 (a slice of attention_mask); recipe_care's span parser
    # returns bool think/answer masks
    response_mask = (ar < lengths.unsqueeze(1)).to(torch.int64)
    think_end = (lengths.float() * 0.8).long()
    think_mask = (ar >= 1) & (ar < think_end.unsqueeze(1)) & response_mask.bool()
    answer_mask = (ar >= think_end.unsqueeze(1) + 2) & (ar < lengths.unsqueeze(1) - 2)
    p_correct = torch.rand(rows // group, generator=g).repeat_interleave(group)
    acc = (torch.rand(rows, generator=g) < p_correct).float()
    scores = torch.zeros(rows, tokens)
    scores[torch.arange(rows), lengths - 1] = acc
    index = np.array([f"uid-{i // group}" for i in range(rows)], dtype=object)
    emb = torch.randn(rows, dim, generator=g)
    seq_logprob = -torch.rand(rows, generator=g) * lengths
    return dict(
        scores=scores, response_mask=response_mask, think_mask=think_mask, answer_mask=answer_mask, acc=acc,
        index=index, emb=emb, seq_logprob=seq_logprob, think_len=think_mask.sum(1), answer_len=answer_mask.sum(1),
    )


def timeit(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--dim", type=int, default=3584, help="embedding size (Qwen2.5-VL-7B hidden size)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from verl.trainer.ppo import core_algos

    from recipe_care.advantage import care_sequence_advantages, region_token_advantages
    from recipe_care.config import CareConfig

    b = make_batch(args.rows, args.tokens, args.group, args.dim)
    cfg = CareConfig()

    def grpo():
        return core_algos.compute_grpo_outcome_advantage(b["scores"], b["response_mask"], b["index"])

    def grpo_vec():
        return core_algos.compute_grpo_vectorized_outcome_advantage(b["scores"], b["response_mask"], b["index"])

    def care():
        rewards = b["scores"].sum(-1)
        res = care_sequence_advantages(
            acc=b["acc"], rewards=rewards, group_ids=b["index"], think_len=b["think_len"], answer_len=b["answer_len"],
            embeddings=b["emb"], seq_logprob=b["seq_logprob"], config=cfg,
        )
        return region_token_advantages(
            seq_advantages=res.seq_advantages, response_mask=b["response_mask"], think_mask=b["think_mask"],
            answer_mask=b["answer_mask"], acc=b["acc"], gamma_pos=cfg.gamma_pos,
            think_len=b["think_len"], answer_len=b["answer_len"],
        )

    def care_seq_only():
        return care_sequence_advantages(
            acc=b["acc"], rewards=b["scores"].sum(-1), group_ids=b["index"], think_len=b["think_len"],
            answer_len=b["answer_len"], embeddings=b["emb"], seq_logprob=b["seq_logprob"], config=cfg,
        )

    t = {
        "grpo": timeit(grpo, args.repeat),
        "grpo_vectorized": timeit(grpo_vec, args.repeat),
        "care (selection+rescue+region weights)": timeit(care, args.repeat),
        "care sequence advantages only": timeit(care_seq_only, args.repeat),
    }
    base = t["grpo_vectorized"]
    print(f"batch: {args.rows} rows x {args.tokens} tokens, G={args.group}, embeddings dim {args.dim}, "
          f"torch threads {torch.get_num_threads()}")
    for name, sec in t.items():
        print(f"{name:42s} {sec * 1e3:9.2f} ms   {sec / base:6.2f}x grpo_vectorized")
    ratio = t["care (selection+rescue+region weights)"] / base
    print(f"CARE / grpo_vectorized = {ratio:.2f} (target <= 1.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
