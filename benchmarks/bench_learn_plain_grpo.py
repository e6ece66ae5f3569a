"""Plain GRPO on the CPU learning task, outside verl: how much does one reward-irrelevant token slow it down?

    python benchmarks/bench_learn_plain_grpo.py --phrases 2 [--steps 120] [--seed 0] [--out DIR]
    python benchmarks/bench_learn_plain_grpo.py --phrases 1

The format warm start of ``recipe_care.learn_demo.learn_policy`` teaches ``<think>P</think><answer>L</answer>`` with
``P`` the one text of ``THINK_PHRASES``. An earlier version drew ``P`` from two phrases, so every sampled response
carried a coin flip that has nothing to do with the reward; GRPO gives each response's advantage to every token, so
that coin flip's log-probability gradient is noise of the same size as the answer letter's signal. This script
warm-starts the same policy with the shipped phrase alone (``--phrases 1``) or with :data:`SECOND_PHRASE` added
(``--phrases 2``, the earlier warm start), then runs a plain GRPO loop (8 prompts x 8 samples at T=1, group-normalized
reward 0.9 acc + 0.1 format, token-mean policy gradient on-policy, two AdamW steps of 32 rows per step, lr 3e-4, grad
clip 1: the optimisation settings of ``run_scripts/cpu_learn.sh``) and prints held-out greedy accuracy on 64 items
every 20 steps. It is a diagnosis for docs/cpu_learn.md, not part of the recipe.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


#: The second reasoning phrase of the earlier two-phrase warm start.
SECOND_PHRASE = "I look."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phrases", type=int, choices=(1, 2), required=True)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for the policies (default: a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from recipe_care.learn_demo import learn_policy as lp
    from recipe_care.learn_demo import shapes_task
    from reward_fns import compute_score

    if args.phrases == 2:
        lp.THINK_PHRASES = (SECOND_PHRASE, *lp.THINK_PHRASES)
    out = Path(args.out or tempfile.mkdtemp(prefix="plain-grpo-"))
    base = lp.build_base(out / f"base-{args.phrases}p", seed=args.seed)
    policy = lp.warm_start(base, out / f"policy-{args.phrases}p", seed=args.seed, log_every=0)

    torch.manual_seed(args.seed)
    processor = AutoProcessor.from_pretrained(policy)
    tok = processor.tokenizer
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(policy, dtype=torch.float32,
                                                               attn_implementation="eager")
    train, val = shapes_task.make_splits(args.seed, 8 * args.steps, 64)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.0)
    banned = [[i] for i in tok.all_special_ids if i != tok.eos_token_id]

    def generate(items, n, sample):
        enc = dict(lp.encode_prompts(processor, items))
        with torch.no_grad():
            out_ids = model.generate(**enc, do_sample=sample, temperature=1.0, top_p=1.0, max_new_tokens=24,
                                     num_return_sequences=n, eos_token_id=tok.eos_token_id,
                                     pad_token_id=tok.pad_token_id, bad_words_ids=banned)
        return enc, out_ids[:, enc["input_ids"].shape[1]:]

    def score(items, responses):
        out_rows = []
        for item, resp in zip(items, responses):
            info = shapes_task.to_row(item, args.seed)["extra_info"]
            s = compute_score(shapes_task.DATA_SOURCE, tok.decode(resp, skip_special_tokens=True), item.answer,
                              info, format_weight=0.1)
            out_rows.append((s["score"], s["acc"], s["format"]))
        return out_rows

    def validate():
        model.eval()
        accs = []
        for i in range(0, len(val), 32):
            items = val[i: i + 32]
            accs += [acc for _, acc, _ in score(items, generate(items, 1, False)[1])]
        return float(np.mean(accs))

    print(f"phrases={args.phrases} step 0 val_acc {validate():.3f}", flush=True)
    t0 = time.perf_counter()
    for step in range(args.steps):
        items = train[8 * step: 8 * step + 8]
        model.eval()
        enc, resp = generate(items, 8, True)
        scores = score([it for it in items for _ in range(8)], resp)
        reward = torch.tensor([s for s, _, _ in scores]).view(8, 8)
        adv = ((reward - reward.mean(1, keepdim=True)) / (reward.std(1, keepdim=True) + 1e-6)).view(-1)
        mask = torch.ones_like(resp)
        for i in range(len(resp)):
            eos = (resp[i] == tok.eos_token_id).nonzero()
            if len(eos):
                mask[i, int(eos[0, 0]) + 1:] = 0
        sizes = enc["image_grid_thw"].prod(-1).tolist()
        pixels = list(enc["pixel_values"].split(sizes))
        n_prompt = enc["input_ids"].shape[1]
        model.train()
        for rows in (list(range(0, 32)), list(range(32, 64))):
            prompts = [r // 8 for r in rows]
            logits = model(input_ids=torch.cat([enc["input_ids"][prompts], resp[rows]], 1),
                           attention_mask=torch.cat([enc["attention_mask"][prompts], mask[rows]], 1),
                           pixel_values=torch.cat([pixels[p] for p in prompts]),
                           image_grid_thw=enc["image_grid_thw"][prompts]).logits[:, n_prompt - 1: -1]
            logp = torch.log_softmax(logits.float(), -1).gather(-1, resp[rows].unsqueeze(-1)).squeeze(-1)
            loss = -(logp * adv[rows].unsqueeze(1) * mask[rows]).sum() / mask[rows].sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        if (step + 1) % 20 == 0:
            train_acc = np.mean([acc for _, acc, _ in scores])
            fmt = np.mean([f for _, _, f in scores])
            print(f"phrases={args.phrases} step {step + 1} val_acc {validate():.3f} train_acc {train_acc:.2f} "
                  f"format {fmt:.2f} ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
