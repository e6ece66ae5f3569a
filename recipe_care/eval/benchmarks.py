"""The six evaluation benchmarks of the table: their data sources, how a benchmark's number is formed, and which
official rules read only answers written in the benchmark's own template.

MathVista (testmini), MMMU-Pro (mean of the standard10 and vision settings), MathVerse (testmini), MATH-Vision
(test, else testmini), We-Math (testmini), LogicVista (test); the macro average is their unweighted mean. Other
sources (Geometry3K) are listed apart.

**Template-bound official rules.** We-Math's official scorer (``evaluation/four_dimensional_metrics.py``) reads only
the text after a literal ``Answer`` (its prompt asks for ``<Thought process>: <<…>> <Answer>: <<option>>``);
``reward_fns`` reproduces that rule exactly in ``mode="official"``. A response to this recipe's prompt
(``<think>…</think><answer>…</answer>``) has no such text and scores 0 whatever its answer. So an official number
for such a benchmark is only comparable when most of its responses are written in that template: at least
:data:`TEMPLATE_MIN_SHARE` of them must give the official rule an answer (``extracted``). Below that the table marks
the benchmark *not comparable*, shows the train rule's accuracy beside it, and labels the macro average that uses
it (see ``docs/run_scripts.md``, Evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Benchmark:
    name: str
    sources: tuple[str, ...]  # data sources; the first present is used, unless mean_of_sources
    mean_of_sources: bool = False  # the benchmark's number is the mean of its sources present (MMMU-Pro)
    answer_template: str = ""  # non-empty: the official rule reads only answers in this template (We-Math)

    def describe_sources(self) -> str:
        return ("mean of " + ", ".join(self.sources)) if self.mean_of_sources else " or ".join(self.sources)


WEMATH_TEMPLATE = "We-Math's answer template (`<Answer>: <<option>>`: an option letter after a literal `Answer`)"

BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("MathVista", ("mathvista_testmini",)),
    Benchmark("MMMU-Pro", ("mmmu_pro_standard10", "mmmu_pro_vision"), mean_of_sources=True),
    Benchmark("MathVerse", ("mathverse_testmini",)),
    Benchmark("MATH-Vision", ("mathvision_test", "mathvision_testmini")),
    Benchmark("We-Math", ("wemath_testmini",), answer_template=WEMATH_TEMPLATE),
    Benchmark("LogicVista", ("logicvista_test",)),
)
BENCHMARK_OF: dict[str, str] = {ds: b.name for b in BENCHMARKS for ds in b.sources}
SOURCE_ORDER: tuple[str, ...] = tuple(ds for b in BENCHMARKS for ds in b.sources)
# data source -> the answer template its official rule needs
TEMPLATE_OF: dict[str, str] = {ds: b.answer_template for b in BENCHMARKS if b.answer_template for ds in b.sources}

#: Share of a template-bound benchmark's responses that must be in its template for its official number to count.
TEMPLATE_MIN_SHARE = 0.5


def official_comparable(in_template: int, n: int) -> bool:
    """Whether an official score over ``n`` responses, ``in_template`` of them in the benchmark's answer template,
    is comparable to the benchmark's published numbers.

    >>> official_comparable(0, 1740), official_comparable(870, 1740), official_comparable(1700, 1740)
    (False, True, True)
    """
    return n > 0 and in_template >= TEMPLATE_MIN_SHARE * n
