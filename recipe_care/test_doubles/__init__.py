"""Stand-ins for the CPU tests (never used in training or by a run script).

* ``rgr_doubles``: a scripted LLM server and a scripted verifier for RGR's tests (imports verl);
* ``vl_rollout_batch``: a fabricated multimodal rollout batch and its plain-HF reference embeddings, for the
  hidden-state embedding checks (``tests/test_embeddings_verl.py``, ``benchmarks/gpu_check_embeddings.py``).

Importing this package is cheap (no torch, no verl).
"""
