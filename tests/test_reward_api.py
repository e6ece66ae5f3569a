"""reward_fns' public contract: dispatch, result keys/types, configuration and data errors, and the verl 0.9.1 wiring
(``reward.custom_reward_function.path=pkg://reward_fns``), including verl's own naive reward manager calling it from
its executor threads."""

from __future__ import annotations

import asyncio
import importlib

import numpy as np
import pytest

import reward_fns
from reward_fns import (
    DATA_SOURCES,
    RESULT_KEYS,
    RecordError,
    UnknownDataSourceError,
    compute_score,
)
from reward_fns.schema import DATA_SOURCES as SCHEMA_SOURCES
from reward_fns.schema import EXTRA_INFO_DEFAULTS, ExtraInfo, normalize_extra_info

OK = "<think>Count the sides.</think><answer>\\boxed{3}</answer>"

# One representative (ground truth, extra_info, right answer) per data source, used by the generic tests below.
SAMPLES = {
    "hiyouga/geometry3k": ("3", {}, "3"),
    "mathvista_testmini": ("3", {"question_type": "free_form", "answer_type": "integer"}, "3"),
    "mmmu_pro_standard10": ("C", {"choices": ["1", "2", "3", "4"]}, "C"),
    "mmmu_pro_vision": ("C", {"choices": ["1", "2", "3", "4"]}, "C"),
    "mathverse_testmini": ("3", {"question_type": "free-form"}, "3"),
    "mathvision_test": ("3", {"choices": []}, "3"),
    "mathvision_testmini": ("3", {"choices": []}, "3"),
    "wemath_testmini": ("C", {"choices": ["1", "2", "3", "No correct answer"]}, "C"),
    "logicvista_test": ("3", {}, "3"),
    "synthetic_shapes": ("C", {"choices": ["red", "green", "blue", "yellow"]}, "C"),
}


def test_data_sources_are_the_contract_keys():
    assert tuple(DATA_SOURCES) == SCHEMA_SOURCES == (
        "hiyouga/geometry3k",
        "mathvista_testmini",
        "mmmu_pro_standard10",
        "mmmu_pro_vision",
        "mathverse_testmini",
        "mathvision_test",
        "mathvision_testmini",
        "wemath_testmini",
        "logicvista_test",
        "synthetic_shapes",
    )
    assert set(SAMPLES) == set(DATA_SOURCES)
    assert all(callable(v) for v in DATA_SOURCES.values())
    # one registry: schema.VERIFIER_MODULES; both DATA_SOURCES are derived from it
    from reward_fns.schema import VERIFIER_MODULES

    assert tuple(VERIFIER_MODULES) == SCHEMA_SOURCES
    for source, module in VERIFIER_MODULES.items():
        assert DATA_SOURCES[source] is importlib.import_module(f"reward_fns.verifiers.{module}").verify
    with pytest.raises(TypeError):
        DATA_SOURCES["new"] = DATA_SOURCES["hiyouga/geometry3k"]  # read-only mapping


@pytest.mark.parametrize("source", list(SAMPLES))
@pytest.mark.parametrize("mode", ["train", "official"])
def test_same_keys_and_types_for_every_source_and_outcome(source, mode):
    gt, info, right_answer = SAMPLES[source]
    right_response = f"<think>Count the sides.</think><answer>\\boxed{{{right_answer}}}</answer>"
    for response in (right_response, "<think>x</think><answer>\\boxed{4}</answer>", "", None, "garbage }{"):
        result = compute_score(source, response, gt, info, mode=mode)
        assert tuple(result) == RESULT_KEYS == ("score", "acc", "format", "extracted", "pred")
        assert [type(result[k]) for k in RESULT_KEYS] == [float, float, float, float, str]
        assert result["acc"] in (0.0, 1.0) and result["format"] in (0.0, 1.0) and result["extracted"] in (0.0, 1.0)
    right = compute_score(source, right_response, gt, info, mode=mode)
    if source == "wemath_testmini" and mode == "official":
        # We-Math's official rule reads only the text after a case-sensitive 'Answer' (its prompt's template)
        assert (right["acc"], right["format"]) == (0.0, 1.0), right
        right = compute_score(source, f"<think>x</think>\n<Answer>: {right_answer}", gt, info, mode=mode)
        assert right["acc"] == 1.0, right
        return
    assert right["acc"] == 1.0 and right["format"] == 1.0, (source, mode, right)


def test_unknown_data_source_names_the_known_ones():
    with pytest.raises(UnknownDataSourceError) as err:
        compute_score("mathvista", OK, "3")
    message = str(err.value)
    assert "'mathvista'" in message
    for key in DATA_SOURCES:
        assert key in message
    assert isinstance(err.value, KeyError)
    with pytest.raises(UnknownDataSourceError):
        compute_score(None, OK, "3")


def test_score_is_acc_by_default_and_shaped_with_format_weight():
    wrong = "<think>x</think><answer>\\boxed{4}</answer>"
    bare = "The answer: \\boxed{3}"
    assert compute_score("hiyouga/geometry3k", wrong, "3")["score"] == 0.0
    assert compute_score("hiyouga/geometry3k", bare, "3")["score"] == 1.0
    assert compute_score("hiyouga/geometry3k", wrong, "3", format_weight=0.1)["score"] == pytest.approx(0.1)
    assert compute_score("hiyouga/geometry3k", bare, "3", format_weight=0.1)["score"] == pytest.approx(0.9)
    assert compute_score("hiyouga/geometry3k", OK, "3", format_weight=0.5)["score"] == pytest.approx(1.0)
    assert compute_score("hiyouga/geometry3k", OK, "3", format_weight=None)["score"] == 1.0
    for bad in (-0.1, 1.5, "a lot"):
        with pytest.raises(ValueError, match="format_weight"):
            compute_score("hiyouga/geometry3k", OK, "3", format_weight=bad)


def test_mode_is_checked_and_unknown_kwargs_ignored():
    with pytest.raises(ValueError, match="mode"):
        compute_score("hiyouga/geometry3k", OK, "3", mode="eval")
    result = compute_score(
        data_source="hiyouga/geometry3k",
        solution_str=OK,
        ground_truth="3",
        extra_info={"num_turns": 2, "rollout_reward_scores": {}, "split": "test", "index": 7},
        reward_router_address=None,
        reward_model_tokenizer=None,
    )
    assert result["acc"] == 1.0


def test_ground_truth_errors_name_the_record_and_the_fix():
    with pytest.raises(RecordError, match=r"id='v1_382'.*empty.*drop it"):
        compute_score("logicvista_test", OK, "", {"id": "v1_382"})
    with pytest.raises(RecordError, match=r"ground_truth.*NoneType"):
        compute_score("hiyouga/geometry3k", OK, None, {"id": "7"})
    with pytest.raises(RecordError, match=r"not one option letter"):
        compute_score("mmmu_pro_standard10", OK, "Paris", {"id": "q1", "choices": ["Paris", "Rome"]})
    with pytest.raises(RecordError, match=r"beyond its 2 choices"):
        compute_score("mmmu_pro_vision", OK, "D", {"id": "q2", "choices": ["x", "y"]})
    with pytest.raises(RecordError, match=r"MATH-Vision record id='19'"):
        compute_score("mathvision_test", OK, "24", {"id": "19", "choices": list("abcde")})
    with pytest.raises(RecordError, match="We-Math"):
        compute_score("wemath_testmini", OK, "A and B", {"id": "1|x"})
    assert issubclass(RecordError, ValueError)
    # numbers are accepted as ground truth (parquet may hold them as ints)
    assert compute_score("hiyouga/geometry3k", OK, 3)["acc"] == 1.0
    assert compute_score("hiyouga/geometry3k", OK, np.int64(3))["acc"] == 1.0


def test_extra_info_defaults_and_coercion():
    assert dict(EXTRA_INFO_DEFAULTS) == {
        "id": "",
        "question_type": "",
        "answer_type": "",
        "choices": [],
        "precision": -1,
        "unit": "",
        "question": "",
    }
    assert normalize_extra_info(None) == ExtraInfo()
    info = normalize_extra_info(
        {
            "id": 5,
            "question_type": "multi-choice",
            "answer_type": "Letter",
            "choices": np.array(["a", "b"], dtype=object),
            "precision": 2.0,
            "unit": None,
            "question": None,
            "num_turns": 3,
        },
        "x",
    )
    assert info == ExtraInfo(id="5", question_type="multi_choice", answer_type="letter", choices=("a", "b"), precision=2)
    assert normalize_extra_info({"precision": float("nan"), "choices": None}).precision == -1


@pytest.mark.parametrize(
    "bad, pattern",
    [
        ({"id": "q", "choices": "['a', 'b']"}, r"choices.*id='q'.*string.*literal_eval"),
        ({"id": "q", "choices": [["a", "b"]]}, r"choices.*list.*flatten"),
        ({"id": "q", "precision": 1.5}, r"precision.*id='q'"),
        ({"id": "q", "precision": "two"}, r"precision"),
        ({"id": "q", "question_type": "essay"}, r"question_type.*'essay'"),
        ({"id": "q", "unit": ["g"]}, r"unit.*string"),
    ],
)
def test_bad_extra_info_raises_a_clear_error(bad, pattern):
    with pytest.raises(ValueError, match=pattern):
        compute_score("mathvista_testmini", OK, "3", bad)
    with pytest.raises(ValueError, match="must be a dict"):
        compute_score("mathvista_testmini", OK, "3", ["not", "a", "dict"])


def test_verifier_bug_on_odd_output_is_logged_and_scored_zero(monkeypatch, caplog):
    def broken(response, gt, info, mode):
        raise ZeroDivisionError("boom")

    original = dict(reward_fns.DATA_SOURCES)
    original["hiyouga/geometry3k"] = broken
    monkeypatch.setattr(reward_fns, "DATA_SOURCES", original)
    with caplog.at_level("WARNING", logger="reward_fns"):
        result = compute_score("hiyouga/geometry3k", OK, "3", {"id": "g1"})
    assert result == {"score": 0.0, "acc": 0.0, "format": 1.0, "extracted": 0.0, "pred": ""}
    assert "id='g1'" in caplog.text and "boom" in caplog.text


# --- verl 0.9.1 wiring ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def verl_config():
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return compose(
            config_name="ppo_trainer",
            overrides=[
                "reward.custom_reward_function.path=pkg://reward_fns",
                "reward.custom_reward_function.name=compute_score",
                "+reward.custom_reward_function.reward_kwargs.format_weight=0.1",
            ],
        )


def test_verl_config_composes_and_loads_compute_score(verl_config):
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn

    assert OmegaConf.to_container(verl_config.reward.custom_reward_function) == {
        "path": "pkg://reward_fns",
        "name": "compute_score",
        "reward_kwargs": {"format_weight": 0.1},
    }
    fn = get_custom_reward_fn(verl_config)
    assert fn.func.__name__ == "_call_with_kwargs" and fn.args[0] is compute_score
    right = fn(data_source="hiyouga/geometry3k", solution_str=OK, ground_truth="3", extra_info={"num_turns": 2})
    wrong = fn(data_source="mathvista_testmini", solution_str=OK, ground_truth="4", extra_info={"answer_type": "integer"})
    assert right == {"score": 1.0, "acc": 1.0, "format": 1.0, "extracted": 1.0, "pred": "3"}
    assert wrong["score"] == pytest.approx(0.1) and wrong["acc"] == 0.0  # format_weight reached compute_score

    plain = OmegaConf.create(
        {"reward": {"custom_reward_function": {"path": "pkg://reward_fns", "name": "compute_score"}}}
    )
    assert get_custom_reward_fn(plain)(
        data_source="logicvista_test", solution_str="<think>x</think><answer>A, C</answer>", ground_truth="A, C"
    )["score"] == 1.0


class _ByteTokenizer:
    """Stand-in tokenizer for verl's reward manager: token ids are UTF-8 bytes."""

    @staticmethod
    def encode(text: str) -> list[int]:
        return list(text.encode("utf-8"))

    @staticmethod
    def decode(ids, skip_special_tokens=True) -> str:
        return bytes(int(i) for i in ids).decode("utf-8")


async def test_verl_naive_reward_manager_scores_through_its_thread_executor(verl_config):
    import torch
    from verl import DataProto
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    from verl.trainer.ppo.reward import get_custom_reward_fn

    rows = [
        ("hiyouga/geometry3k", "<think>a</think><answer>\\boxed{2\\sqrt{221}}</answer>", "2 \\sqrt { 221 }", {}),
        ("mathvista_testmini", "<think>a</think><answer>\\boxed{D}</answer>", "18", {"choices": ["9", "12", "18", "18"]}),
        ("mmmu_pro_standard10", "Answer: B", "B", {"choices": ["x", "y", "z"]}),
        ("logicvista_test", "<think>a</think><answer>\\boxed{A}</answer>", "A, C", {}),
    ]
    manager = NaiveRewardManager(config=verl_config, tokenizer=_ByteTokenizer(), compute_score=get_custom_reward_fn(verl_config))

    def item(source, response, gt, info):
        ids = _ByteTokenizer.encode(response)
        width = 96
        responses = torch.zeros((1, width), dtype=torch.long)
        responses[0, : len(ids)] = torch.tensor(ids)
        mask = torch.zeros((1, 4 + width), dtype=torch.long)
        mask[0, : 4 + len(ids)] = 1
        return DataProto.from_dict(
            tensors={"responses": responses, "attention_mask": mask},
            non_tensors={
                "data_source": np.array([source], dtype=object),
                "reward_model": np.array([{"style": "rule", "ground_truth": gt}], dtype=object),
                "extra_info": np.array([dict(info)], dtype=object),
            },
        )

    outs = await asyncio.gather(*(manager.run_single(item(*row)) for row in rows * 4))
    scores = [o["reward_score"] for o in outs]
    assert scores == [1.0, 1.0, 0.9, 0.1] * 4
    accs = [o["reward_extra_info"]["acc"] for o in outs]
    assert accs == [1.0, 1.0, 1.0, 0.0] * 4
    assert all(set(o["reward_extra_info"]) == set(RESULT_KEYS) for o in outs)


def test_mathvista_answer_must_be_one_of_the_choices():
    info = {"id": "781", "question_type": "multi_choice", "choices": ["9", "12", "18"]}
    with pytest.raises(RecordError, match=r"id='781'.*'C' is not one of its choices"):
        compute_score("mathvista_testmini", OK, "C", info)  # a letter where MathVista publishes the option text


def test_letter_range_follows_the_option_list():
    # We-Math 2steps_22: options ['E', 'I', 'C', 'No correct answer'] — 'E' is out of range (A-D), so it is
    # read as the option text 'E' (= option A), not as letter E.
    info = {"id": "2steps_22|2steps_1", "choices": ["E", "I", "C", "No correct answer"]}
    answer_e = compute_score("wemath_testmini", "<think>x</think><answer>E</answer>", "A", info)
    assert (answer_e["acc"], answer_e["pred"]) == (1.0, "A")
    mathverse = {"id": "x", "question_type": "multi_choice", "choices": ["1", "2", "3"]}
    assert compute_score("mathverse_testmini", "<think>x</think><answer>D</answer>", "A", mathverse)["acc"] == 0.0
