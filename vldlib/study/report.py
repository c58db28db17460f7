"""One import for a chapter's helpers: :mod:`vldlib.study.stats` (intervals, paired effects),
:mod:`vldlib.study.readings` (computed sentences, :func:`compare`), :mod:`vldlib.study.tables`
(beside the paper) and :mod:`vldlib.study.figures` (plots). Nothing is defined here."""
from __future__ import annotations

from vldlib.study.figures import plot_effects, plot_intervals, plot_lines, plot_per_class
from vldlib.study.readings import (Comparison, compare, effect_sentence, format_interval,
                                   paper_difference, verdict)
from vldlib.study.stats import (DEFAULT_UNITS, Interval, paired_differences, paired_effect, paired_effects,
                                per_class_effects, summarize, t_interval, unit_values, with_transfer)
from vldlib.study.tables import beside_paper, effects_table, interval_table

__all__ = [
    "Interval", "t_interval", "summarize", "unit_values", "paired_differences", "paired_effect", "paired_effects", "format_interval",
    "effect_sentence", "paper_difference", "verdict", "Comparison", "compare", "plot_effects",
    "effects_table", "beside_paper", "interval_table", "plot_intervals", "plot_lines", "DEFAULT_UNITS",
    "plot_per_class", "per_class_effects", "with_transfer",
]
