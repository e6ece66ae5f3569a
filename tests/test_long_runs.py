"""recipe_care.patches.long_runs (issue 23), on CPU in seconds: the metrics file of a resumed run keeps its history,
a step's checkpoint is written after its metrics record, the dataloader gives a resumed run the uninterrupted run's
batches, and the no-padding conversion keeps Qwen-VL's 3-D position ids ragged along the tokens for any batch.

Each patch's test also runs verl's original (``__wrapped__``) and asserts that the bug it works around is still there:
when a verl upgrade fixes it, that assertion fails and the patch can go. The kill-and-resume run of the real trainer
is tests/test_e2e_cpu_smoke.py."""

from __future__ import annotations

import json
import os
import pickle
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

import verl.trainer.ppo.ray_trainer as ray_trainer
import verl.utils.tracking as tracking
import verl.workers.utils.padding as padding
from recipe_care.patches import long_runs
from verl.utils.tensordict_utils import maybe_fix_3d_position_ids

RayPPOTrainer = ray_trainer.RayPPOTrainer


# --- the metrics file -------------------------------------------------------------------------------------------


def _records(path) -> list[int]:
    return [json.loads(line)["step"] for line in open(path)]


def _write(path, steps, torn=False):
    with open(path, "w") as f:
        for step in steps:
            f.write(json.dumps({"step": step, "data": {"x": step}}) + "\n")
        if torn:
            f.write('{"step": 9, "data": {"x"')  # a record cut by SIGKILL


def test_verls_file_logger_truncates(tmp_path, monkeypatch):
    """The bug: verl 0.9.1's FileLogger opens its file with "wb" (the patch is still needed while this holds)."""
    path = tmp_path / "metrics.jsonl"
    _write(path, [0, 1, 2])
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(path))
    logger = object.__new__(tracking.FileLogger)
    tracking.FileLogger.__init__.__wrapped__(logger, "p", "e")
    logger.finish()
    assert path.read_bytes() == b""


def test_trim_keeps_steps_up_to_k_and_drops_a_torn_line(tmp_path):
    path = tmp_path / "m.jsonl"
    _write(path, [0, 1, 2, 3], torn=True)
    assert long_runs.trim_metrics_file(str(path), 2) == (3, 2)
    assert _records(path) == [0, 1, 2]
    _write(path, [0, 1, 2])
    assert long_runs.trim_metrics_file(str(path), 0) == (0, 3) and path.read_bytes() == b""


def test_file_logger_appends_until_the_trainer_positions_it(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    _write(path, [0, 1, 2, 3], torn=True)
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(path))
    tracker = tracking.Tracking("p", "e", default_backend=["file"])
    assert path.read_text().count("\n") == 4  # nothing lost when the logger opens (4 records, a torn line)
    long_runs._position_file_loggers(2)  # what _load_checkpoint does at checkpoint 2
    tracker.log({"x": 3}, step=3)
    tracker.finish()
    assert _records(path) == [0, 1, 2, 3]


def test_a_logger_no_trainer_positions_starts_a_fresh_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    _write(path, [0, 1, 2])
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(path))
    tracker = tracking.Tracking("p", "e", default_backend=["file"])
    tracker.log({"x": 0}, step=0)
    tracker.finish()
    assert _records(path) == [0]


# --- the trainer: checkpoint, resume, dataloader ----------------------------------------------------------------


class _Workers:
    def __init__(self):
        self.saved, self.loaded = [], []

    def save_checkpoint(self, path, remote, step, max_ckpt_to_keep=None):
        os.makedirs(path, exist_ok=True)
        self.saved.append(step)

    def load_checkpoint(self, path, del_local_after_load=False):
        self.loaded.append(path)


class _Trainer:
    """The attributes verl's _save_checkpoint/_load_checkpoint use, and verl's fit (so the patch treats it as verl's
    loop); fit() is never called: _run mirrors its order (batch, step, checkpoint, metrics record, step += 1)."""

    fit = RayPPOTrainer.fit
    _save_checkpoint = RayPPOTrainer._save_checkpoint
    _load_checkpoint = RayPPOTrainer._load_checkpoint

    def __init__(self, ckpt_dir, data, shuffle, total_steps, batch_size=3, val_only=False):
        self.config = OmegaConf.create({
            "trainer": {"default_local_dir": str(ckpt_dir), "default_hdfs_dir": None, "resume_mode": "auto",
                        "resume_from_path": None, "del_local_ckpt_after_load": False, "val_before_train": True,
                        "val_only": val_only, "total_epochs": 100, "save_freq": 1},
            "actor_rollout_ref": {"actor": {"checkpoint": {"async_save": False}}},
            "data": {"shuffle": shuffle, "seed": 1},
        })
        OmegaConf.set_struct(self.config, True)
        from torchdata.stateful_dataloader import StatefulDataLoader
        from verl.trainer.ppo.utils import create_rl_sampler

        self.train_dataloader = StatefulDataLoader(data, batch_size=batch_size, drop_last=True,
                                                   sampler=create_rl_sampler(self.config.data, data))
        self.actor_rollout_wg, self.use_critic = _Workers(), False
        self.total_training_steps, self.global_steps = total_steps, 0

    def _run(self, tracker, kill_after_save_of=None) -> list[list[int]]:
        """verl's fit() loop order; returns the batches trained. ``kill_after_save_of``: stop right after the
        _save_checkpoint call of that step (before its metrics record), as a SIGKILL there would."""
        batches = []
        self._load_checkpoint()
        if self.config.trainer.val_before_train:
            tracker.log({"val": 1}, step=self.global_steps)
        self.global_steps += 1
        for _epoch in range(self.global_steps // len(self.train_dataloader), self.config.trainer.total_epochs):
            for batch in self.train_dataloader:
                batches.append(batch.tolist())
                self._save_checkpoint()
                if self.global_steps == kill_after_save_of:
                    return batches
                tracker.log({"loss": 1}, step=self.global_steps)
                if self.global_steps >= self.total_training_steps:
                    return batches
                self.global_steps += 1
        return batches


def _tracker(path, monkeypatch):
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(path))
    return tracking.Tracking("p", "e", default_backend=["file"])


@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
def test_a_resumed_run_trains_the_uninterrupted_runs_batches_and_logs_each_step_once(tmp_path, monkeypatch, shuffle):
    """10 rows, batches of 3 (3 a epoch), 8 steps: a run stopped after the checkpoint of every k resumes on the
    uninterrupted run's batches, at the epoch boundaries (k = 3, 6) too, where verl alone restarts the shuffle."""
    data, total = list(range(10)), 8
    reference = _Trainer(tmp_path / "ref", data, shuffle, total)._run(_tracker(tmp_path / "ref.jsonl", monkeypatch))
    assert len(reference) == total
    for k in range(1, total):
        ckpt, metrics = tmp_path / f"ckpt{k}", tmp_path / f"m{k}.jsonl"
        first = _Trainer(ckpt, data, shuffle, total)
        done = first._run(_tracker(metrics, monkeypatch), kill_after_save_of=k + 1)  # killed in step k+1
        assert (ckpt / "latest_checkpointed_iteration.txt").read_text() == str(k)
        assert _records(metrics) == list(range(k + 1))  # val at 0, steps 1..k
        second = _Trainer(ckpt, data, shuffle, total)
        redone = second._run(_tracker(metrics, monkeypatch))
        assert done[:k] + redone == reference, f"k={k}"
        assert _records(metrics) == list(range(total + 1)), f"k={k}: every step exactly once"
        assert second.actor_rollout_wg.loaded == [str(ckpt / f"global_step_{k}" / "actor")]


def test_verl_alone_repeats_the_first_epochs_order_after_a_boundary_checkpoint(tmp_path, monkeypatch):
    """The bug the boundary restore works around: verl skips data.pt at an epoch boundary, and a shuffled run then
    draws the first epoch's permutation again."""
    data = list(range(10))
    first = _Trainer(tmp_path / "c", data, True, 6)
    epoch0 = first._run(_tracker(tmp_path / "m.jsonl", monkeypatch), kill_after_save_of=4)[:3]
    monkeypatch.setattr(long_runs, "_restore_dataloader_at_epoch_boundary", lambda trainer, step: None)
    second = _Trainer(tmp_path / "c", data, True, 6)
    assert second._run(_tracker(tmp_path / "m.jsonl", monkeypatch))[:3] == epoch0


def test_the_checkpoint_follows_the_metrics_record(tmp_path, monkeypatch):
    """A kill between verl's save and the step's record: the run resumes at the previous checkpoint (here none) and
    trains the step again; the record was never written, so it is not lost."""
    trainer = _Trainer(tmp_path / "c", list(range(10)), False, 4)
    trainer._run(_tracker(tmp_path / "m.jsonl", monkeypatch), kill_after_save_of=2)
    assert (tmp_path / "c" / "latest_checkpointed_iteration.txt").read_text() == "1"
    assert trainer.actor_rollout_wg.saved == [1]  # step 2's save waits for step 2's record
    long_runs._DEFERRED.clear()


def test_resume_skips_validation_before_training_and_a_complete_run_trains_nothing(tmp_path, monkeypatch):
    first = _Trainer(tmp_path / "c", list(range(10)), False, 2)
    first._run(_tracker(tmp_path / "m.jsonl", monkeypatch))
    again = _Trainer(tmp_path / "c", list(range(10)), False, 2)
    assert again._run(_tracker(tmp_path / "m.jsonl", monkeypatch)) == []
    assert again.config.trainer.val_before_train is False
    assert _records(tmp_path / "m.jsonl") == [0, 1, 2]
    val_only = _Trainer(tmp_path / "c", list(range(10)), False, 2, val_only=True)
    val_only._load_checkpoint()
    assert val_only.config.trainer.val_before_train is True  # val_only validates the checkpoint, as verl does


# --- no-padding conversion ------------------------------------------------------------------------------------


def _rope_index(model: str):
    import verl.models.transformers.qwen2_vl as qwen2_vl
    import verl.models.transformers.qwen3_vl as qwen3_vl

    ids = {"<|image_pad|>": 151655, "<|video_pad|>": 151656, "<|vision_start|>": 151652}
    processor = SimpleNamespace(image_processor=SimpleNamespace(merge_size=2), image_token_id=151655,
                                video_token_id=151656, vision_start_token_id=151652,
                                tokenizer=SimpleNamespace(convert_tokens_to_ids=ids.__getitem__))
    fn = {"qwen2.5-vl": qwen2_vl.get_rope_index, "qwen3-vl": qwen3_vl.get_rope_index}[model]
    return lambda input_ids, mask: fn(processor, input_ids=input_ids, image_grid_thw=torch.tensor([[1, 4, 4]]),
                                      attention_mask=mask)


def _batch(model: str, lengths: list[tuple[int, int]], prompt_len=10, response_len=6):
    """verl's left/right-padded rows (prompt, response lengths), with an image in each prompt; position ids
    (B, 4, S) as verl's agent loop builds them (text row, then the model's 3 rope rows)."""
    from tensordict import TensorDict

    rope = _rope_index(model)
    rows, masks, positions, response_masks = [], [], [], []
    for p, r in lengths:
        prompt = [5] * (p - 7) + [151652] + [151655] * 4 + [151653, 7]
        ids = torch.tensor([0] * (prompt_len - p) + prompt + [9] * r + [0] * (response_len - r))
        mask = torch.tensor([0] * (prompt_len - p) + [1] * (p + r) + [0] * (response_len - r))
        text = (mask.cumsum(0) - 1).clamp(min=0)
        positions.append(torch.cat([text[None], rope(ids, mask)]))
        rows.append(ids), masks.append(mask), response_masks.append(mask[prompt_len:])
    return TensorDict({"input_ids": torch.stack(rows), "attention_mask": torch.stack(masks),
                       "response_mask": torch.stack(response_masks), "position_ids": torch.stack(positions)},
                      batch_size=[len(lengths)])


def _worker_view(td):
    """What an actor worker unbinds: the TensorDict after pickling, with verl's maybe_fix_3d_position_ids."""
    td = pickle.loads(pickle.dumps(td))
    maybe_fix_3d_position_ids(td)
    return [t.shape for t in td["position_ids"].unbind()], td


BATCHES = {"one row": [(9, 4)], "equal rows": [(9, 4), (9, 4)], "mixed": [(9, 4), (8, 6), (10, 2)]}


@pytest.mark.parametrize("model", ["qwen2.5-vl", "qwen3-vl"])
@pytest.mark.parametrize("name", list(BATCHES))
def test_no_padding_keeps_the_token_dimension_ragged(model, name):
    batch = _batch(model, BATCHES[name])
    expected = [batch["position_ids"][i][:, batch["attention_mask"][i].bool()] for i in range(len(batch))]
    shapes, td = _worker_view(padding.left_right_2_no_padding(batch.clone()))
    assert shapes == [e.shape for e in expected]
    for got, want in zip(td["position_ids"].unbind(), expected):
        assert torch.equal(got, want)
    assert ray_trainer.left_right_2_no_padding is padding.left_right_2_no_padding  # the trainer's copy too

    stock = padding.left_right_2_no_padding.__wrapped__
    if name == "mixed":  # mixed lengths: exactly verl's result
        theirs, ours = stock(batch.clone())["position_ids"], padding.left_right_2_no_padding(batch.clone())
        ours = ours["position_ids"]
        assert theirs._ragged_idx == ours._ragged_idx == 2
        assert torch.equal(theirs.values(), ours.values()) and torch.equal(theirs.offsets(), ours.offsets())
        return
    # verl 0.9.1 (issues #6073, #7899): the rope dimension (4) taken as the ragged one; the worker's view then raises
    # (one row: "split_with_sizes expects split_sizes to sum exactly to L"; equal rows longer than 4 * rows) or is
    # silently transposed (two rows of 8: (8, 4) each)
    assert stock(batch.clone())["position_ids"]._ragged_idx == 1
    try:
        broken = _worker_view(stock(batch.clone()))[0]
    except RuntimeError as err:
        assert "split_with_sizes expects split_sizes to sum exactly" in str(err)
    else:
        assert broken != shapes


def test_two_equal_rows_of_eight_come_out_transposed_on_stock_verl():
    """The issue's example, on verl's original: two rows of 8 tokens unbind to (8, 4) without an error."""
    batch = _batch("qwen2.5-vl", [(7, 1), (7, 1)])
    stock = padding.left_right_2_no_padding.__wrapped__
    assert _worker_view(stock(batch.clone()))[0] == [torch.Size([8, 4])] * 2
    assert _worker_view(padding.left_right_2_no_padding(batch.clone()))[0] == [torch.Size([4, 8])] * 2
