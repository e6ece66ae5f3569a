"""What travels from verl's trainer to the CARE code around it, in one place.

verl 0.9.1 calls a registered advantage estimator with tensors and ``config.algorithm`` only (the recipe's
``compute_advantage`` patch adds the batch), and collects a step's metrics with ``compute_data_metrics(batch)``. All
of CARE's TaskRunner-side code (the ``care`` estimator, the RGR rollout manager, the trainer patches) runs in the one
TaskRunner process that runs ``fit()``, so what it needs beyond those arguments travels in two ways:

**Process-local: the object** ``CONTEXT`` (:class:`StepContext`)

=====================================  ==========================================  ====================================
what                                   written by                                  read by
=====================================  ==========================================  ====================================
the trainer (weak reference) and its   ``RayPPOTrainer.__init__`` patch:           :meth:`StepContext.span_parser`
tokenizer                              :func:`set_trainer` (tests:                 (think/answer spans for the
                                       :func:`set_tokenizer`)                      estimator and the pooling mask)
the training step                      the trainer's ``global_steps``, read when   ``anchor: random`` (seed)
                                       asked (else ``meta_info["global_steps"]``)
per-step metrics                       the estimator (``care/*``), the RGR         the ``compute_data_metrics`` patch:
                                       manager (``rgr/*``): :func:`push_step_      :func:`pop_step_metrics`
                                       metrics`
=====================================  ==========================================  ====================================

**Per row: batch keys** that only the TaskRunner reads (:data:`TASK_RUNNER_KEYS`):

- ``care_think_mask``, ``care_answer_mask``, ``care_has_think``, ``care_has_answer``, ``care_span_fingerprint``: the
  think/answer spans, parsed once per step by their first consumer (RGR at rollout time, else the pooling mask, else
  the estimator) and read by the others after a check that each row's response is still the one they were parsed
  from (``recipe_care.spans.batch_spans``);
- ``care_embeddings``: the policy's pooled hidden states, from the old-log-prob pass to the estimator.

They travel with their rows through verl's ``union`` and ``balance_batch``. The patches keep them out of the
old-log-prob and reference passes (taken out for the call, put back after) and drop them once the estimator has used
them, so no worker pass, the actor update included, ever ships them.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any, Optional

from recipe_care.spans import SPAN_KEYS

EMBEDDING_KEY = "care_embeddings"
"""``[N, H]`` float32 rationale embeddings (policy hidden states), from the old-log-prob pass to the estimator."""

TASK_RUNNER_KEYS: tuple[str, ...] = (EMBEDDING_KEY, *SPAN_KEYS)
"""Batch keys CARE adds for its own TaskRunner code: never sent to a worker pass, dropped after the advantage."""


@dataclass
class StepContext:
    """Process-local state of the TaskRunner that verl's call signatures do not carry (see the module table)."""

    trainer: Any = None
    """``weakref.ref`` to the ``RayPPOTrainer``, or None."""
    tokenizer: Any = None
    metrics: dict = field(default_factory=dict)
    """Metrics queued for this step's ``compute_data_metrics``."""
    _parser: Any = None

    def set_trainer(self, trainer: Any) -> None:
        """Record the trainer (a weak reference): its tokenizer finds the spans, its ``global_steps`` is the step."""
        self.trainer = None if trainer is None else weakref.ref(trainer)
        self.set_tokenizer(getattr(trainer, "tokenizer", None))

    def set_tokenizer(self, tokenizer: Any) -> None:
        """Record the tokenizer that finds ``<think>``/``<answer>`` spans in token ids."""
        if tokenizer is not self.tokenizer:
            self.tokenizer, self._parser = tokenizer, None

    def span_parser(self) -> Any:
        """The :class:`recipe_care.spans.TagSpanParser` of the recorded tokenizer (built once), or None."""
        if self._parser is None and self.tokenizer is not None:
            from recipe_care.spans import TagSpanParser

            self._parser = TagSpanParser(self.tokenizer)
        return self._parser

    def training_step(self, meta_info: Optional[dict] = None) -> Optional[int]:
        """The recorded trainer's ``global_steps`` (verl 0.9.1 keeps it there and never puts it on the training
        batch), else ``meta_info["global_steps"]``; None when neither exists."""
        trainer = self.trainer() if self.trainer is not None else None
        value = getattr(trainer, "global_steps", None) if trainer is not None else None
        if value is None:
            value = (meta_info or {}).get("global_steps")
        try:
            return None if value is None else int(value)
        except (TypeError, ValueError):
            return None

    def push_metrics(self, metrics: dict) -> None:
        """Queue metrics for this step's verl metrics (a later value of the same key replaces the earlier one)."""
        self.metrics.update({key: float(value) for key, value in metrics.items()})

    def pop_metrics(self) -> dict:
        """The queued metrics, and an empty queue."""
        out, self.metrics = self.metrics, {}
        return out


CONTEXT = StepContext()

set_trainer = CONTEXT.set_trainer
set_tokenizer = CONTEXT.set_tokenizer
push_step_metrics = CONTEXT.push_metrics
pop_step_metrics = CONTEXT.pop_metrics
