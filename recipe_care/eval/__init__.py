"""The evaluation table's parts (``python -m recipe_care.eval_table`` is the command):

- :mod:`recipe_care.eval.benchmarks`: the six benchmarks, their data sources and which official rules need the
  benchmark's own answer template (We-Math);
- :mod:`recipe_care.eval.read`: reading verl's outputs (validation dump, file-logger metrics, decoding settings) into
  runs, with the official re-score;
- :mod:`recipe_care.eval.table`: the table (per benchmark, macro average, per data source, decoding) as Markdown and
  CSV.

The evaluation reward that tags verl's dump with each record's data source is ``reward_fns.evaluation``.
"""
