"""Speed of the CPU backend's log-probs (patch 6) against verl 0.9.1's row loop, on one thread.

The size is one old-log-prob pass of the CPU learning run: 64 rows of about 165 real tokens, flattened (verl
concatenates the real tokens of a batch), over the task tokenizer's 510-token vocabulary. Prints seconds per forward +
backward and the ratio; the two agree to float rounding (``tests/test_cpu_backend.py`` checks values and gradients).

    python benchmarks/bench_cpu_logprobs.py [--tokens 10560] [--vocab 510] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time


def _seconds(fn, logits, labels, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        x = logits.detach().requires_grad_()
        start = time.perf_counter()
        fn(x, labels).sum().backward()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64 * 165)
    parser.add_argument("--vocab", type=int, default=510)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import torch
    from verl.utils.torch_functional import logprobs_from_logits_v2

    from recipe_care.patches.cpu_backend import logprobs_from_logits

    torch.set_num_threads(1)
    torch.manual_seed(0)
    logits = torch.randn(args.tokens, args.vocab)
    labels = torch.randint(0, args.vocab, (args.tokens,))
    verl_s = _seconds(logprobs_from_logits_v2, logits, labels, args.repeats)
    ours_s = _seconds(logprobs_from_logits, logits, labels, args.repeats)
    diff = (logprobs_from_logits(logits, labels) - logprobs_from_logits_v2(logits, labels)).abs().max().item()
    print(f"tokens={args.tokens} vocab={args.vocab}: verl row loop {verl_s:.3f} s, vectorized {ours_s:.4f} s "
          f"(forward + backward), ratio {verl_s / ours_s:.1f}x, max |difference| {diff:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
