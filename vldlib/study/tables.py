"""Tables of a chapter: effects, intervals, and our numbers beside the paper's reference values."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from vldlib.study.readings import format_interval
from vldlib.study.stats import require_columns


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
    require_columns(summary, [*index, "metric", "mean", "ci_low", "ci_high"], "interval_table")
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
    require_columns(summary, [key, "metric", "mean", "ci_low", "ci_high"], "beside_paper (ours)")
    require_columns(paper, [paper_key, *metrics.values()], "beside_paper (paper)")
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


