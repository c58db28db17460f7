"""Readings: the computed sentences of a chapter (an effect with its interval, set beside the
paper's direction and size) and :func:`compare`, which turns runs into those readings.

An interval that excludes 0 is read as an effect ("raises ... by 4.1 points (95% CI 2.0 to
6.2)"); one that includes 0 as "no detectable effect". When the paper's own difference is given,
the sentence says whether the paper's effect appears here, is reversed, or does not appear.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from vldlib.study.stats import DEFAULT_UNITS, Interval, paired_differences, require_columns, t_interval


def format_interval(mean: float, low: float = math.nan, high: float = math.nan, digits: int = 1) -> str:
    """``"45.2 [43.1, 47.3]"``; just ``"45.2"`` when the interval is undefined; ``"–"`` for NaN."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = f"{mean:.{digits}f}"
    if low is not None and high is not None and not (math.isnan(low) or math.isnan(high)):
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text


def _signed(x: float, digits: int) -> str:
    x = round(float(x), digits) + 0.0  # no "-0.0"
    return f"{x:+.{digits}f}"


def effect_sentence(
    effect: Interval,
    *,
    metric: str,
    treatment: str,
    baseline: str,
    paper: float | None = None,
    unit: str = "points",
    digits: int = 1,
    higher_is_better: bool = True,
    units_label: str = "paired runs",
    agree: int | None = None,
) -> str:
    """A plain-language reading of a paired effect, with every number computed.

    ``paper`` is the paper's own difference for the same comparison (``None`` if it has none).
    Examples: "L_im-cst raises zero-shot X_ood accuracy by 4.1 points (95% CI 2.0 to 6.2, 6 paired
    runs) over L_cls." / "... the paper's effect (+7.0) does not appear here: the interval includes 0."
    ``units_label`` names what ``effect.n`` counts ("class splits" when the split is the unit);
    ``agree`` (optional) is how many of them show the paper's direction (or our mean's, without a
    paper value); the sentence then says so.
    """
    pct = f"{round(effect.confidence * 100):d}%"
    u = f" {unit}" if unit else ""
    if effect.n < 2 or math.isnan(effect.low):
        body = (f"{treatment} changes {metric} by {_signed(effect.mean, digits)}{u} over {baseline} "
                f"in a single paired run: too few runs for an interval, so no conclusion.")
        return body + (f" The paper reports {_signed(paper, digits)}{u}." if paper is not None else "")
    ci = (f"({pct} CI {effect.low:.{digits}f} to {effect.high:.{digits}f}, \u00b1{effect.half_width:.{digits}f}; "
          f"{effect.n} {units_label})")
    if effect.excludes(0.0):
        verb = "raises" if effect.mean > 0 else "lowers"
        body = f"{treatment} {verb} {metric} by {abs(effect.mean):.{digits}f}{u} {ci} over {baseline}."
    else:
        body = (f"{treatment} changes {metric} by {_signed(effect.mean, digits)}{u} {ci} over "
                f"{baseline}: the interval includes 0, so no effect is detectable at this scale.")
    if agree is not None:
        whose = "The paper's" if _has(paper, digits) else "This"
        body += f" {whose} direction holds on {agree} of {effect.n} {units_label}."
    if paper is None or (isinstance(paper, float) and math.isnan(paper)):
        return body
    paper_txt = f"the paper's difference ({_signed(paper, digits)}{u}, single runs)"
    if round(float(paper), digits) == 0:
        return body + " The paper reports no difference at this precision."
    if not effect.excludes(0.0):
        return body + f" So {paper_txt} does not appear here: the interval includes 0."
    if (effect.mean > 0) == (paper > 0):
        tail = " and its size lies inside our interval." if effect.low <= paper <= effect.high else \
            ", though not its size: the paper's value lies outside our interval."
        return body + f" This agrees in direction with {paper_txt}" + tail
    return body + f" This is the reverse of {paper_txt}."


def _has(paper: float | None, digits: int) -> bool:
    return paper is not None and not (isinstance(paper, float) and math.isnan(paper)) and round(float(paper), digits) != 0


def paper_difference(
    paper: pd.DataFrame,
    metric: str,
    *,
    column: str,
    treatment: object,
    baseline: object,
) -> float | None:
    """``paper[metric]`` at ``column == treatment`` minus at ``baseline`` (first matching rows).

    ``None`` when either value is missing (e.g. the paper's NA for closed-set zero-shot).
    Filter ``paper`` to one dataset (e.g. ``"Average"``) first.
    """
    require_columns(paper, [column, metric], "paper_difference")
    values = []
    for value in (treatment, baseline):
        hit = paper.loc[paper[column] == value, metric].dropna()
        if hit.empty:
            return None
        values.append(float(hit.iloc[0]))
    return values[0] - values[1]


def verdict(effect: Interval, paper: float | None = None, digits: int = 1) -> str:
    """Short label for a table: how our paired effect relates to 0 and to the paper's difference.

    ``"raises"`` / ``"lowers"`` / ``"no detectable effect"`` without a paper value; with one:
    ``"as in the paper"`` (same sign, interval excludes 0), ``"reversed"`` (opposite sign),
    ``"not seen here"`` (the interval includes 0), ``"too few runs"`` when ``n < 2``.  A paper
    difference that rounds to 0 at ``digits`` counts as none.
    """
    if effect.n < 2 or math.isnan(effect.low):
        return "too few runs"
    has_paper = (paper is not None and not (isinstance(paper, float) and math.isnan(paper))
                 and round(float(paper), digits) != 0)
    if not effect.excludes(0.0):
        return "not seen here" if has_paper else "no detectable effect"
    if not has_paper:
        return "raises" if effect.mean > 0 else "lowers"
    return "as in the paper" if (effect.mean > 0) == (paper > 0) else "reversed"


@dataclass(frozen=True)
class Comparison:
    """One question a notebook asks of its runs: ``treatment`` vs ``baseline`` on ``metric``.

    ``paper_treatment`` / ``paper_baseline`` name the same settings in the paper's table (default:
    the same names); ``paper_metric`` the paper's column (default: ``metric``).
    """

    treatment: object
    baseline: object
    metric: str
    paper_treatment: object | None = None
    paper_baseline: object | None = None
    paper_metric: str | None = None


def compare(
    frame: pd.DataFrame,
    comparisons: Sequence[Comparison],
    *,
    column: str,
    labels: Mapping[object, str] | None = None,
    metric_labels: Mapping[str, str] | None = None,
    paper: pd.DataFrame | None = None,
    paper_column: str | None = None,
    units: Sequence[str] = DEFAULT_UNITS,
    confidence: float = 0.95,
    digits: int = 1,
    unit: str = "points",
) -> pd.DataFrame:
    """Paired effects for several comparisons, with the paper's difference, a verdict and a sentence.

    Comparisons whose settings were not run are skipped.  Columns: ``comparison``, ``metric``,
    ``n`` (class splits, or runs on a fixed split: ``unit``), ``effect``, ``ci_low``, ``ci_high``,
    ``half_width``, ``paper``, ``verdict``, ``agree`` (how many units show the paper's direction,
    or the direction of our mean when the paper has no value), ``reading``; the per-unit
    differences are in ``frame.attrs["differences"]`` (one Series per row); and the comparison's
    own keys ``treatment``, ``baseline``, ``metric_key`` (unlabelled, for look-ups).
    """
    labels = dict(labels or {})
    metric_labels = dict(metric_labels or {})
    present = set(frame[column].unique()) if column in frame.columns else set()
    rows = []
    differences: list[pd.Series] = []
    for c in comparisons:
        if c.treatment not in present or c.baseline not in present:
            continue
        diffs, unit_name = paired_differences(frame, c.metric, column=column, treatment=c.treatment,
                                              baseline=c.baseline, units=units)
        eff = t_interval(diffs, confidence)
        pdiff = None
        if paper is not None:
            pcol = paper_column or column
            pmetric = c.paper_metric or c.metric
            if pmetric in paper.columns and pcol in paper.columns:
                pdiff = paper_difference(
                    paper, pmetric, column=pcol,
                    treatment=c.paper_treatment if c.paper_treatment is not None else c.treatment,
                    baseline=c.paper_baseline if c.paper_baseline is not None else c.baseline)
        t_label = labels.get(c.treatment, str(c.treatment))
        b_label = labels.get(c.baseline, str(c.baseline))
        m_label = metric_labels.get(c.metric, c.metric)
        sign = pdiff if _has(pdiff, digits) else eff.mean
        agree = int((diffs > 0).sum()) if sign > 0 else int((diffs < 0).sum())
        differences.append(diffs.rename(f"{t_label} vs {b_label}: {m_label}"))
        rows.append({
            "comparison": f"{t_label} vs {b_label}",
            "metric": m_label,
            "n": eff.n, "unit": unit_name, "effect": eff.mean, "ci_low": eff.low, "ci_high": eff.high,
            "half_width": eff.half_width,
            "paper": pdiff,
            "verdict": verdict(eff, pdiff, digits),
            "agree": agree,
            "reading": effect_sentence(eff, metric=m_label, treatment=t_label, baseline=b_label,
                                       paper=pdiff, digits=digits, unit=unit,
                                       units_label="class splits" if unit_name == "class split" else "paired runs",
                                       agree=agree),
            "treatment": c.treatment, "baseline": c.baseline, "metric_key": c.metric,
        })
    out = pd.DataFrame(rows, columns=["comparison", "metric", "n", "unit", "effect", "ci_low", "ci_high",
                                      "half_width", "paper", "verdict", "agree", "reading", "treatment", "baseline",
                                      "metric_key"])
    out.attrs["differences"] = differences
    return out


