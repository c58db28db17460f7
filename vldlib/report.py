"""Notebook helpers: intervals over seeds and class splits, tables beside the paper, figures, readings.

Everything here works on tidy pandas frames (one row per run, as ``RunStore.to_frame()`` gives)
and is deterministic; nothing trains or reads the run store.

Statistics (all two-sided, confidence ``1 - alpha``, default 95 %):

* **Mean and t-interval over runs.**  For values ``x_1..x_n`` (one per seed x class split)::

      mean = (1/n) sum x_i,   sd = sqrt( sum (x_i - mean)^2 / (n - 1) ),
      half = t_{1 - alpha/2, n - 1} * sd / sqrt(n),   CI = [mean - half, mean + half]

  With ``n = 1`` the interval is undefined (NaN): one run says nothing about its noise.
* **Paired effect of a change.**  Two settings run with the same seeds and class splits form pairs;
  the effect is the mean of the per-pair differences ``d_i = x_i(treatment) - x_i(baseline)`` with
  the t-interval of the ``d_i`` (a paired t-interval).  Pairing removes the split-to-split spread
  shared by both settings, which is what lets small runs separate methods.
* **Reading.**  An interval that excludes 0 is reported as an effect ("raises ... by 4.1 points
  (95% CI 2.0 to 6.2)"); one that includes 0 as "no detectable effect".  When the paper's own
  difference is given, the sentence says whether the paper's effect appears here, is reversed, or
  does not appear (the interval includes 0).

The paper reports single runs without intervals (paper.md §7.14); its values enter the tables
as labelled reference values, never as numbers in the prose.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "Interval",
    "t_interval",
    "summarize",
    "paired_effect",
    "paired_effects",
    "format_interval",
    "effect_sentence",
    "paper_difference",
    "verdict",
    "Comparison",
    "compare",
    "plot_effects",
    "effects_table",
    "beside_paper",
    "interval_table",
    "plot_intervals",
    "plot_lines",
]

DEFAULT_UNITS = ("seed", "split_seed")
"""Columns that identify one replicate (a training seed on one class split)."""


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


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{what}: column(s) {missing} not in the frame; available columns: {list(frame.columns)}"
        )


def summarize(
    frame: pd.DataFrame,
    by: str | Sequence[str],
    metrics: str | Sequence[str],
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Mean and t-interval of each metric over the runs in each group.

    Returns a long frame: the ``by`` columns, ``metric``, ``n``, ``mean``, ``sd``, ``ci_low``,
    ``ci_high`` (one row per group and metric, groups in order of first appearance).  Runs with a
    missing value for a metric are left out of that metric's interval (``n`` counts the rest).
    """
    by = [by] if isinstance(by, str) else list(by)
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    _require_columns(frame, [*by, *metrics], "summarize")
    rows = []
    for key, group in frame.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        for metric in metrics:
            values = group[metric].dropna()
            if values.empty:
                continue
            iv = t_interval(values.astype(float), confidence)
            rows.append({**dict(zip(by, key)), "metric": metric, "n": iv.n, "mean": iv.mean,
                         "sd": iv.sd, "ci_low": iv.low, "ci_high": iv.high})
    return pd.DataFrame(rows, columns=[*by, "metric", "n", "mean", "sd", "ci_low", "ci_high"])


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
    """Paired effect ``treatment - baseline`` of ``metric``, matched on the ``units`` columns.

    Rows with ``frame[column] == treatment`` are matched to rows with ``== baseline`` that share
    every ``units`` value (same seed and class split); the result is :func:`t_interval` of the
    differences.  Several rows for one unit and setting are averaged first.
    """
    units = [u for u in units if u in frame.columns]
    _require_columns(frame, [column, metric], "paired_effect")
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
    return t_interval(joined["treatment"] - joined["baseline"], confidence)


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
) -> str:
    """A plain-language reading of a paired effect, with every number computed.

    ``paper`` is the paper's own difference for the same comparison (``None`` if it has none).
    Examples: "L_im-cst raises zero-shot X_ood accuracy by 4.1 points (95% CI 2.0 to 6.2, 6 paired
    runs) over L_cls." / "... the paper's effect (+7.0) does not appear here: the interval includes 0."
    """
    pct = f"{round(effect.confidence * 100):d}%"
    u = f" {unit}" if unit else ""
    if effect.n < 2 or math.isnan(effect.low):
        body = (f"{treatment} changes {metric} by {_signed(effect.mean, digits)}{u} over {baseline} "
                f"in a single paired run: too few runs for an interval, so no conclusion.")
        return body + (f" The paper reports {_signed(paper, digits)}{u}." if paper is not None else "")
    ci = f"({pct} CI {effect.low:.{digits}f} to {effect.high:.{digits}f}, {effect.n} paired runs)"
    if effect.excludes(0.0):
        verb = "raises" if effect.mean > 0 else "lowers"
        body = f"{treatment} {verb} {metric} by {abs(effect.mean):.{digits}f}{u} {ci} over {baseline}."
    else:
        body = (f"{treatment} changes {metric} by {_signed(effect.mean, digits)}{u} {ci} over "
                f"{baseline}: the interval includes 0, so no effect is detectable at this scale.")
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
    _require_columns(paper, [column, metric], "paper_difference")
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
    ``n``, ``effect``, ``ci_low``, ``ci_high``, ``paper``, ``verdict``, ``reading``.
    """
    labels = dict(labels or {})
    metric_labels = dict(metric_labels or {})
    present = set(frame[column].unique()) if column in frame.columns else set()
    rows = []
    for c in comparisons:
        if c.treatment not in present or c.baseline not in present:
            continue
        eff = paired_effect(frame, c.metric, column=column, treatment=c.treatment,
                            baseline=c.baseline, units=units, confidence=confidence)
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
        rows.append({
            "comparison": f"{t_label} vs {b_label}",
            "metric": m_label,
            "n": eff.n, "effect": eff.mean, "ci_low": eff.low, "ci_high": eff.high,
            "paper": pdiff,
            "verdict": verdict(eff, pdiff, digits),
            "reading": effect_sentence(eff, metric=m_label, treatment=t_label, baseline=b_label,
                                       paper=pdiff, digits=digits, unit=unit),
        })
    return pd.DataFrame(rows, columns=["comparison", "metric", "n", "effect", "ci_low", "ci_high",
                                       "paper", "verdict", "reading"])


def effects_table(comparisons: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """:func:`compare` output formatted for display (effect with interval, paper, verdict)."""
    return pd.DataFrame({
        "comparison": comparisons["comparison"],
        "metric": comparisons["metric"],
        "ours: effect [95% CI]": [format_interval(m, lo, hi, digits) for m, lo, hi in
                                  zip(comparisons["effect"], comparisons["ci_low"], comparisons["ci_high"])],
        "paired runs": comparisons["n"],
        "paper: difference": ["–" if p is None or pd.isna(p) else f"{p:+.{digits}f}" for p in comparisons["paper"]],
        "verdict": comparisons["verdict"],
    }).set_index(["comparison", "metric"])


def plot_effects(comparisons: pd.DataFrame, *, title: str | None = None, unit: str = "points"):
    """Forest plot of :func:`compare` output, one panel per metric (each with its own scale): our
    paired effects with their intervals (dots and bars) and the paper's differences (hollow
    diamonds).  Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if comparisons.empty:
        raise ValueError("plot_effects got no comparisons (none of the compared settings was run)")
    metrics = list(dict.fromkeys(comparisons["metric"]))
    sizes = [int((comparisons["metric"] == m).sum()) for m in metrics]
    fig, axes = plt.subplots(len(metrics), 1, figsize=(9, 0.42 * sum(sizes) + 1.1 * len(metrics) + 0.4),
                             gridspec_kw={"height_ratios": sizes}, squeeze=False, layout="constrained")
    color = sns.color_palette(n_colors=1)[0]
    for ax, metric in zip(axes[:, 0], metrics):
        part = comparisons[comparisons["metric"] == metric].reset_index(drop=True)
        y = list(range(len(part)))[::-1]
        for yi, (_, row) in zip(y, part.iterrows()):
            if not pd.isna(row["ci_low"]):
                ax.plot([row["ci_low"], row["ci_high"]], [yi, yi], color=color, lw=2)
            ax.plot(row["effect"], yi, "o", color=color)
            if row["paper"] is not None and not pd.isna(row["paper"]):
                ax.plot(row["paper"], yi, "D", mfc="none", color="crimson", ms=7)
        ax.axvline(0.0, color="grey", lw=1, ls="--")
        ax.set_yticks(y)
        ax.set_yticklabels(part["comparison"], fontsize=8)
        ax.set_ylim(-0.6, len(part) - 0.4)
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel(f"difference ({unit})" if unit else "difference", fontsize=9)
    handles = [plt.Line2D([], [], marker="o", color=color, lw=2, label="ours: paired mean, 95% CI"),
               plt.Line2D([], [], marker="D", mfc="none", color="crimson", lw=0, label="paper (single runs)")]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def interval_table(
    summary: pd.DataFrame,
    index: str | Sequence[str],
    *,
    labels: Mapping[str, str] | None = None,
    digits: int = 1,
    order: Sequence[object] | None = None,
) -> pd.DataFrame:
    """Wide table of ``"mean [low, high]"`` strings from :func:`summarize` output.

    Rows: ``index``; columns: metrics (renamed by ``labels``, in ``labels`` order when given).
    """
    index = [index] if isinstance(index, str) else list(index)
    _require_columns(summary, [*index, "metric", "mean", "ci_low", "ci_high"], "interval_table")
    cells = summary.assign(cell=[format_interval(m, lo, hi, digits) for m, lo, hi in
                                 zip(summary["mean"], summary["ci_low"], summary["ci_high"])])
    wide = cells.pivot_table(index=index, columns="metric", values="cell", aggfunc="first", sort=False)
    wide.columns.name = None
    if labels:
        keep = [m for m in labels if m in wide.columns]
        wide = wide[keep].rename(columns=labels)
    if order is not None:
        wide = wide.reindex([o for o in order if o in wide.index])
    return wide


def beside_paper(
    summary: pd.DataFrame,
    paper: pd.DataFrame,
    *,
    key: str,
    metrics: Mapping[str, str],
    paper_key: str | None = None,
    labels: Mapping[object, str] | None = None,
    order: Sequence[object] | None = None,
    digits: int = 1,
    ours: str = "ours",
    theirs: str = "paper",
) -> pd.DataFrame:
    """Our mean [95% CI] beside the paper's published value, one row per setting.

    ``summary`` is :func:`summarize` output grouped by ``key``; ``paper`` a
    :func:`vldlib.reference.paper_table` frame filtered to one dataset, whose ``paper_key`` column
    (default ``key``) holds the same setting names.  ``metrics`` maps our metric columns to the
    paper's (e.g. ``{"ood_zero_shot_acc": "ood_zero_shot_acc"}``).  Columns are a two-level index
    (metric label, ``ours`` / ``paper``); missing paper values show as "–".
    """
    paper_key = paper_key or key
    _require_columns(summary, [key, "metric", "mean", "ci_low", "ci_high"], "beside_paper (ours)")
    _require_columns(paper, [paper_key, *metrics.values()], "beside_paper (paper)")
    keys = list(order) if order is not None else list(dict.fromkeys(summary[key]))
    columns = []
    data: dict[tuple[str, str], list[str]] = {}
    for ours_metric, paper_metric in metrics.items():
        label = ours_metric
        for who in (ours, theirs):
            columns.append((label, who))
            data[(label, who)] = []
        for k in keys:
            row = summary[(summary[key] == k) & (summary["metric"] == ours_metric)]
            data[(label, ours)].append(
                format_interval(float(row["mean"].iloc[0]), float(row["ci_low"].iloc[0]),
                                float(row["ci_high"].iloc[0]), digits) if not row.empty else "–")
            hit = paper.loc[paper[paper_key] == k, paper_metric].dropna()
            data[(label, theirs)].append(f"{float(hit.iloc[0]):.{digits}f}" if not hit.empty else "–")
    table = pd.DataFrame(data, index=[labels.get(k, str(k)) if labels else str(k) for k in keys])
    table.columns = pd.MultiIndex.from_tuples(columns)
    return table


def plot_intervals(
    frame: pd.DataFrame,
    *,
    x: str,
    y: str,
    hue: str | None = None,
    order: Sequence[object] | None = None,
    paper: Mapping[object, float] | None = None,
    ax=None,
    confidence: float = 0.95,
    ylabel: str | None = None,
    title: str | None = None,
):
    """Each run as a dot (seaborn strip plot), the mean with its t-interval as a bar, and the
    paper's value (if given, keyed by ``x``) as a hollow diamond.  Returns the matplotlib axes."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    _require_columns(frame, [x, y] + ([hue] if hue else []), "plot_intervals")
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4.0, 0.9 * frame[x].nunique() + 2), 3.4))
    order = list(order) if order is not None else list(dict.fromkeys(frame[x]))
    hue_order = list(dict.fromkeys(frame[hue])) if hue else None
    sns.stripplot(data=frame, x=x, y=y, hue=hue, order=order, hue_order=hue_order, dodge=bool(hue),
                  alpha=0.45, size=4, ax=ax, jitter=0.15, legend=bool(hue))
    groups = hue_order or [None]
    width = 0.8 / len(groups) if hue else 0.0
    palette = sns.color_palette(n_colors=len(groups))
    for g, (group, color) in enumerate(zip(groups, palette)):
        part = frame if group is None else frame[frame[hue] == group]
        for i, level in enumerate(order):
            values = part.loc[part[x] == level, y].dropna()
            if values.empty:
                continue
            iv = t_interval(values, confidence)
            pos = i + (g - (len(groups) - 1) / 2) * width if hue else i
            err = None if math.isnan(iv.low) else [[iv.mean - iv.low], [iv.high - iv.mean]]
            ax.errorbar(pos, iv.mean, yerr=err, fmt="o", color="black" if not hue else color,
                        markersize=6, capsize=4, lw=1.5, zorder=5)
    if paper:
        pts = [(i, paper[level]) for i, level in enumerate(order)
               if level in paper and paper[level] is not None and not pd.isna(paper[level])]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker="D", facecolors="none",
                       edgecolors="crimson", s=55, zorder=6, label="paper (published)")
            ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("")
    ax.set_ylabel(ylabel or y)
    if title:
        ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=20)
    return ax


def plot_lines(
    frame: pd.DataFrame,
    *,
    x: str,
    y: str,
    hue: str | None = None,
    ax=None,
    ylabel: str | None = None,
    title: str | None = None,
    confidence: float = 0.95,
):
    """Mean line with a shaded t-interval band over runs (e.g. a spectrum or a curve over k)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    _require_columns(frame, [x, y] + ([hue] if hue else []), "plot_lines")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.4))
    groups = list(dict.fromkeys(frame[hue])) if hue else [None]
    for group, color in zip(groups, sns.color_palette(n_colors=len(groups))):
        part = frame if group is None else frame[frame[hue] == group]
        stats = summarize(part, x, y, confidence).sort_values(x)
        ax.plot(stats[x], stats["mean"], marker="o", ms=3, color=color, label=None if group is None else str(group))
        ax.fill_between(stats[x], stats["ci_low"], stats["ci_high"], color=color, alpha=0.2, lw=0)
    if hue:
        ax.legend(fontsize=8)
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel or y)
    if title:
        ax.set_title(title)
    return ax
