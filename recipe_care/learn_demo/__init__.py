"""The CPU learning demo (``run_scripts/cpu_learn.sh``, docs/cpu_learn.md): a small policy learns a synthetic task.

* ``shapes_task``: the synthetic, verifiable visual task ("What colour is the shape?", 4 options, chance 0.25);
* ``learn_policy``: the ~0.2 M-parameter Qwen2.5-VL and its format-only warm start;
* ``learn_curves``: the curves, summary table and picture of a run.

Nothing here is used by a real training run. Importing this package is cheap (no torch, no verl).
"""
