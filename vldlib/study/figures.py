"""Figures of a chapter: forest plots of effects and intervals, lines over a parameter.
matplotlib and seaborn are imported inside each function (plotting is the only user)."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from vldlib.study.stats import require_columns, summarize, t_interval


def plot_effects(comparisons: pd.DataFrame, *, title: str | None = None, unit: str = "points"):
    """Forest plot of :func:`compare` output, one panel per metric (each with its own scale): our
    paired effects with their intervals (dots and bars), each class split's own difference (small
    grey dots, from ``comparisons.attrs["differences"]`` when present: how much the effect varies
    between splits) and the paper's differences (hollow diamonds).  Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if comparisons.empty:
        raise ValueError("plot_effects got no comparisons (none of the compared settings was run)")
    metrics = list(dict.fromkeys(comparisons["metric"]))
    sizes = [int((comparisons["metric"] == m).sum()) for m in metrics]
    fig, axes = plt.subplots(len(metrics), 1, figsize=(9, 0.42 * sum(sizes) + 1.1 * len(metrics) + 0.4),
                             gridspec_kw={"height_ratios": sizes}, squeeze=False, layout="constrained")
    color = sns.color_palette(n_colors=1)[0]
    diffs = list(comparisons.attrs.get("differences") or [])
    per_row = dict(zip(comparisons.index, diffs)) if len(diffs) == len(comparisons) else {}
    for ax, metric in zip(axes[:, 0], metrics):
        mask = comparisons["metric"] == metric
        part = comparisons[mask].reset_index(drop=True)
        splits = [per_row.get(i) for i in comparisons.index[mask]]
        y = list(range(len(part)))[::-1]
        for yi, (_, row), d in zip(y, part.iterrows(), splits):
            if d is not None and len(d):
                jitter = [0.18 * ((j % 5) - 2) / 2 for j in range(len(d))]
                ax.plot(list(d), [yi + 0.22 + jj for jj in jitter], ".", color="grey", ms=4, alpha=0.7)
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
    if per_row:
        handles.insert(1, plt.Line2D([], [], marker=".", color="grey", lw=0, label="one class split"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


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

    require_columns(frame, [x, y] + ([hue] if hue else []), "plot_intervals")
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

    require_columns(frame, [x, y] + ([hue] if hue else []), "plot_lines")
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


def plot_per_class(gains: pd.DataFrame, *, title: str | None = None, unit: str = "points"):
    """Which unseen classes gain: :func:`vldlib.study.stats.per_class_effects` output as a forest
    plot, one row per class (mean difference over the splits where it is unseen, its interval, and
    each split's difference as a grey dot).  Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    require_columns(gains, ["class", "effect", "ci_low", "ci_high", "differences"], "plot_per_class")
    if gains.empty:
        raise ValueError("plot_per_class got no classes (no run carries per-class accuracies)")
    color = sns.color_palette(n_colors=1)[0]
    part = gains.sort_values("effect").reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 0.38 * len(part) + 1.3), layout="constrained")
    for yi, row in part.iterrows():
        ax.plot(row["differences"], [yi + 0.2] * len(row["differences"]), ".", color="grey", ms=4, alpha=0.7)
        if not pd.isna(row["ci_low"]):
            ax.plot([row["ci_low"], row["ci_high"]], [yi, yi], color=color, lw=2)
        ax.plot(row["effect"], yi, "o", color=color)
    ax.axvline(0.0, color="grey", lw=1, ls="--")
    ax.set_yticks(range(len(part)))
    ax.set_yticklabels([f"{c} ({n} splits)" for c, n in zip(part["class"], part["n"])], fontsize=8)
    ax.set_xlabel(f"difference ({unit})" if unit else "difference", fontsize=9)
    if title:
        ax.set_title(title, fontsize=10)
    return fig
