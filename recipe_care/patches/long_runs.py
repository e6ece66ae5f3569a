"""Long runs survive (issue 23), pinned verl 0.9.1; listed in ``recipe_care.patches.PATCHED_SYMBOLS``.

**Resume keeps the run's history.** verl's ``FileLogger`` opens ``VERL_FILE_LOGGER_PATH`` with ``"wb"``
(``verl/utils/tracking.py``, ``FileLogger.__init__``: ``open(self.filepath, "wb", buffering=0)``), so a resumed run
erased the metrics of every step before its checkpoint. The rule here: a run that starts at checkpoint ``k``
(``trainer.resume_mode=auto`` found one, or ``resume_path``) keeps the records of steps ``<= k`` and drops those of
steps ``> k`` (the interrupted steps, which it trains again); a run that starts from scratch (``k = 0``) starts an
empty file, as verl does. So every step is in the file exactly once. Four patches:

1. ``verl.utils.tracking.FileLogger.__init__`` — verl's constructor (same path rules) opening the file with ``"ab"``:
   nothing is truncated when the logger is created, before the trainer knows where it starts;
2. ``RayPPOTrainer._load_checkpoint`` — after verl's loading, the file is cut to the records of steps ``<= k``
   (``k = 0``: emptied), in place (the logger's append-mode descriptor stays valid), with one console line. On a
   resumed run (``k > 0``) it also
   - skips the validation before training (``trainer.val_before_train``; never with ``val_only``): the uninterrupted
     run did not validate there, and its record would be a second record of step ``k``;
   - restores the dataloader at an epoch boundary: verl skips ``data.pt`` there (``ray_trainer.py``
     ``_load_checkpoint``: "Skipping dataloader state restore ... at an epoch boundary"), and with ``data.shuffle=True``
     the next epoch then repeats the first epoch's order, because the sampler's generator starts again from
     ``data.seed``. The saved state is loaded and its (empty) end of epoch consumed, so the next epoch draws the
     permutation the uninterrupted run drew;
   - ends at once when the checkpoint is already at ``trainer.total_training_steps`` (verl 0.9.1 would train a step
     ``k + 1`` beyond the run's length): the run was complete;
3. ``RayPPOTrainer._save_checkpoint`` — deferred until the step's metrics record is written: in ``fit()`` verl saves
   the checkpoint of step ``k`` *before* it logs step ``k`` (update_weights, validation and the metrics come after the
   save), and a run killed in between would resume at ``k`` without step ``k``'s record. The checkpoint holds the
   same state either way (nothing between the two changes the actor, the optimizer or the dataloader). Its duration
   is printed; ``timing_s/save_checkpoint`` now measures only the deferral (about 0);
4. ``verl.utils.tracking.Tracking.log`` — writes the deferred checkpoint right after the record; a logger that no
   trainer has positioned (any other verl entry point) is emptied before its first record, as verl's ``"wb"`` did.

**Batches of equal length.** 5. ``verl.workers.utils.padding.left_right_2_no_padding`` (and its copy imported into
``verl.trainer.ppo.ray_trainer``) builds Qwen-VL's ``(4, L_i)`` position ids with
``torch.nested.as_nested_tensor(position_ids_list, layout=torch.jagged)``, which makes the first dimension whose sizes
differ the ragged one, else dim 1: with rows of equal length that is the rope dimension (4), not the tokens. Two
equal rows then unbind to ``(L, 4)`` after ``maybe_fix_3d_position_ids`` (silently wrong), one row raises
``split_with_sizes expects split_sizes to sum exactly to L`` (verl issues #6073, #7899). The patch lets verl convert
a 2-D stand-in and sets the 3-D position ids itself, ragged along the tokens (``jagged_dim=2``), for any batch; for
rows of mixed lengths the result is exactly verl's.
"""

from __future__ import annotations

import functools
import os
import time
import weakref
from typing import Any

from recipe_care.patches import is_marked, mark

_UNPOSITIONED: "weakref.WeakSet[Any]" = weakref.WeakSet()
"""File loggers of this process whose file no trainer has cut yet."""

_DEFERRED: dict[str, Any] = {}
"""The checkpoint ``_save_checkpoint`` deferred: ``{"trainer": weakref, "step": k, "save": verl's function}``."""


def _say(message: str) -> None:
    print(f"[care] {message}", flush=True)


# --- the metrics file -------------------------------------------------------------------------------------------


def _record_step(line: bytes) -> int | None:
    """The ``step`` of one FileLogger line, or None for a torn or foreign line."""
    import orjson

    try:
        record = orjson.loads(line)
        return int(record["step"])
    except Exception:  # noqa: BLE001  (a line cut by a kill, or not a record)
        return None


def trim_metrics_file(path: str, keep_upto: int) -> tuple[int, int]:
    """Keep the records of steps ``<= keep_upto`` of a FileLogger file (none if ``keep_upto <= 0``), in place.

    Returns ``(kept, dropped)``. A torn or unreadable line is dropped. The file is cut with ``truncate`` where the kept
    records come first (always, for files this module wrote), else rewritten in place, so a descriptor opened in
    append mode keeps writing at its new end."""
    if not os.path.exists(path):
        return 0, 0
    with open(path, "rb") as f:
        lines = f.read().splitlines(keepends=True)
    keep = [
        keep_upto > 0 and line.endswith(b"\n") and (step := _record_step(line)) is not None and step <= keep_upto
        for line in lines
    ]
    kept = [line for line, k in zip(lines, keep) if k]
    if all(keep[: len(kept)]):  # the kept records are a prefix
        os.truncate(path, sum(len(line) for line in kept))
    else:
        with open(path, "r+b") as f:
            f.write(b"".join(kept))
            f.truncate()
    return len(kept), len(lines) - len(kept)


def _patch_file_logger(module: Any) -> None:
    cls = module.FileLogger
    original = cls.__init__

    @functools.wraps(original)
    def __init__(self, project_name: str, experiment_name: str):
        # verl 0.9.1's FileLogger.__init__, with "ab" for "wb" (the trainer positions the file: _load_checkpoint)
        self.project_name = project_name
        self.experiment_name = experiment_name
        self.filepath = os.getenv("VERL_FILE_LOGGER_PATH", None)
        if self.filepath is None:
            root_path = os.path.expanduser(os.getenv("VERL_FILE_LOGGER_ROOT", "."))
            directory = os.path.join(root_path, self.project_name)
            os.makedirs(directory, exist_ok=True)
            self.filepath = os.path.join(directory, f"{self.experiment_name}.jsonl")
        print(f"Creating file logger at {os.path.abspath(self.filepath)}")
        self.fp = open(self.filepath, "ab", buffering=0)
        _UNPOSITIONED.add(self)

    cls.__init__ = mark(__init__)


def _position_file_loggers(keep_upto: int) -> None:
    for logger in list(_UNPOSITIONED):
        _UNPOSITIONED.discard(logger)
        kept, dropped = trim_metrics_file(logger.filepath, keep_upto)
        if keep_upto > 0:
            _say(f"metrics {logger.filepath}: kept {kept} records of steps <= {keep_upto}, dropped {dropped} of "
                 f"later steps (trained again now)")
        elif kept + dropped:
            _say(f"metrics {logger.filepath}: a run from scratch starts an empty file ({dropped} records dropped)")


def _patch_tracking_log(module: Any) -> None:
    cls = module.Tracking
    original = cls.log

    @functools.wraps(original)
    def log(self, data, step, backend=None):
        file_logger = getattr(self, "logger", {}).get("file")
        if file_logger is not None and file_logger in _UNPOSITIONED:
            _position_file_loggers(0)  # no trainer positioned it: a fresh file, as verl's "wb"
        result = original(self, data, step, backend=backend)
        if _DEFERRED:
            _write_deferred_checkpoint()
        return result

    cls.log = mark(log)


# --- the trainer ----------------------------------------------------------------------------------------------


def _write_deferred_checkpoint() -> None:
    pending = dict(_DEFERRED)
    _DEFERRED.clear()
    trainer = pending["trainer"]()
    if trainer is None:
        return
    if trainer.global_steps != pending["step"]:
        raise RuntimeError(
            f"recipe_care.patches.long_runs: the checkpoint of step {pending['step']} was deferred to its metrics "
            f"record, but the trainer is at step {trainer.global_steps}: verl's fit() changed, update the patch"
        )
    start = time.monotonic()
    pending["save"](trainer)
    _say(f"checkpoint of step {pending['step']} written after its metrics record ({time.monotonic() - start:.1f} s)")


def _patch_save_checkpoint(module: Any) -> None:
    cls = module.RayPPOTrainer
    original = cls._save_checkpoint
    verl_fit = cls.fit

    @functools.wraps(original)
    def _save_checkpoint(self):
        if type(self).fit is not verl_fit:  # another trainer's loop: verl's order
            return original(self)
        if _DEFERRED:
            _write_deferred_checkpoint()
        _DEFERRED.update(trainer=weakref.ref(self), step=self.global_steps, save=original)

    cls._save_checkpoint = mark(_save_checkpoint)


def _restore_dataloader_at_epoch_boundary(trainer: Any, step: int) -> None:
    import torch

    loader = trainer.train_dataloader
    steps_per_epoch = len(loader)
    cfg = trainer.config.trainer
    if cfg.resume_mode == "resume_path":
        folder = cfg.resume_from_path
    else:
        folder = os.path.join(cfg.default_local_dir, f"global_step_{step}")
    path = os.path.join(os.path.abspath(folder), "data.pt")  # verl resolves a relative folder against the cwd
    if not steps_per_epoch or step % steps_per_epoch or not os.path.exists(path):
        return  # verl restored it (mid-epoch), or there is nothing to restore
    state = torch.load(path, weights_only=False)
    if state.get("_num_yielded") != steps_per_epoch:  # not a single-process state at the epoch's end: verl's way
        _say(f"dataloader at the epoch boundary of step {step}: state not restored (verl's behaviour); with "
             "data.shuffle=True the next epoch repeats the first epoch's order")
        return
    loader.load_state_dict(state)
    leftover = sum(1 for _ in loader)  # the epoch's end (drop_last: nothing), so the next epoch draws anew
    if leftover:
        raise RuntimeError(f"dataloader state of step {step} held {leftover} batches beyond its epoch")
    _say(f"dataloader restored at the epoch boundary of step {step}: the next epoch continues the sampler's sequence")


def _patch_load_checkpoint(module: Any) -> None:
    cls = module.RayPPOTrainer
    original = cls._load_checkpoint

    @functools.wraps(original)
    def _load_checkpoint(self):
        result = original(self)
        step = int(self.global_steps or 0)
        _position_file_loggers(step)
        if step <= 0:
            return result
        from omegaconf import open_dict

        _restore_dataloader_at_epoch_boundary(self, step)
        trainer_cfg = self.config.trainer
        with open_dict(trainer_cfg):
            if trainer_cfg.get("val_before_train", True) and not trainer_cfg.get("val_only", False):
                trainer_cfg.val_before_train = False
                _say(f"resumed at step {step}: no validation before training (the uninterrupted run had none here)")
            if step >= self.total_training_steps and not trainer_cfg.get("val_only", False):
                trainer_cfg.total_epochs = 0  # fit()'s epoch loop runs no step
                _say(f"resumed at step {step} >= trainer.total_training_steps={self.total_training_steps}: the run "
                     "is complete, nothing to train")
        return result

    cls._load_checkpoint = mark(_load_checkpoint)


# --- no-padding conversion ------------------------------------------------------------------------------------


def nested_3d_position_ids(position_ids: Any, attention_mask: Any) -> Any:
    """``(B, C, S)`` padded position ids -> a jagged ``(B, C, j)`` nested tensor of the valid tokens (ragged dim 2)."""
    import torch
    import torch.nn.functional as F

    mask = attention_mask.bool()
    offsets = F.pad(mask.sum(dim=1).cumsum(dim=0), (1, 0))
    values = position_ids.transpose(0, 1)[:, mask]  # (C, total tokens), rows in order as unpad_input keeps them
    return torch.nested.nested_tensor_from_jagged(values, offsets=offsets, jagged_dim=2)


def _patch_no_padding(module: Any) -> None:
    original = module.left_right_2_no_padding

    @functools.wraps(original)
    def left_right_2_no_padding(data):
        position_ids = data.get("position_ids", None)
        if position_ids is None or position_ids.dim() != 3 or position_ids.is_nested:
            return original(data)
        attention_mask = data["attention_mask"]
        data["position_ids"] = position_ids[:, 0, :]  # verl converts a 2-D stand-in (it never reads the values)
        data = original(data)
        data["position_ids"] = nested_3d_position_ids(position_ids, attention_mask)
        return data

    module.left_right_2_no_padding = mark(left_right_2_no_padding)


# --- installation (idempotent) --------------------------------------------------------------------------------


def patch_tracking(module: Any) -> None:
    """Patches 1 and 4 on an imported ``verl.utils.tracking``."""
    if not is_marked(module.FileLogger.__init__):
        _patch_file_logger(module)
    if not is_marked(module.Tracking.log):
        _patch_tracking_log(module)


def patch_padding(module: Any) -> None:
    """Patch 5 on an imported ``verl.workers.utils.padding``."""
    if not is_marked(module.left_right_2_no_padding):
        _patch_no_padding(module)


def patch_ray_trainer(module: Any) -> None:
    """Patches 2 and 3, and patch 5's copy, on an imported ``verl.trainer.ppo.ray_trainer``."""
    import verl.workers.utils.padding as padding

    patch_padding(padding)
    module.left_right_2_no_padding = padding.left_right_2_no_padding
    if not is_marked(module.RayPPOTrainer._load_checkpoint):
        _patch_load_checkpoint(module)
    if not is_marked(module.RayPPOTrainer._save_checkpoint):
        _patch_save_checkpoint(module)
