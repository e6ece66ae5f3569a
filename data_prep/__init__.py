"""Dataset preparation for the CARE recipe: Geometry3K and six benchmarks -> verl 0.9.1 parquet rows, one schema.

Scripts (``python -m data_prep.<name> --out DIR``): ``geometry3k``, ``mathvista``, ``mmmu_pro``, ``mathverse``,
``mathvision``, ``wemath``, ``logicvista``, and ``all``. Shared pieces: ``prompt`` (the one instruction), ``schema``
(row features + canonical ``extra_info``), ``sources`` (Hub / local copies), ``images``, ``core`` (pipeline, report),
``cli`` (the one command line every script shares).
See ``docs/data_prep.md``.
"""
