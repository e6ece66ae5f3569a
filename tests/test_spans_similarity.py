"""Think/answer token spans from token ids, and the hashed n-gram rationale similarity."""

import pytest
import torch

from recipe_care.ngram_profiles import ngram_embeddings
from recipe_care.spans import TagSpanParser, anchor_lengths, find_byte_spans


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from recipe_care.smoke.tiny_models import build_tiny_qwen2

    return AutoTokenizer.from_pretrained(build_tiny_qwen2(tmp_path_factory.mktemp("tiny") / "qwen2"))


@pytest.fixture(scope="module")
def merging_tokenizer():
    """A byte-level BPE without tag tokens, trained so that tags merge with neighbours (">\\n", "x<", …)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    words = ["ab", "cd", "ef", "gh", "ij", "x", "=", "reasoning", "unfinished", "∠ABC", "30°", "no", "tags"]
    corpus = [
        f"<think>\n{words[i % 13]}={i}</think>\n<answer>{i * 7}</answer>\n{words[(i * 5) % 13]}<think>{words[(i * 3) % 13]}"
        for i in range(300)
    ]
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<pad>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


def encode_batch(tokenizer, texts, pad_to=64):
    ids = torch.full((len(texts), pad_to), tokenizer.pad_token_id, dtype=torch.long)
    valid = torch.zeros(len(texts), pad_to, dtype=torch.bool)
    for i, t in enumerate(texts):
        x = tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids[i, : len(x)] = torch.tensor(x)
        valid[i, : len(x)] = True
    return ids, valid


def span_text(tokenizer, ids, mask):
    return tokenizer.decode(ids[mask].tolist(), skip_special_tokens=True)


def test_byte_spans_rules():
    assert find_byte_spans(b"<think>ab</think><answer>c</answer>") == (7, 9, 25, 26)
    assert find_byte_spans(b"no tags") == (-1, -1, -1, -1)
    # missing </think>: the think span runs to <answer>
    assert find_byte_spans(b"<think>ab<answer>c") == (7, 9, 17, 18)
    # unclosed answer runs to the end; an <answer> inside the think span is ignored
    assert find_byte_spans(b"<think>x <answer> y</think><answer>z") == (7, 19, 35, 36)


@pytest.mark.parametrize("which", ["tiny", "merging"])
def test_parser_finds_spans(which, tiny_tokenizer, merging_tokenizer):
    tok = tiny_tokenizer if which == "tiny" else merging_tokenizer
    texts = [
        "<think>\nx=2</think>\n<answer>4</answer>\n",
        "ab<think>cd</think>ef<answer>gh</answer>ij",
        "no tags at all",
        "<think>unfinished reasoning",
        "<think>∠ABC = 30°</think><answer>30°</answer>",
    ]
    ids, valid = encode_batch(tok, texts)
    spans = TagSpanParser(tok).parse(ids, valid)
    assert spans.has_think.tolist() == [True, True, False, True, True]
    assert spans.has_answer.tolist() == [True, True, False, False, True]
    # a token counts when it overlaps the span's content: merged tag fragments may ride along, content never drops
    for i, (think, answer) in enumerate([("\nx=2", "4"), ("cd", "gh"), (None, None), ("unfinished reasoning", None), ("∠ABC = 30°", "30°")]):
        if think is not None:
            got = span_text(tok, ids[i], spans.think_mask[i])
            assert think in got and "<answer>" not in got, (which, i, got)
        else:
            assert not spans.think_mask[i].any()
        if answer is not None:
            got = span_text(tok, ids[i], spans.answer_mask[i])
            assert answer in got and "<think>" not in got and (think is None or think not in got), (which, i, got)
    assert not (spans.think_mask & spans.answer_mask).any()
    assert not (spans.think_mask & ~valid).any()
    assert torch.equal(spans.think_len, spans.think_mask.sum(1))


@pytest.mark.parametrize("which", ["tiny", "merging"])
def test_empty_or_blank_reasoning_is_no_think_span(which, tiny_tokenizer, merging_tokenizer):
    tok = tiny_tokenizer if which == "tiny" else merging_tokenizer
    texts = [
        "<think></think><answer>4</answer>",
        "<think>\n\n</think>\n<answer>4</answer>",  # what Qwen3 emits with thinking off
        "<think> \t </think><answer>4</answer>",
        "<think>\n<answer>4</answer>",  # unclosed, cut at <answer>: blank
        "<think>ab</think><answer>4</answer>",
    ]
    ids, valid = encode_batch(tok, texts)
    spans = TagSpanParser(tok).parse(ids, valid)
    assert spans.has_think.tolist() == [False, False, False, False, True]
    assert not spans.think_mask[:4].any() and spans.has_answer.all()
    think_len, answer_len = anchor_lengths(spans, valid.sum(1))
    assert torch.equal(think_len[:4], valid.sum(1)[:4])  # missing reasoning ranks as the whole response
    assert 0 < think_len[4] == spans.think_len[4] < valid[4].sum()
    assert torch.equal(answer_len, spans.answer_len)


def test_anchor_lengths_fall_back_for_zero_token_spans():
    from recipe_care.spans import Spans

    zero = torch.zeros(3, 4, dtype=torch.bool)
    spans = Spans(think_mask=zero, answer_mask=zero, think_len=torch.tensor([0, 2, 0]),
                  answer_len=torch.tensor([1, 0, 0]), has_think=torch.tensor([True, True, False]),
                  has_answer=torch.tensor([True, True, False]))
    think, answer = anchor_lengths(spans, torch.tensor([9, 8, 7]))
    assert think.tolist() == [9, 2, 7] and answer.tolist() == [1, 8, 7]  # zero tokens → whole response, as authors


def test_parser_with_context_tokens_and_truncated_utf8(tiny_tokenizer):
    tok = tiny_tokenizer
    ids, valid = encode_batch(tok, ["<think>a</think><answer>b</answer>"])
    # a response cut inside a multi-byte character still maps bytes exactly (exact-bytes fallback)
    euro = tok("€", add_special_tokens=False)["input_ids"]
    cut = torch.tensor([tok("<think>ab", add_special_tokens=False)["input_ids"] + euro[:1]])
    spans = TagSpanParser(tok).parse(cut, torch.ones_like(cut, dtype=torch.bool))
    assert spans.has_think.item() and spans.think_len.item() >= 1
    assert TagSpanParser(tok).parse(ids, valid).answer_len.item() >= 1


def test_ngram_similarity_orders_by_shared_wording(tiny_tokenizer):
    tok = tiny_tokenizer
    texts = [
        "the angle ABC is 30 so x is 4",
        "the angle ABC is 30 so x is 5",  # near-duplicate
        "area of the circle is 12 times pi",  # different wording
    ]
    ids, valid = encode_batch(tok, texts)
    e = ngram_embeddings(ids, valid)
    assert torch.allclose(e.norm(dim=1), torch.ones(3))
    sim = e @ e.T
    assert sim[0, 1] > sim[0, 2] + 0.3
    # masked tokens do not count; an empty mask gives the zero vector
    e2 = ngram_embeddings(ids, torch.zeros_like(valid))
    assert (e2 == 0).all()
    # rows shorter than n fall back to unigrams
    short = ngram_embeddings(torch.tensor([[5, 6, 0]]), torch.tensor([[True, True, False]]), n=3)
    assert short.norm().item() == pytest.approx(1.0)


def test_spans_are_parsed_once_per_batch_and_travel_with_their_rows(tiny_tokenizer):
    """``batch_spans``: the first consumer of a step parses and stores the spans on the batch, later ones read them
    back (no second decode); the keys follow their rows through a reorder (what verl's ``balance_batch`` does) and a
    copy that no longer fits the responses is parsed afresh."""
    from tensordict import TensorDict

    from recipe_care.spans import SPAN_KEYS, batch_spans, spans_from_batch

    tok = tiny_tokenizer
    texts = ["<think>x = 5</think><answer>5</answer>", "no tags 7", "<think>\n\n</think><answer>3</answer>",
             "<think>unclosed reasoning<answer>9</answer>", "<think>a b c</think> then <answer>1"]
    responses, valid = encode_batch(tok, texts, pad_to=24)
    batch = TensorDict({"responses": responses,
                        "attention_mask": torch.cat([torch.ones(len(texts), 3, dtype=torch.long), valid.long()], 1)},
                       batch_size=[len(texts)])
    parser = TagSpanParser(tok)
    calls = []
    parse = parser.parse
    parser.parse = lambda *args: calls.append(args[0].shape) or parse(*args)
    expected = parse(responses, valid)

    def same(spans, reference):
        return all(torch.equal(getattr(spans, f), getattr(reference, f)) for f in
                   ("think_mask", "answer_mask", "think_len", "answer_len", "has_think", "has_answer"))

    assert spans_from_batch(batch) is None
    assert same(batch_spans(batch, parser), expected) and set(SPAN_KEYS) <= set(batch.keys())
    assert same(batch_spans(batch, parser), expected) and same(batch_spans(batch, None), expected)
    assert len(calls) == 1  # one decode, three readers
    order = torch.tensor([3, 0, 4, 1, 2])
    moved = batch[order]  # DataProto.reorder indexes the TensorDict the same way
    assert same(batch_spans(moved, None), parse(responses[order], valid[order])) and len(calls) == 1
    stale = TensorDict({"responses": responses[:, :20], "attention_mask": batch["attention_mask"][:, :23],
                        **{key: batch[key] for key in SPAN_KEYS}}, batch_size=[len(texts)])
    assert spans_from_batch(stale) is None  # masks of another width: parsed again
    assert batch_spans(stale, None) is None  # never used, even without a parser
    assert batch_spans(stale, parser).think_mask.shape == (len(texts), 20) and len(calls) == 2
    # a row whose response changed after the parse (same width): its fingerprint no longer matches, so only that row
    # is parsed again and the others are read back
    swapped = batch.clone()
    swapped["responses"][1], swapped["attention_mask"][1] = responses[0], batch["attention_mask"][0]
    assert spans_from_batch(swapped) is None and batch_spans(swapped, None) is None
    expected_swapped = parse(swapped["responses"], swapped["attention_mask"][:, 3:].bool())
    assert same(batch_spans(swapped, parser), expected_swapped) and calls[-1] == (1, 24) and len(calls) == 3
    assert same(spans_from_batch(swapped), expected_swapped) and bool(expected_swapped.has_think[1])


def test_spans_doctests():
    """The ``>>>`` example of ``response_fingerprint`` (what tells a stale span copy from a fitting one) runs."""
    import doctest

    import recipe_care.spans

    result = doctest.testmod(recipe_care.spans)
    assert result.attempted > 0 and result.failed == 0, result
