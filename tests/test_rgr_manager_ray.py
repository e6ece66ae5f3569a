"""RGR through verl's real AgentLoopManager / AgentLoopWorker / agent-loop / reward-loop code path on a local Ray.

The only doubles are ``recipe_care.test_doubles.rgr_doubles``: a scripted LLM server (deterministic: row ``i`` of the
batch gets ``MAIN[i]``, the repair of row ``i`` gets the step's repair script) that is also verl's
``RewardLoopWorker`` with the scripted verifier (``acc = 1`` iff the last ``<answer>`` equals the ground truth), and
a client that routes verl's ``LLMServerClient`` straight to it. Tokenizer, processor and config come from the locally
built tiny Qwen2.5-VL; every prompt carries an image. One module-scoped cluster (2 agent-loop workers) serves all tests.

Batch: 5 groups x 4 rollouts.
  g0 (rows 0-3, truth 50): anchor row 1, nearest failure row 2 (think span)   -> repair "50"  passes
  g1 (rows 4-7, truth 6):  anchor row 4, nearest failure row 6                -> repair "12"  fails
  g2 (rows 8-11): all correct -> skipped_no_failure;  g3 (rows 12-15): all wrong -> skipped_no_positive
  g4 (rows 16-19, truth 4): only failure row 17 has no tags (variant no_think) -> repair "4"  passes
3 repairs on 2 workers -> the one repair call carries 4 rows (1 padding row that never reaches the server).
"""

import os
import time

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.ray

GROUPS = [("50", "teal"), ("6", "orange"), ("B", "navy"), ("9", "olive"), ("4", "maroon")]
MAIN = [
    "<think>x = 180 - 60 - 70 = 50</think><answer>50</answer>",
    "<think>x = 50</think><answer>50</answer>",
    "<think>x = 60</think><answer>60</answer>",
    "<think>the perimeter of the square is 4 times the side</think><answer>16</answer>",
    "<think>3 * 4 / 2 = 6</think><answer>6</answer>",
    "<think>the radius of the circle is r</think><answer>2</answer>",
    "<think>3 * 4 / 2 = 12</think><answer>12</answer>",
    "<think>guess</think><answer>1</answer>",
    "<think>ok</think><answer>B</answer>",
    "<think>fine</think><answer>B</answer>",
    "<think>B it is</think><answer>B</answer>",
    "<think>the answer is (B)</think><answer>B</answer>",
    "<think>x = 1</think><answer>1</answer>",
    "<think>x = 2</think><answer>2</answer>",
    "<think>x = 3</think><answer>3</answer>",
    "<think>x = 5</think><answer>5</answer>",
    "<think>2 + 2 = 4</think><answer>4</answer>",
    "2 + 2 = 5",
    "<think>2 + 2 = 4</think><answer>4</answer>",
    "<think>two plus two is 4</think><answer>4</answer>",
]
REPAIRED = {2: True, 6: False, 17: True}  # row -> the repair passes
CONTEXT = {
    2: "<think>x = 60{cue}</think><answer>",
    6: "<think>3 * 4 / 2 = 12{cue}</think><answer>",
    17: "<think>{cue}</think>\n2 + 2 = 5\n<answer>",
}


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    import ray

    from verl import DataProto
    from verl.experimental.agent_loop.agent_loop import AgentLoopManager

    from recipe_care.rgr.manager import CareAgentLoopManager
    from recipe_care.test_doubles.rgr_doubles import DirectServerClient, ScriptedRolloutServer, compose_config
    from recipe_care.smoke.tiny_models import build_tiny_qwen25vl

    model = build_tiny_qwen25vl(tmp_path_factory.mktemp("rgr_ray") / "qwen25vl")
    cfg = compose_config(model)
    env = {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    os.environ.update(env)
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env})
    try:
        server = ray.remote(ScriptedRolloutServer).options(num_cpus=0).remote(cfg)
        ray.get(server.ready.remote())
        manager = CareAgentLoopManager.create(
            config=cfg, llm_client=DirectServerClient(cfg, server), reward_loop_worker_handles=[server]
        )
        ray.get(server.set_script.remote(dict(enumerate(MAIN)), {}))
        reference = AgentLoopManager.generate_sequences(manager, make_prompts(DataProto))  # verl alone
        yield {"cfg": cfg, "server": server, "manager": manager, "reference": reference, "DataProto": DataProto,
               "tok": manager.tokenizer, "cue": manager.cue}
    finally:
        ray.shutdown()


def make_prompts(DataProto, validate=False):
    from PIL import Image

    n = len(MAIN)
    raw, uid, truth, source, extra, index = (np.empty(n, dtype=object) for _ in range(6))
    for g, (answer, colour) in enumerate(GROUPS):
        messages = [{"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (40, 32), colour)},
                                                 {"type": "text", "text": f"What is x in figure {g}?"}]}]
        for r in range(4 * g, 4 * g + 4):  # the rows of a group share one message list, as verl's repeat() does
            raw[r], uid[r], truth[r] = messages, f"uid-{g}", {"ground_truth": answer, "style": "rule"}
            source[r], extra[r], index[r] = "scripted", {"index": g}, g
    meta = {"global_steps": 1, "validate": validate}
    return DataProto.from_dict(
        tensors={"dummy_tensor": torch.zeros(n, 1, dtype=torch.uint8)},
        non_tensors={"raw_prompt": raw, "uid": uid, "reward_model": truth, "data_source": source,
                     "extra_info": extra, "index": index},
        meta_info=meta,
    )


def run_step(rig, repair_script, validate=False):
    """One manager call with ``repair_script``; returns (output, sizes of verl's generate calls, server calls,
    queued metrics, prompts)."""
    import ray

    from verl.experimental.agent_loop.agent_loop import AgentLoopManager

    from recipe_care.step_context import pop_step_metrics

    ray.get(rig["server"].set_script.remote(dict(enumerate(MAIN)), repair_script))
    sizes = []
    original = AgentLoopManager.generate_sequences

    async def spy(self, prompts):  # counts every call of verl's manager, the repair call included
        sizes.append(len(prompts))
        return await original(self, prompts)

    pop_step_metrics()
    prompts = make_prompts(rig["DataProto"], validate=validate)
    AgentLoopManager.generate_sequences = spy
    try:
        out = rig["manager"].generate_sequences(prompts)
    finally:
        AgentLoopManager.generate_sequences = original
    return out, sizes, ray.get(rig["server"].get_calls.remote()), pop_step_metrics(), prompts


def wait_for_calls(rig, request_ids: set[str], timeout_s: float = 60.0) -> None:
    """Block until the scripted server has received every request in ``request_ids``."""
    import ray

    deadline = time.monotonic() + timeout_s
    while True:
        seen = {c["request_id"] for c in ray.get(rig["server"].get_calls.remote())}
        if request_ids <= seen:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"requests {sorted(request_ids - seen)} never reached the server")
        time.sleep(0.1)


REPAIRS = {2: "50</answer>", 6: "12</answer>", 17: "4</answer>"}


@pytest.fixture(scope="module")
def main_step(rig):
    return run_step(rig, REPAIRS)


def assert_rows_equal(a, b, rows, skip=("rgr_row", "rgr_failed")):
    for key in b.batch.keys():
        assert torch.equal(a.batch[key][rows], b.batch[key][rows]), key
    for key, col in b.non_tensor_batch.items():
        if key in skip:
            continue
        for r in rows:
            x, y = a.non_tensor_batch[key][r], col[r]
            if isinstance(y, dict) and y and all(isinstance(v, torch.Tensor) for v in y.values()):
                assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in y), (key, r)
            else:
                assert x == y or (x is None and y is None), (key, r, x, y)


def text_of(tok, out, row):
    resp = out.batch["responses"][row]
    valid = out.batch["attention_mask"][row, -resp.shape[0]:].bool()
    return tok.decode(resp[valid].tolist(), skip_special_tokens=False)


@pytest.mark.timeout(300)
def test_training_step_repairs_in_place_with_one_batched_call(rig, main_step):
    tok, cue, ref, repairs = rig["tok"], rig["cue"], rig["reference"], REPAIRS
    out, sizes, calls, metrics, prompts = main_step

    # exactly one verl generate call for the main rollout and ONE for all repairs, padded to the 2 workers
    assert sizes == [20, 4]
    main_calls = [c for c in calls if not c["request_id"].startswith("det-rgr-")]
    rep_calls = {int(c["request_id"][len("det-rgr-"):]): c for c in calls if c["request_id"].startswith("det-rgr-")}
    assert len(main_calls) == 20 and sorted(rep_calls) == [2, 6, 17], "padding rows never reach the engine"

    # metrics of the step
    assert metrics["rgr/groups"] == 5 and metrics["rgr/triggered"] == 3
    assert (metrics["rgr/passed"], metrics["rgr/failed"]) == (2, 1) and metrics["rgr/pass_rate"] == pytest.approx(2 / 3)
    assert metrics["rgr/skipped_no_failure"] == 1 and metrics["rgr/skipped_no_positive"] == 1
    assert metrics["rgr/skipped_gen_error"] == metrics["rgr/skipped_empty"] == metrics["rgr/skipped_reward_error"] == 0
    new_tokens = sum(len(tok.encode(t, add_special_tokens=False)) + 1 for t in repairs.values())
    assert metrics["rgr/repair_tokens"] == new_tokens and metrics["rgr/pad_rows"] == 1
    assert metrics["rgr/cut_contexts"] == 0
    assert metrics["rgr/extra_token_share"] == pytest.approx(new_tokens / float(ref.batch["response_mask"].sum()))

    # untouched rows: identical to verl's own output, every tensor and column
    others = [r for r in range(20) if r not in REPAIRED]
    assert len(out) == 20 and set(out.non_tensor_batch) == set(ref.non_tensor_batch) | {"rgr_row", "rgr_failed"}
    assert_rows_equal(out, ref, others)
    assert out.non_tensor_batch["rgr_row"].tolist() == [float(r in REPAIRED) for r in range(20)]
    assert out.non_tensor_batch["rgr_failed"].tolist() == [float(r == 6) for r in range(20)]
    for r in range(0, 20, 4):  # the shared prompt messages were not mutated
        assert prompts.non_tensor_batch["raw_prompt"][r][0]["content"][1]["text"] == f"What is x in figure {r // 4}?"

    for row, passed in REPAIRED.items():
        context = CONTEXT[row].format(cue=cue)
        call = rep_calls[row]
        # the repair request: original prompt + context, the prompt's image, the repair sampling parameters
        main_prompt = [c for c in main_calls if c["request_id"] == f"det-{row}"][0]["prompt_ids"]
        prefix = call["prompt_ids"][len(main_prompt):]
        assert call["prompt_ids"][: len(main_prompt)] == main_prompt
        assert tok.decode(prefix) == context
        assert call["images"] == 1
        params = call["sampling_params"]
        assert (params["temperature"], params["top_p"]) == (0.6, 0.95)
        assert params["max_tokens"] == min(16, 96 - len(prefix))
        # the spliced row: original prompt, response = context (mask 0) + new answer (mask 1), scored in full
        assert torch.equal(out.batch["prompts"][row], ref.batch["prompts"][row])
        assert text_of(tok, out, row) == context + repairs[row] + tok.eos_token
        mask = out.batch["response_mask"][row]
        n_new = len(tok.encode(repairs[row], add_special_tokens=False)) + 1
        assert mask[: len(prefix)].sum() == 0 and mask[len(prefix): len(prefix) + n_new].all()
        assert mask.sum() == n_new
        assert out.batch["rollout_log_probs"][row][: len(prefix)].abs().sum() == 0
        assert out.non_tensor_batch["acc"][row] == float(passed) == out.batch["rm_scores"][row].sum()
        assert out.non_tensor_batch["saw_cue"][row] == 1.0, "the verifier saw the full reconstructed response"
        assert out.non_tensor_batch["pred"][row] == repairs[row].split("<")[0]
        # the image is preserved: same vision inputs as the original row, M-RoPE positions for the full sequence
        mm, mm_ref = out.non_tensor_batch["multi_modal_inputs"][row], ref.non_tensor_batch["multi_modal_inputs"][row]
        assert torch.equal(mm["pixel_values"], mm_ref["pixel_values"])
        assert torch.equal(mm["image_grid_thw"], mm_ref["image_grid_thw"])
        assert out.batch["position_ids"][row].shape == ref.batch["position_ids"][row].shape
        assert out.non_tensor_batch["raw_prompt"][row] == ref.non_tensor_batch["raw_prompt"][row]
    assert [c["images"] for c in main_calls] == [1] * 20

    # the spans parsed for the selection travel on the output; the repaired rows carry the spans of their new
    # responses (equal to a fresh parse of the spliced batch), so the pooling mask and the estimator parse nothing
    from recipe_care.spans import SPAN_KEYS, TagSpanParser, response_valid_mask, spans_from_batch

    carried = spans_from_batch(out.batch)
    fresh = TagSpanParser(tok).parse(out.batch["responses"], response_valid_mask(out.batch))
    assert carried is not None and set(SPAN_KEYS) <= set(out.batch.keys())
    for name in ("think_mask", "answer_mask", "has_think", "has_answer"):
        assert torch.equal(getattr(carried, name), getattr(fresh, name)), name
    assert carried.has_answer[list(REPAIRED)].all()  # the new answers of the repaired rows


@pytest.mark.timeout(120)
def test_advantage_of_repaired_rows_end_to_end(rig, main_step):
    """The manager's output through verl's compute_advantage with the care estimator."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo import ray_trainer

    from recipe_care.config import CareConfig
    from recipe_care.step_context import set_tokenizer

    out, prompts = main_step[0], main_step[4]
    data = out.select_idxs(np.arange(len(out)))
    data.non_tensor_batch["uid"] = prompts.non_tensor_batch["uid"]
    data.batch["token_level_scores"] = data.batch["rm_scores"].clone()  # as fit() sets them (the z-score reads them)
    data.batch["token_level_rewards"] = data.batch["rm_scores"].clone()
    set_tokenizer(rig["tok"])
    algorithm = OmegaConf.create({"adv_estimator": "care", "care": {}})
    from recipe_care.step_context import CONTEXT

    parser = CONTEXT.span_parser()
    parser.parse = lambda *args: pytest.fail("the estimator parsed the spans again")  # RGR's spans are carried
    try:
        data = ray_trainer.compute_advantage(data, "care", config=algorithm)
    finally:
        del parser.parse
    adv = data.batch["advantages"]
    mask = data.batch["response_mask"].bool()
    seq = (adv * mask).sum(-1)
    assert adv[~mask].abs().sum() == 0, "context tokens (response_mask 0) get no advantage"
    # g0: the passing repair (row 2) is a positive of the subgroup {anchor 1, 2, 3}: rewards (1, 1, 0)
    assert seq[2] > 0 and seq[2] == pytest.approx(seq[1]) and seq[3] < 0 and seq[0] == 0
    # g1: the failing repair (row 6) keeps a negative advantage scaled by s_refl = s/2 instead of s
    s = CareConfig().s
    assert seq[5] < 0 and seq[7] < 0 and seq[6] < 0
    assert seq[6] == pytest.approx(seq[5] * CareConfig().s_refl / s)
    assert seq[6] == pytest.approx(seq[7] * 0.5)


@pytest.mark.timeout(120)
def test_validation_batches_are_never_repaired(rig):
    out, sizes, calls, metrics, _ = run_step(rig, {2: "50</answer>"}, validate=True)
    assert sizes == [20] and not any(c["request_id"].startswith("det-rgr-") for c in calls)
    assert metrics == {}
    assert out.non_tensor_batch["rgr_row"].sum() == 0 and out.non_tensor_batch["rgr_failed"].sum() == 0
    assert out.non_tensor_batch["rgr_row"].dtype == np.float64


@pytest.mark.timeout(180)
def test_fault_paths_keep_the_original_rows(rig):
    from recipe_care.test_doubles.rgr_doubles import RAISE, RAISE_REWARD

    ref = rig["reference"]
    # a failed generation (row 2) and an empty one (row 6) are skipped; the good repair (row 17) is spliced
    out, sizes, calls, metrics, _ = run_step(rig, {2: RAISE, 6: "  ", 17: "4</answer>"})
    assert sizes == [20, 4]
    assert metrics["rgr/triggered"] == 3 and metrics["rgr/skipped_gen_error"] == 1 and metrics["rgr/skipped_empty"] == 1
    assert metrics["rgr/passed"] == 1 and metrics["rgr/failed"] == 0 and metrics["rgr/pass_rate"] == pytest.approx(1 / 3)
    assert out.non_tensor_batch["rgr_row"].tolist() == [float(r == 17) for r in range(20)]
    assert_rows_equal(out, ref, [r for r in range(20) if r != 17])

    # an error in the reward of one repair fails verl's repair call: every repair of the step is dropped
    out, sizes, _, metrics, _ = run_step(rig, {2: RAISE_REWARD, 6: "6</answer>", 17: "4</answer>"})
    assert sizes == [20, 4] and metrics["rgr/skipped_reward_error"] == 3 and metrics["rgr/passed"] == 0
    assert out.non_tensor_batch["rgr_row"].sum() == 0 and len(out) == 20
    assert_rows_equal(out, ref, list(range(20)))
    # verl's call raised at row 2's reward while the other repairs were still running in the agent-loop workers (verl
    # does not cancel them): wait until they have reached the server, or the next test's record catches one (seen
    # once in CI: a late det-rgr-17 in test_rgr_off_is_verls_rollout_plus_zero_columns)
    wait_for_calls(rig, {"det-rgr-2", "det-rgr-6", "det-rgr-17"})


@pytest.mark.timeout(120)
def test_rgr_off_is_verls_rollout_plus_zero_columns(rig):
    from recipe_care.config import RgrConfig

    manager = rig["manager"]
    saved = manager.rgr_config
    manager.rgr_config = RgrConfig(enable=False)
    try:
        out, sizes, calls, metrics, _ = run_step(rig, {2: "50</answer>"})
    finally:
        manager.rgr_config = saved
    assert sizes == [20] and len(calls) == 20 and metrics == {}
    assert set(out.non_tensor_batch) == set(rig["reference"].non_tensor_batch) | {"rgr_row", "rgr_failed"}
    assert_rows_equal(out, rig["reference"], list(range(20)))
    assert out.non_tensor_batch["rgr_row"].sum() == 0
