"""RGR's pure logic (``recipe_care.rgr.core``) and the manager's setup checks, without a Ray cluster."""

import numpy as np
import pytest
import torch

from recipe_care.config import RgrConfig
from recipe_care.rgr.core import (
    StepStats,
    build_repair_context,
    fixed_context_tokens,
    is_empty_generation,
    positive_mask,
    repair_pieces,
    select_representatives,
    splice_rows,
    truncate_cue,
)
from recipe_care.spans import TagSpanParser

CUE = RgrConfig().cue


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("rgr_tiny")


@pytest.fixture(scope="module")
def tok(tiny_dir):
    from transformers import AutoTokenizer

    from recipe_care.smoke.tiny_models import build_tiny_qwen2

    return AutoTokenizer.from_pretrained(build_tiny_qwen2(tiny_dir / "qwen2"), local_files_only=True)


def decode(tok, ids):
    return tok.decode(ids, skip_special_tokens=False)


# ---------------------------------------------------------------------------------------------------------------------
# cue insertion, every tag variant
# ---------------------------------------------------------------------------------------------------------------------

VARIANTS = [
    # (failed response, expected repair context, variant)
    ("<think>a b</think>\n<answer>5</answer>", "<think>a b" + CUE + "</think>\n<answer>", "closed"),
    ("<think>a b</think><answer>5</answer> trailing", "<think>a b" + CUE + "</think><answer>", "closed"),
    ("<think>a b</think> so x is 5  ", "<think>a b" + CUE + "</think> so x is 5\n<answer>", "closed"),
    ("<think>a b</think>\n\n", "<think>a b" + CUE + "</think>\n<answer>", "closed"),
    ("Sure. <think>a</think><answer>1</answer>", "Sure. <think>a" + CUE + "</think><answer>", "closed"),
    # <answer> inside the rationale is not the cut point (the authors' string split would drop the cue here)
    ("<think>use <answer> later</think><answer>1</answer>", "<think>use <answer> later" + CUE + "</think><answer>",
     "closed"),
    # </think> missing: the cue goes at the end of the rationale, i.e. before <answer> when there is one
    ("<think>a b<answer>5</answer>", "<think>a b" + CUE + "<answer>", "unclosed"),
    ("<think>a b", "<think>a b" + CUE.rstrip() + "\n<answer>", "unclosed"),
    # no <think> at all: prefix <think>{cue}</think>\n, the failed text follows up to its <answer>
    ("x = 5 <answer>5</answer>", "<think>" + CUE + "</think>\nx = 5 <answer>", "no_think"),
    ("x = 5\n", "<think>" + CUE + "</think>\nx = 5\n<answer>", "no_think"),
    ("", "<think>" + CUE + "</think>\n<answer>", "no_think"),
]


@pytest.mark.parametrize("text,expected,variant", VARIANTS, ids=[repr(v[0])[:40] for v in VARIANTS])
def test_repair_context_for_every_tag_variant(tok, text, expected, variant):
    pieces, got_variant = repair_pieces(text, CUE)
    assert "".join(p.text for p in pieces) == expected
    assert got_variant == variant
    ctx = build_repair_context(tok, text, CUE, budget=10_000)
    assert decode(tok, ctx.ids) == expected == ctx.text
    assert ctx.cut_tokens == 0 and ctx.variant == variant
    assert ctx.text.endswith("<answer>") and ctx.text.count("<repair>") == 1


def test_cue_is_truncated_to_max_cue_tokens(tok):
    ids = tok.encode(CUE, add_special_tokens=False)
    assert 3 < len(ids) <= RgrConfig().max_cue_tokens, "the default cue fits the authors' 64-token cap"
    assert truncate_cue(tok, CUE, 64) == CUE
    assert truncate_cue(tok, CUE, 3) == tok.decode(ids[:3]) != CUE
    assert truncate_cue(tok, CUE, 0) == ""
    assert repair_pieces("<think>r</think><answer>1</answer>", "")[0][-1].text == "<answer>"


# ---------------------------------------------------------------------------------------------------------------------
# length rule
# ---------------------------------------------------------------------------------------------------------------------


def test_too_long_rationale_keeps_its_end(tok):
    rationale = " ".join(f"step {i} gives {i * 3}." for i in range(60))
    text = f"<think>{rationale}</think>\n<answer>7</answer>"
    full = build_repair_context(tok, text, CUE, budget=10_000)
    fixed = fixed_context_tokens(tok, CUE)
    budget = fixed + 25
    ctx = build_repair_context(tok, text, CUE, budget=budget)
    assert len(ctx.ids) == budget, "the context fills the budget exactly"
    assert ctx.cut_tokens == len(full.ids) - budget > 0
    kept = decode(tok, ctx.ids)
    assert kept.startswith("<think>") and kept.endswith(CUE + "</think>\n<answer>")
    kept_rationale = kept[len("<think>"): -len(CUE + "</think>\n<answer>")]
    assert kept_rationale and rationale.endswith(kept_rationale), "the END of the rationale stays"
    assert "step 59 gives 177." in kept_rationale and "step 0 " not in kept_rationale


def test_length_rule_cuts_text_before_think_first_then_the_rationale(tok):
    text = "preamble " * 20 + "<think>short reason</think><answer>1</answer>"
    fixed = len(tok.encode("<think>" + CUE + "</think><answer>", add_special_tokens=False))
    reason = len(tok.encode("short reason", add_special_tokens=False))
    ctx = build_repair_context(tok, text, CUE, budget=fixed + reason)
    assert decode(tok, ctx.ids) == "<think>short reason" + CUE + "</think><answer>"
    tight = build_repair_context(tok, text, CUE, budget=fixed + 1)
    assert len(tight.ids) == fixed + 1 and decode(tok, tight.ids).endswith(CUE + "</think><answer>")


def test_cut_never_starts_inside_a_multibyte_character(tok):
    text = "<think>" + "é≈" * 40 + "</think><answer>1</answer>"
    fixed = len(tok.encode("<think>" + CUE + "</think><answer>", add_special_tokens=False))
    for extra in range(1, 12):
        ctx = build_repair_context(tok, text, CUE, budget=fixed + extra)
        assert "\ufffd" not in decode(tok, ctx.ids)
        assert len(ctx.ids) <= fixed + extra


def test_fixed_part_over_budget_is_a_clear_error(tok):
    fixed = fixed_context_tokens(tok, CUE)
    for text in ("<think>a</think><answer>1</answer>", "<think>a", "no tags", ""):
        build_repair_context(tok, text, CUE, budget=fixed)  # the computed minimum always fits
    with pytest.raises(ValueError, match="exceeds the budget"):
        build_repair_context(tok, "no tags", CUE, budget=fixed - 1)


# ---------------------------------------------------------------------------------------------------------------------
# selection
# ---------------------------------------------------------------------------------------------------------------------


def encode_batch(tok, texts, width=64):
    n = len(texts)
    responses = torch.full((n, width), tok.pad_token_id, dtype=torch.long)
    valid = torch.zeros(n, width, dtype=torch.bool)
    for i, text in enumerate(texts):
        ids = tok.encode(text, add_special_tokens=False)[: width - 1] + [tok.eos_token_id]
        responses[i, : len(ids)] = torch.tensor(ids)
        valid[i, : len(ids)] = True
    return responses, valid


def test_selection_picks_the_failure_nearest_to_the_shortest_think_anchor(tok):
    rows = [
        ("a", 1, "<think>the angle sum of a triangle is 180 degrees so x = 50</think><answer>50</answer>"),
        ("b", 0, "<think>guess</think><answer>1</answer>"),
        ("a", 1, "<think>x = 50</think><answer>50</answer>"),  # shortest think → anchor of a
        ("a", 0, "<think>the perimeter of the square is 4 times</think><answer>16</answer>"),
        ("c", 1, "<think>ok</think><answer>2</answer>"),
        ("a", 0, "<think>x = 60</think><answer>60</answer>"),  # nearest to the anchor
        ("b", 0, "<think>other</think><answer>3</answer>"),
        ("a", 0, "no tags x = 60"),
        ("c", 1, "<think>fine</think><answer>2</answer>"),
        ("d", 0, "<think>x = 7</think><answer>7</answer>"),
        ("d", 1, "<think>x = 8</think><answer>8</answer>"),
    ]
    responses, valid = encode_batch(tok, [r[2] for r in rows])
    sel = select_representatives(
        np.array([r[0] for r in rows], dtype=object),
        positive_mask(np.array([r[1] for r in rows], dtype=np.float64), len(rows)),
        responses, valid, TagSpanParser(tok).parse(responses, valid),
    )
    assert sel.groups == 4
    assert list(zip(sel.anchors, sel.rows)) == [(2, 5), (10, 9)]  # groups in order of first appearance: a, d
    assert sel.skipped_no_positive == 1 and sel.skipped_no_failure == 1  # b, c


def test_selection_ties_go_to_shorter_answer_then_lower_row(tok):
    rows = [
        (1, "<think>x = 5</think><answer>5 5 5</answer>"),
        (1, "<think>x = 5</think><answer>5</answer>"),  # same think length, shorter answer → anchor
        (0, "<think>y = 2</think><answer>2</answer>"),
        (0, "<think>y = 2</think><answer>2</answer>"),  # identical to row 2 → tie → lower row (2)
        (1, "<think>x = 5</think><answer>5</answer>"),  # identical to the anchor, later row
    ]
    responses, valid = encode_batch(tok, [r[1] for r in rows])
    sel = select_representatives(np.array(["g"] * 5, dtype=object),
                                 positive_mask([r[0] for r in rows], 5), responses, valid,
                                 TagSpanParser(tok).parse(responses, valid))
    assert sel.anchors == [1] and sel.rows == [2]


def test_selection_never_anchors_on_empty_reasoning(tok):
    # the empty and the blank think spans count as the whole response, longer than "x = 5": row 2 is the anchor, and
    # the failure nearest to IT (row 4, same wording) is repaired, not the one nearest to an empty rationale (row 3)
    rows = [
        (1, "<think></think><answer>5</answer>"),
        (1, "<think>\n\n</think>\n<answer>5</answer>"),
        (1, "<think>x = 5</think><answer>5</answer>"),
        (0, "<think></think><answer>6</answer>"),
        (0, "<think>x = 6</think><answer>6</answer>"),
    ]
    responses, valid = encode_batch(tok, [r[1] for r in rows])
    sel = select_representatives(np.array(["g"] * 5, dtype=object),
                                 positive_mask([r[0] for r in rows], 5), responses, valid,
                                 TagSpanParser(tok).parse(responses, valid))
    assert sel.anchors == [2] and sel.rows == [4]


def test_rgr_and_the_estimator_agree_on_the_anchor():
    """RGR's representative is chosen against the estimator's anchor: one rule (``advantage.select_anchor``) for both,
    ties included (lengths drawn from {1, 2, 3} so many groups tie on think and answer length)."""
    from recipe_care.advantage import ROLE_ANCHOR, care_sequence_advantages, is_correct
    from recipe_care.config import CareConfig
    from recipe_care.spans import Spans, anchor_lengths

    g = torch.Generator().manual_seed(0)
    n, width = 96, 16
    uids = np.array([f"u{(i * 7) % 12}" for i in range(n)], dtype=object)  # 12 interleaved groups of 8
    acc = (torch.rand(n, generator=g) < 0.4).double()
    think_len = torch.randint(1, 4, (n,), generator=g)
    answer_len = torch.randint(1, 4, (n,), generator=g)
    col = torch.arange(width).unsqueeze(0)
    think = (col >= 1) & (col < 1 + think_len.unsqueeze(1))
    answer = (col >= 2 + think_len.unsqueeze(1)) & (col < 2 + (think_len + answer_len).unsqueeze(1))
    spans = Spans(think_mask=think, answer_mask=answer, think_len=think.sum(1), answer_len=answer.sum(1),
                  has_think=think.any(1), has_answer=answer.any(1))
    valid = torch.ones(n, width, dtype=torch.bool)
    responses = torch.randint(10, 50, (n, width), generator=g)
    sel = select_representatives(uids, is_correct(acc), responses, valid, spans)
    lengths = anchor_lengths(spans, valid.sum(1))
    result = care_sequence_advantages(acc=acc, rewards=acc, group_ids=uids, think_len=lengths[0],
                                      answer_len=lengths[1], embeddings=None, seq_logprob=None, config=CareConfig())
    estimator_anchors = sorted(torch.nonzero(result.role == ROLE_ANCHOR).reshape(-1).tolist())
    assert len(sel.anchors) >= 6 and sorted(sel.anchors) == estimator_anchors


def test_positive_mask_rejects_bad_acc():
    assert positive_mask([1.0, 0.0, 0.9999999, 0.5], 4).tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="must hold numbers"):
        positive_mask(np.array(["yes", "no"], dtype=object), 2)
    with pytest.raises(ValueError, match="non-finite"):
        positive_mask([1.0, float("nan")], 2)
    with pytest.raises(ValueError, match="2 entries for 3 rows"):
        positive_mask([1.0, 0.0], 3)


# ---------------------------------------------------------------------------------------------------------------------
# splice
# ---------------------------------------------------------------------------------------------------------------------


def _proto(n, seed, width=6, pred_len=1):
    from verl import DataProto

    g = torch.Generator().manual_seed(seed)
    mmi = np.empty(n, dtype=object)
    mmi[:] = [{"pixel_values": torch.full((2, 3), float(seed * 100 + i))} for i in range(n)]
    return DataProto.from_dict(
        tensors={
            "responses": torch.randint(0, 50, (n, width), generator=g),
            "response_mask": torch.randint(0, 2, (n, width), generator=g),
            "position_ids": torch.randint(0, 50, (n, 4, width + 3), generator=g),
            "rm_scores": torch.rand(n, width, generator=g),
        },
        non_tensors={
            "acc": np.arange(n, dtype=np.float64) + seed,
            "pred": np.array([str(seed) * pred_len] * n),
            "raw_prompt": np.array([f"prompt {seed}-{i}" for i in range(n)], dtype=object),
            "multi_modal_inputs": mmi,
        },
        meta_info={"reward_extra_keys": ["acc", "pred"], "timing": {"x": seed}},
    )


def test_splice_replaces_the_repaired_rows_in_place_and_nothing_else():
    main, rep = _proto(6, 1), _proto(2, 7, pred_len=9)
    out, report = splice_rows(main, rep, [4, 1])
    assert len(out) == 6 and out.meta_info is main.meta_info
    assert report.filled == [] and report.dropped == []
    src = {4: 0, 1: 1}
    for row in range(6):
        for key in main.batch.keys():
            want = rep.batch[key][src[row]] if row in src else main.batch[key][row]
            assert torch.equal(out.batch[key][row], want), (key, row)
        for key in ("acc", "pred", "raw_prompt"):
            want = rep.non_tensor_batch[key][src[row]] if row in src else main.non_tensor_batch[key][row]
            assert out.non_tensor_batch[key][row] == want, (key, row)
        mm = out.non_tensor_batch["multi_modal_inputs"][row]["pixel_values"]
        want = (rep if row in src else main).non_tensor_batch["multi_modal_inputs"][src.get(row, row)]["pixel_values"]
        assert torch.equal(mm, want)
    assert out.non_tensor_batch["pred"][4] == "7" * 9, "string columns widen instead of truncating"
    assert out.non_tensor_batch["acc"].dtype == np.float64


def test_splice_reports_columns_and_rejects_incompatible_outputs():
    main, rep = _proto(4, 1), _proto(1, 2)
    rep.non_tensor_batch.pop("pred")
    rep.non_tensor_batch["extra_col"] = np.array([1], dtype=object)
    rep.non_tensor_batch["rgr_status"] = np.array(["ok"], dtype=object)
    out, report = splice_rows(main, rep, [2])
    assert report.filled == ["pred"] and report.dropped == ["extra_col"]
    assert out.non_tensor_batch["pred"][2] is None and "extra_col" not in out.non_tensor_batch
    with pytest.raises(ValueError, match="lacks the tensor 'rm_scores'"):
        bad = _proto(1, 2)
        bad.batch.pop("rm_scores")
        splice_rows(main, bad, [0])
    with pytest.raises(ValueError, match="shape"):
        splice_rows(main, _proto(1, 2, width=5), [0])
    with pytest.raises(ValueError, match="distinct"):
        splice_rows(main, _proto(2, 2), [1, 1])
    with pytest.raises(ValueError, match="1 repair rows for 2"):
        splice_rows(main, _proto(1, 2), [0, 1])


def test_step_metrics():
    stats = StepStats(groups=5, triggered=4, passed=1, failed=2, repair_tokens=30, main_tokens=600)
    stats.skipped["empty"] = 1
    m = stats.metrics()
    assert m["rgr/pass_rate"] == 0.25 and m["rgr/extra_token_share"] == 0.05
    assert m["rgr/skipped_empty"] == 1.0 and m["rgr/skipped_gen_error"] == 0.0
    assert {"rgr/triggered", "rgr/passed", "rgr/failed", "rgr/repair_tokens", "rgr/skipped_no_positive",
            "rgr/skipped_no_failure", "rgr/skipped_reward_error"} <= set(m)
    assert StepStats().metrics()["rgr/pass_rate"] == 0.0


def test_empty_generation(tok):
    assert is_empty_generation(tok, [])
    assert is_empty_generation(tok, [tok.eos_token_id])
    assert is_empty_generation(tok, tok.encode(" \n ", add_special_tokens=False) + [tok.eos_token_id])
    assert not is_empty_generation(tok, tok.encode("5</answer>", add_special_tokens=False))


# ---------------------------------------------------------------------------------------------------------------------
# config and manager setup (no Ray cluster needed: workers start only in ``create``)
# ---------------------------------------------------------------------------------------------------------------------


def test_rgr_config_defaults_and_errors():
    cfg = RgrConfig()
    assert (cfg.enable, cfg.temperature, cfg.top_p, cfg.max_tokens, cfg.max_cue_tokens) == (False, 0.6, 0.95, 512, 64)
    assert RgrConfig.from_omegaconf(None) == cfg
    for bad, msg in [({"max_tokens": 0}, "max_tokens"), ({"top_p": 1.5}, "top_p"), ({"enable": "yes"}, "enable"),
                     ({"temperature": -1}, "temperature"), ({"max_cue_tokens": 1.5}, "max_cue_tokens"),
                     ({"s_refl": 0.1}, "unknown key")]:
        with pytest.raises(ValueError, match=msg):
            RgrConfig.from_omegaconf(bad)


@pytest.fixture(scope="module")
def tiny_vl(tiny_dir):
    from recipe_care.smoke.tiny_models import build_tiny_qwen25vl

    return build_tiny_qwen25vl(tiny_dir / "qwen25vl")


def test_manager_with_rgr_off_keeps_verls_worker_class(tiny_vl):
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker

    from recipe_care.rgr.manager import CareAgentLoopManager, CareAgentLoopWorker
    from recipe_care.test_doubles.rgr_doubles import compose_config

    off = CareAgentLoopManager(compose_config(tiny_vl, ["algorithm.rgr.enable=false"]), llm_client=None)
    assert off.agent_loop_workers_class.__ray_actor_class__ is AgentLoopWorker
    assert off.tokenizer is None
    on = CareAgentLoopManager(compose_config(tiny_vl), llm_client=None, reward_loop_worker_handles=[])
    assert on.agent_loop_workers_class.__ray_actor_class__ is CareAgentLoopWorker
    assert on.rgr_config.enable and on.context_budget == on.response_length - on.rgr_config.max_tokens


@pytest.mark.parametrize("overrides,handles,msg", [
    (["algorithm.adv_estimator=grpo"], [], "adv_estimator=care"),
    (["algorithm.rollout_correction.bypass_mode=true"], [],
     r"algorithm\.rgr\.enable=true cannot run with algorithm\.rollout_correction\.bypass_mode=True"),
    ([], None, "reward_loop_worker_handles"),
    (["skip.rollout.enable=true"], [], "skip"),
    (["algorithm.rgr.max_tokens=90"], [], "algorithm.rgr.max_tokens=90"),
    (["+algorithm.rgr.temprature=0.5"], [], "unknown key"),
])
def test_manager_setup_errors_are_clear(tiny_vl, overrides, handles, msg):
    from recipe_care.rgr.manager import CareAgentLoopManager
    from recipe_care.test_doubles.rgr_doubles import compose_config

    with pytest.raises(ValueError, match=msg):
        CareAgentLoopManager(compose_config(tiny_vl, overrides), llm_client=None, reward_loop_worker_handles=handles)
