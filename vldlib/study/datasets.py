"""One report over several datasets: a grid per data root, Table 1 with a column per dataset.

``dataset_roots`` (a notebook parameter; ``python -m vldlib.book --dataset-root A --dataset-root
B``) names the data folders. Each root is an official folder (it holds ``label2text.txt``) or an
image folder ``root/<class>/<images>`` (:mod:`vldlib.data.folder`); :func:`dataset_kind` tells
which. :func:`dataset_grids` builds one grid per root from the same notebook parameters, and
:func:`label_runs` labels each run with its ``dataset`` and makes its class split unique across
datasets (``"<dataset>:<split>"``), so that paired effects pair runs within one dataset and their
intervals are over (dataset, class split) units. :func:`by_dataset_table` is Table 1 with one
column per dataset and the average over datasets, beside the paper's per-dataset columns and its
six-dataset Average. The runs of every dataset live in one run store: a run's config holds its
data root (``dataset_options.root``), so runs of different roots never share a hash.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from vldlib.data.specs import dataset_spec
from vldlib.study.grid import PAPER_DATASETS, Grid, make_grid
from vldlib.study.readings import format_interval
from vldlib.study.stats import summarize

__all__ = ["AVERAGE", "dataset_kind", "own_descriptions", "dataset_labels", "dataset_grids", "label_runs", "by_dataset_table"]

#: The column of the average over datasets (the paper's name for its six-dataset mean).
AVERAGE = "Average"


def dataset_kind(root: str | Path) -> str:
    """``"official"`` for a folder with ``label2text.txt`` (the official format), else ``"folder"``."""
    return "official" if (Path(root) / "label2text.txt").is_file() else "folder"


def own_descriptions(config: Mapping[str, Any]) -> bool:
    """Whether a run config's dataset ships its own main-prompt descriptions, read with
    ``descriptions="official"``: an official folder (``chatgpt.txt``) or an image folder with
    ``descriptions.json``; otherwise the main prompt's sentences come from a description cache."""
    return dataset_spec(str(config.get("dataset"))).ships_descriptions(config.get("dataset_options") or {})


def dataset_labels(roots: Sequence[str | Path]) -> list[str]:
    """A display name per root: its folder name (the paper's dataset name for an official folder
    named so), made unique with its parent folder's name when two roots share a name."""
    names = [Path(r).resolve().name for r in roots]
    out = []
    for root, name in zip(roots, names):
        out.append(f"{Path(root).resolve().parent.name}/{name}" if names.count(name) > 1 else name)
    if len(set(out)) != len(out):
        raise ValueError(f"dataset roots {list(map(str, roots))} are given more than once; name each folder once")
    return out


def dataset_grids(roots: Sequence[str | Path], grid_kw: Mapping[str, Any],
                  n_splits: int | None = None) -> dict[str, Grid]:
    """``{dataset label: grid}``, one grid per root from the same parameters (``grid_kw`` as for
    :func:`make_grid`; ``dataset`` and ``dataset_root`` come from each root, ``paper_dataset`` is the
    root's name when the paper has it)."""
    kw = {k: v for k, v in grid_kw.items() if k not in ("dataset", "dataset_root", "paper_dataset")}
    grids = {}
    for label, root in zip(dataset_labels(roots), roots):
        grids[label] = make_grid(**kw, dataset=dataset_kind(root), dataset_root=str(root), n_splits=n_splits,
                                 paper_dataset=label if label in PAPER_DATASETS else "Average")
    return grids


def label_runs(configs: Sequence[tuple[dict, dict]], dataset: str) -> list[tuple[dict, dict]]:
    """``(labels, config)`` of one dataset's grid with ``dataset`` added and the class split made
    unique across datasets (the unit of the intervals and of the paired effects)."""
    out = []
    for labels, cfg in configs:
        split = labels.get("split_seed")
        out.append(({**labels, "dataset": dataset, "split_seed": dataset if split is None else f"{dataset}:{split}"},
                    cfg))
    return out


def by_dataset_table(runs: pd.DataFrame, paper: pd.DataFrame, *, column: str, metrics: Mapping[str, str],
                     names: Mapping[str, str], datasets: Sequence[str], order: Sequence[str],
                     paper_key: str = "method_key", labels: Mapping[str, str] | None = None,
                     digits: int = 1) -> pd.DataFrame:
    """Rows: the variants (``column`` of ``runs``, in ``order``); columns: (metric name, dataset
    or :data:`AVERAGE`, ``ours`` / ``paper``). Ours per dataset: mean [95% CI] over its class splits;
    ours Average: the mean over datasets of those means (each dataset counts once, as the paper's
    Average). Paper: its value for a dataset of the same name, "–" for datasets it does not have;
    its own six-dataset Average under Average. ``metrics``: our metric -> the paper's field;
    ``names``: our metric -> its display name; ``paper``: the long table of every dataset."""
    summary = summarize(runs, [column, "dataset"], list(metrics))
    data: dict[tuple[str, str, str], list[str]] = {}
    for metric, field in metrics.items():
        for ds in [*datasets, AVERAGE]:
            ours, theirs = [], []
            for variant in order:
                rows = summary[(summary[column] == variant) & (summary["metric"] == metric)]
                if ds == AVERAGE:
                    means = rows.set_index("dataset")["mean"].reindex(datasets)
                    ours.append("–" if means.isna().any() else f"{means.mean():.{digits}f}")
                else:
                    row = rows[rows["dataset"] == ds]
                    ours.append("–" if row.empty else format_interval(
                        float(row["mean"].iloc[0]), float(row["ci_low"].iloc[0]), float(row["ci_high"].iloc[0]), digits))
                hit = paper.loc[(paper["dataset"] == ds) & (paper[paper_key] == variant), field].dropna()
                theirs.append("–" if hit.empty else f"{float(hit.iloc[0]):.{digits}f}")
            data[(names[metric], ds, "ours")] = ours
            data[(names[metric], ds, "paper")] = theirs
    table = pd.DataFrame(data, index=[(labels or {}).get(v, v) for v in order])
    table.columns = pd.MultiIndex.from_tuples(list(data))
    return table
