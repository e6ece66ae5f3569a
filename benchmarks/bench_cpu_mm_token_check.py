"""Speed of one processor call (prompt + image) with the CPU backend's token-count check (patch 7) against
transformers' own, on one thread.

The call is the one verl's agent loop makes two to three times per request of the CPU learning run: the task's
chat-templated prompt and one 112 px image (16 image tokens), with the committed warm-started policy's processor
(``tests/fixtures/learn_policy/seed0``). Prints milliseconds per call and the ratio.

    python benchmarks/bench_cpu_mm_token_check.py [--calls 300]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "learn_policy" / "seed0"


def _ms_per_call(processor, text: str, image, calls: int) -> float:
    processor(text=[text], images=[image], return_tensors="pt")  # warm-up
    start = time.perf_counter()
    for _ in range(calls):
        processor(text=[text], images=[image], return_tensors="pt")
    return 1000 * (time.perf_counter() - start) / calls


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoProcessor
    from transformers.processing_utils import ProcessorMixin

    from recipe_care.patches import cpu_backend
    from recipe_care.learn_demo import learn_policy

    torch.set_num_threads(1)
    processor = AutoProcessor.from_pretrained(FIXTURE)
    item = learn_policy._warm_item(0, 0)
    text, image = learn_policy.prompt_text(processor, item.question), learn_policy.load_image(item.png)
    original = ProcessorMixin._check_special_mm_tokens
    theirs = _ms_per_call(processor, text, image, args.calls)
    cpu_backend.patch_mm_token_check()
    try:
        ours = _ms_per_call(processor, text, image, args.calls)
    finally:
        ProcessorMixin._check_special_mm_tokens = original
    print(f"processor call with one image: transformers' check {theirs:.2f} ms, patch 7 {ours:.2f} ms per call, "
          f"ratio {theirs / ours:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
