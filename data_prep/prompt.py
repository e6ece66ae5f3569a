"""The one instruction every prepared row carries, for training and for evaluation alike.

Defined once here: every ``data_prep`` script builds its user message with :func:`build_messages`, so Geometry3K
training rows and every benchmark row end with exactly the same :data:`INSTRUCTION`. The verifiers
(``reward_fns``) expect the format it asks for: reasoning inside ``<think>…</think>``, then the final answer inside
``<answer>…</answer>`` (a ``\\boxed{}`` inside it is accepted).
"""

from __future__ import annotations

#: The format instruction appended after the benchmark's own question text (training and evaluation).
INSTRUCTION = (
    "You FIRST think about the reasoning process as an internal monologue and then provide the final answer. "
    "The reasoning process MUST BE enclosed within <think> </think> tags, and the final answer MUST BE enclosed "
    "within <answer> </answer> tags, i.e. <think> reasoning process here </think><answer> final answer here </answer>."
)

#: Added after the option list of multiple-choice questions whose own text does not already say how to answer.
MC_HINT = "Answer with the letter of the correct option."

#: The image placeholder verl splits the prompt on (``verl.utils.dataset.rl_dataset.RLHFDataset._build_messages``).
IMAGE_TOKEN = "<image>"

#: Literal strings verl treats as media placeholders; none may appear in a prompt except our own ``<image>``s.
MEDIA_TOKENS = ("<image>", "<video>", "<audio>")


def build_content(body: str) -> str:
    """The user message text: the question ``body`` (placeholders already in place), a blank line, INSTRUCTION."""
    return f"{body.strip()}\n\n{INSTRUCTION}"


def build_messages(body: str) -> list[dict[str, str]]:
    """verl's ``prompt`` column: one user message built by :func:`build_content`."""
    return [{"role": "user", "content": build_content(body)}]
