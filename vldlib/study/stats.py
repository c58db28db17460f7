"""Statistics of a chapter: means, t-intervals and paired effects over replicates.

Everything here works on tidy pandas frames (one row per run, as ``RunStore.to_frame()`` gives)
and is deterministic; nothing trains or reads the run store.

Statistics (all two-sided, confidence ``1 - alpha``, default 95 %):

* **The experimental unit is the class split.**  Effects vary far more between class splits
  (which classes are seen) than between training seeds on one split, so seeds on one split are not
  independent replicates.  Every statistic first averages the runs of one class split (over its
  seeds), then treats the ``n`` split means as the sample.  Where the runs have only one class split
  (the official datasets' fixed split, or a one-split grid) the unit falls back to the run (seed), and
  the ``unit`` column says so.
* **Mean and t-interval over units.**  For unit means ``x_1..x_n``::

      mean = (1/n) sum x_i,   sd = sqrt( sum (x_i - mean)^2 / (n - 1) ),
      half = t_{1 - alpha/2, n - 1} * sd / sqrt(n),   CI = [mean - half, mean + half]

  With ``n = 1`` the interval is undefined (NaN): one unit says nothing about its noise.
* **Paired effect of a change.**  Two settings run with the same seeds and class splits form pairs
  (matched on seed and split); the differences ``x(treatment) - x(baseline)`` are averaged within each
  class split, and the effect is the mean of the ``n`` per-split differences with their t-interval (a
  paired t-interval over splits).  Pairing removes the split-to-split spread shared by both settings.
* **Reading.**  An interval that excludes 0 is reported as an effect ("raises ... by 4.1 points
  (95% CI 2.0 to 6.2)"); one that includes 0 as "no detectable effect".  When the paper's own
  difference is given, the sentence says whether the paper's effect appears here, is reversed, or
  does not appear (the interval includes 0).

The paper reports single runs without intervals (paper.md §7.14); its values enter the tables
as labelled reference values, never as numbers in the prose.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["DEFAULT_UNITS", "SPLIT", "Interval", "t_interval", "require_columns", "unit_values",
           "summarize", "paired_differences", "paired_effect", "paired_effects", "with_transfer",
           "per_class_effects"]

DEFAULT_UNITS = ("seed", "split_seed")
"""Columns that identify one run of a setting (a training seed on one class split): pairs match on them."""

SPLIT = "split_seed"
"""The column of the experimental unit: the class split."""


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values with its two-sided t-interval (``low``/``high`` NaN when ``n < 2``)."""

    mean: float
    low: float
    high: float
    n: int
    sd: float
    confidence: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0

    def excludes(self, value: float = 0.0) -> bool:
        """True when the interval is defined and ``value`` lies outside it."""
        if math.isnan(self.low) or math.isnan(self.high):
            return False
        return value < self.low or value > self.high


def _t_quantile(q: float, dof: int) -> float:
    from scipy.stats import t as student_t  # local import: scipy is only needed here

    return float(student_t.ppf(q, dof))


def t_interval(values: Iterable[float], confidence: float = 0.95) -> Interval:
    """Mean and Student-t confidence interval of ``values`` (NaNs are an error, not dropped).

    ``half = t_{(1+confidence)/2, n-1} * sd / sqrt(n)`` with the sample standard deviation
    (``n - 1`` denominator).  ``n = 1`` gives NaN bounds; ``n = 0`` is an error.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r} (e.g. 0.95)")
    x = np.asarray(list(values), dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("t_interval needs at least one value; got none (did a filter remove every run?)")
    if np.isnan(x).any():
        raise ValueError(f"t_interval got NaN among {x.size} values; drop or fix the failed runs first")
    n = int(x.size)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1, math.nan, confidence)
    sd = float(x.std(ddof=1))
    half = _t_quantile(0.5 + confidence / 2.0, n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, sd, confidence)


def require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{what}: column(s) {missing} not in the frame; available columns: {list(frame.columns)}"
        )


def unit_values(frame: pd.DataFrame, metric: str | None = None, *, split: str = SPLIT
                ) -> tuple[pd.Series, str]:
    """The sample a statistic is computed on: one value per class split, and the unit's name.

    With two or more distinct class splits (column ``split``), ``metric`` (or, when ``metric`` is
    None, ``frame`` itself, a Series) is averaged over the runs of each split: ``("class split")``.
    Otherwise (one fixed split, or no split column) every run is a unit: ``("run")``.
    """
    values = frame if metric is None else frame[metric]
    index = frame.index.to_frame() if metric is None else frame
    if split in index.columns and index[split].nunique(dropna=True) >= 2:
        keys = index[split].to_numpy()
        return values.groupby(keys, sort=True).mean(), "class split"
    return values.reset_index(drop=True), "run"


def summarize(
    frame: pd.DataFrame,
    by: str | Sequence[str],
    metrics: str | Sequence[str],
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Mean and t-interval of each metric over the class splits in each group.

    Within a group, the runs of one class split are averaged first (:func:`unit_values`); the
    interval is over the split means.  Returns a long frame: the ``by`` columns, ``metric``, ``n``
    (number of units), ``unit`` ("class split" or "run"), ``runs``, ``mean``, ``sd``, ``ci_low``,
    ``ci_high`` (one row per group and metric, groups in order of first appearance).  Runs with a
    missing value for a metric are left out of that metric's interval.
    """
    by = [by] if isinstance(by, str) else list(by)
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    require_columns(frame, [*by, *metrics], "summarize")
    rows = []
    for key, group in frame.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        for metric in metrics:
            kept = group[group[metric].notna()]
            if kept.empty:
                continue
            values, unit = unit_values(kept, metric)
            iv = t_interval(values.astype(float), confidence)
            rows.append({**dict(zip(by, key)), "metric": metric, "n": iv.n, "unit": unit,
                         "runs": len(kept), "mean": iv.mean, "sd": iv.sd, "ci_low": iv.low,
                         "ci_high": iv.high})
    return pd.DataFrame(rows, columns=[*by, "metric", "n", "unit", "runs", "mean", "sd", "ci_low",
                                       "ci_high"])


def paired_differences(
    frame: pd.DataFrame,
    metric: str,
    *,
    column: str,
    treatment: object,
    baseline: object,
    units: Sequence[str] = DEFAULT_UNITS,
) -> tuple[pd.Series, str]:
    """Per-unit differences ``treatment - baseline`` of ``metric`` and the unit's name.

    Rows with ``frame[column] == treatment`` are matched to rows with ``== baseline`` that share
    every ``units`` value (same seed and class split; several rows for one run are averaged); the
    matched differences are then averaged within each class split (:func:`unit_values`).  Returns
    the Series of per-split differences (indexed by split; by run when there is one split only).
    """
    units = [u for u in units if u in frame.columns]
    require_columns(frame, [column, metric], "paired_effect")
    if not units:
        raise ValueError(f"paired_effect needs replicate columns such as {list(DEFAULT_UNITS)}")
    sides = {}
    for name, value in (("treatment", treatment), ("baseline", baseline)):
        part = frame[frame[column] == value]
        if part.empty:
            raise ValueError(
                f"paired_effect: no runs with {column} == {value!r} ({name}); "
                f"values present: {sorted(map(str, frame[column].unique()))}"
            )
        sides[name] = part.groupby(units, dropna=False)[metric].mean()  # split None: fixed split
    joined = pd.concat(sides, axis=1, join="inner").dropna()
    if joined.empty:
        raise ValueError(
            f"paired_effect: {treatment!r} and {baseline!r} share no (seed, split) unit; "
            "run both with the same seeds and class splits"
        )
    return unit_values(joined["treatment"] - joined["baseline"])


def paired_effect(
    frame: pd.DataFrame,
    metric: str,
    *,
    column: str,
    treatment: object,
    baseline: object,
    units: Sequence[str] = DEFAULT_UNITS,
    confidence: float = 0.95,
) -> Interval:
    """Paired effect ``treatment - baseline`` of ``metric``: :func:`t_interval` of the per-split
    differences of :func:`paired_differences` (a paired t-interval over class splits)."""
    diffs, _ = paired_differences(frame, metric, column=column, treatment=treatment,
                                  baseline=baseline, units=units)
    return t_interval(diffs, confidence)


def paired_effects(
    frame: pd.DataFrame,
    metrics: Sequence[str],
    *,
    column: str,
    baseline: object,
    treatments: Sequence[object] | None = None,
    units: Sequence[str] = DEFAULT_UNITS,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """:func:`paired_effect` of every treatment against one baseline, as a tidy frame.

    Columns: ``column``, ``metric``, ``n``, ``effect``, ``ci_low``, ``ci_high``, ``excludes_0``.
    """
    if treatments is None:
        treatments = [v for v in frame[column].unique() if v != baseline]
    rows = []
    for treatment in treatments:
        for metric in metrics:
            iv = paired_effect(frame, metric, column=column, treatment=treatment,
                               baseline=baseline, units=units, confidence=confidence)
            rows.append({column: treatment, "metric": metric, "n": iv.n, "effect": iv.mean,
                         "ci_low": iv.low, "ci_high": iv.high, "excludes_0": iv.excludes(0.0)})
    return pd.DataFrame(rows)




#: The accuracy columns with a teacher counterpart, and the class count that sets their chance level.
CHANCE_CLASSES: dict[str, str] = {"acc_id": "n_seen", "acc_ood_zeroshot": "n_unseen"}


def above_chance_share(student, teacher, chance):
    """``(student - chance) / (teacher - chance)`` elementwise (scalars, arrays or Series, in %):
    the share of the teacher's ability above chance a student has (1: as good as its teacher, 0:
    chance); NaN where the teacher is at or below chance or an input is missing."""
    s, t, c = (np.asarray(v, dtype=float) for v in (student, teacher, chance))
    gap = t - c
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(gap > 0, (s - c) / np.where(gap > 0, gap, 1.0), np.nan)
    if isinstance(student, pd.Series):
        return pd.Series(out, index=student.index, name=student.name)
    return float(out) if out.ndim == 0 else out


def with_transfer(frame: pd.DataFrame, metrics: Sequence[str] = ("acc_ood_zeroshot",)) -> pd.DataFrame:
    """``frame`` with ``transfer_<metric>``: the share (%) of the teacher's accuracy on the same images
    with the same class texts that the student reaches, ``100 * metric / teacher_<metric>``; and, for
    X_id and X_ood zero-shot, ``above_chance_<metric>``: the share of the teacher's accuracy *above
    chance* (:func:`above_chance_share`, chance = 100 / the number of classes of that split).

    Needs the teacher columns the trainer records (``teacher_acc_ood_zeroshot``, ``teacher_acc_id``)
    and the class counts (``n_seen``, ``n_unseen``); rows without them get NaN."""
    out = frame.copy()
    for metric in metrics:
        teacher = f"teacher_{metric}"
        if metric in out.columns and teacher in out.columns:
            out[f"transfer_{metric}"] = 100.0 * out[metric] / out[teacher]
    for metric, classes in CHANCE_CLASSES.items():
        teacher = f"teacher_{metric}"
        if {metric, teacher, classes} <= set(out.columns):
            chance = 100.0 / pd.to_numeric(out[classes], errors="coerce")
            out[f"above_chance_{metric}"] = above_chance_share(out[metric].astype(float), out[teacher].astype(float),
                                                               chance)
    return out


def per_class_effects(
    frame: pd.DataFrame,
    *,
    column: str,
    treatment: object,
    baseline: object,
    metric: str = "acc_ood_zeroshot",
    units: Sequence[str] = DEFAULT_UNITS,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Per unseen class, the paired effect ``treatment - baseline`` of its accuracy (columns
    ``per_class.<metric>.<class>`` that the run store's rows carry), over the class splits where
    that class is unseen.  Columns: ``class``, ``n`` (splits), ``effect``, ``ci_low``, ``ci_high``,
    ``differences`` (the per-split values)."""
    prefix = f"per_class.{metric}."
    rows = []
    for col in [c for c in frame.columns if c.startswith(prefix)]:
        sub = frame[frame[col].notna()]
        if not ((sub[column] == treatment).any() and (sub[column] == baseline).any()):
            continue
        try:
            diffs, _ = paired_differences(sub, col, column=column, treatment=treatment,
                                          baseline=baseline, units=units)
        except ValueError:
            continue  # the class is unseen on no split both settings ran
        iv = t_interval(diffs, confidence)
        rows.append({"class": col[len(prefix):], "n": iv.n, "effect": iv.mean, "ci_low": iv.low,
                     "ci_high": iv.high, "differences": list(diffs)})
    return pd.DataFrame(rows, columns=["class", "n", "effect", "ci_low", "ci_high", "differences"])
