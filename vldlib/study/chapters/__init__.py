"""The book's chapters, each declared once as data (:class:`Chapter`): its notebook, question,
variants, metrics, the paper's keys and the comparisons its readings are made of.

A notebook is a thin view of its chapter::

    ch = open_chapter("main_results", globals())  # validates every config before anything trains
    runs = ch.train()                             # the run store trains only the missing runs
    display(ch.table(runs)); ch.figure(runs)      # beside the paper; one dot per run
    display(Markdown(ch.reading(runs)))           # computed sentences

``book/summary.py`` reads the same declarations (labels, metrics, comparisons) instead of
reverse-engineering them from the records.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from vldlib.runs import RunStore
from vldlib.study import report
from vldlib.study.grid import Grid, make_grid, run_grid
from vldlib.study.parameters import GRID_NAMES
from vldlib.study.readings import Comparison

__all__ = ["Chapter", "ChapterRun", "ACCURACY", "ACCURACY_NAMES", "TABLE1_LABELS", "CHAPTERS",
           "GRID_PARAMETERS", "open_chapter", "chapter"]

#: Our accuracy columns -> the paper's accuracy fields (Table 1 and the tables built like it).
ACCURACY: dict[str, str] = {"acc_id": "id_acc", "acc_ood_zeroshot": "ood_zero_shot_acc",
                            "acc_ood_5shot": "ood_5shot_acc"}
ACCURACY_NAMES: dict[str, str] = {"acc_id": "X_id", "acc_ood_zeroshot": "X_ood zero-shot",
                                  "acc_ood_5shot": "X_ood 5-shot"}
#: Short row names of Table 1's loss combinations (the keys of ``TABLE1_METHODS``).
TABLE1_LABELS: dict[str, str] = {
    "cls": "L_cls (naive baseline)", "mse": "L_mse", "imcst": "L_im-cst",
    "cls+mse": "L_cls + L_mse", "cls+imcst": "L_cls + L_im-cst",
    "cls+imcst+mse": "L_cls + L_mse + L_im-cst",
    "cls+imcst+vlprox(+mse)": "L_cls + L_mse + L_im-cst + L_vlprox",
}
#: The notebook parameters that shape the grid (passed to :func:`vldlib.study.grid.make_grid`);
#: every notebook parameter's type is declared in :mod:`vldlib.study.parameters`.
GRID_PARAMETERS: tuple[str, ...] = GRID_NAMES


@dataclass(frozen=True)
class Chapter:
    """One chapter as data.

    ``variants``: label -> config overrides (run on every seed x class split); ``column``: the
    run-table column naming the variant; ``metrics``: our metric columns -> the paper's field
    names in ``paper_tables``; ``comparisons``: the paired effects its reading reports;
    ``labels``: display names of the variants; ``offline_splits``: how many test class splits the
    offline default runs (None: the profile's, :data:`vldlib.study.grid.OFFLINE_SPLITS`), for a
    chapter whose comparisons need more power; ``powered``: when given, only these variants run on
    all ``offline_splits`` splits, the others on the profile's default number.
    """

    name: str
    title: str
    question: str
    paper_tables: tuple[str, ...]
    column: str = "method"
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    metrics: Mapping[str, str] = field(default_factory=dict)
    comparisons: tuple[Comparison, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    module: str = ""
    offline_splits: int | None = None
    powered: tuple[str, ...] = ()

    def label(self, key: Any) -> str:
        return str(self.labels.get(key, key))


class ChapterRun:
    """A chapter with its notebook's parameters: the grid (validated), the run store, the runs."""

    def __init__(self, chapter: Chapter, params: Mapping[str, Any]) -> None:
        self.chapter = chapter
        self.params = dict(params)
        grid_kw = {k: self.params[k] for k in GRID_PARAMETERS if k in self.params}
        self.grid: Grid = make_grid(**grid_kw, n_splits=chapter.offline_splits)
        self.store = RunStore(self.params.get("results_dir", "results"), cache_dir=self.params.get("cache_dir"))

    def expand(self, variants: Mapping[str, Mapping[str, Any]]) -> None:
        """Expand the grid over ``variants`` (validating every config) and print its size."""
        fewer = self.grid.default_split_seeds
        if fewer is not None and self.chapter.powered:
            self.grid.expand({k: v for k, v in variants.items() if k in self.chapter.powered},
                             column=self.chapter.column)
            self.grid.expand({k: v for k, v in variants.items() if k not in self.chapter.powered},
                             column=self.chapter.column, split_seeds=fewer)
        else:
            self.grid.expand(variants, column=self.chapter.column)
        g = self.grid
        print(f"profile {g.profile}: {g.dataset}, teacher {g.base['teacher']}, student {g.base['student']}, "
              f"{g.base['epochs']} epochs; seeds {g.seeds} x class splits {g.split_seeds}; {len(g.configs)} runs")

    def train(self):
        """Every run of the grid from the run store (missing ones trained), one row per run, with
        the share of the teacher's accuracy each run transfers (``transfer_*`` columns)."""
        return report.with_transfer(run_grid(self.store, self.grid))

    def transfer_table(self, runs: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
        """Per variant: the teacher's zero-shot X_ood accuracy on the same images and class texts, the
        student's, and the share of the teacher's the student reaches (%), each with its 95%
        interval over class splits."""
        column = self.chapter.column
        cols = {"teacher_acc_ood_zeroshot": "teacher X_ood zero-shot (%)",
                "acc_ood_zeroshot": "student X_ood zero-shot (%)",
                "transfer_acc_ood_zeroshot": "share of the teacher's (%)"}
        present = [c for c in cols if c in runs.columns and runs[c].notna().any()]
        if not present:
            return pd.DataFrame()
        summary = report.summarize(runs, column, present)
        table = report.interval_table(summary, column, labels={c: cols[c] for c in present},
                                      order=list(order or self.variants_run(runs)))
        return table.rename(index=self.chapter.label)

    def variants_run(self, runs: pd.DataFrame) -> list[str]:
        """The chapter's variants that the runs hold, in declaration order (then any extra)."""
        present = list(dict.fromkeys(runs[self.chapter.column]))
        return [v for v in self.chapter.variants if v in present] + [v for v in present if v not in self.chapter.variants]

    def per_class_figure(self, runs: pd.DataFrame, treatment: str, baseline: str,
                         metric: str = "acc_ood_zeroshot"):
        """Which unseen classes gain from ``treatment`` over ``baseline`` (None when no run has
        per-class accuracies)."""
        gains = report.per_class_effects(runs, column=self.chapter.column, treatment=treatment,
                                         baseline=baseline, metric=metric)
        if gains.empty:
            return None
        name = ACCURACY_NAMES.get(metric, metric)
        return report.plot_per_class(gains, title=f"{self.chapter.label(treatment)} minus "
                                                  f"{self.chapter.label(baseline)}: {name} accuracy per unseen class")

    def metrics(self, runs: pd.DataFrame) -> list[str]:
        """The chapter's metrics that the runs carry (5-shot only when fine-tuning ran)."""
        return [m for m in self.chapter.metrics if m in runs.columns]

    def paper_datasets(self, paper: pd.DataFrame) -> list[str]:
        """The paper's datasets to show: the grid's own when the paper has it, else all of them."""
        if self.grid.paper_dataset in set(paper["dataset"]):
            return [self.grid.paper_dataset]
        return sorted(paper["dataset"].unique())

    def accuracy_table(self, runs: pd.DataFrame, order: Sequence[str], paper: pd.DataFrame,
                       paper_key: str, keys: Mapping[str, str]) -> pd.DataFrame:
        """Ours (mean and 95% interval per variant) beside each paper dataset's accuracies; the
        variant ``v`` is the paper's row ``keys[v]`` in column ``paper_key`` ("–" when absent)."""
        metrics, column = self.metrics(runs), self.chapter.column
        summary = report.summarize(runs, column, metrics)
        ours = report.interval_table(summary, column, labels={m: ACCURACY_NAMES[m] for m in metrics}, order=order)
        ours.columns = pd.MultiIndex.from_tuples([(c, "ours") for c in ours.columns])
        parts = [ours]
        for ds_name in self.paper_datasets(paper):
            p = paper[paper["dataset"] == ds_name].set_index(paper_key)
            parts.append(pd.DataFrame({(ACCURACY_NAMES[m], f"paper ({ds_name})"): [
                f"{p.loc[keys[v], ACCURACY[m]]:.1f}" if keys.get(v) in p.index else "–"
                for v in ours.index] for m in metrics}, index=ours.index))
        table = pd.concat(parts, axis=1)
        return table[[c for m in metrics for c in table.columns if c[0] == ACCURACY_NAMES[m]]]

    def paper_accuracy_means(self, paper: pd.DataFrame, paper_key: str, keys: Mapping[str, str]) -> pd.DataFrame:
        """The paper's accuracies averaged over the shown datasets, one row per variant (column
        ``self.chapter.column``), under our metric names: what :func:`report.compare` reads."""
        sel = paper[paper["dataset"].isin(self.paper_datasets(paper))]
        means = (sel.groupby(paper_key)[list(ACCURACY.values())].mean().reset_index()
                 .rename(columns={v: k for k, v in ACCURACY.items()}))
        means[self.chapter.column] = means[paper_key].map({v: k for k, v in keys.items()})
        return means

    def proxy_note(self) -> str:
        """A sentence saying that the offline teacher is a proxy, not CLIP ('' otherwise)."""
        if self.grid.base["teacher"] != "conse":
            return ""
        return ("The teacher here is the **ConSE proxy teacher** (EfficientNet-Lite ImageNet classifier + "
                "MiniLM sentence embeddings), not CLIP: the text space is the same idea, its quality is far lower.")


#: Chapter name -> the module that declares it (``CHAPTER``) and holds its tables and figures.
CHAPTERS: dict[str, str] = {
    "teacher_zero_shot": "vldlib.study.chapters.teacher_zero_shot",
    "feature_errors": "vldlib.study.chapters.feature_errors",
    "main_results": "vldlib.study.chapters.main_results",
    "prompt_detail": "vldlib.study.chapters.prompt_detail",
    "k_ablation": "vldlib.study.chapters.k_ablation",
}


def _module(name: str):
    if name not in CHAPTERS:
        raise ValueError(f"unknown chapter {name!r}; chapters: {', '.join(CHAPTERS)}")
    return importlib.import_module(CHAPTERS[name])  # the registry maps names to modules


def chapter(name: str) -> Chapter:
    """The declaration of chapter ``name``."""
    return _module(name).CHAPTER


def open_chapter(name: str, namespace: Mapping[str, Any] | None = None, **params: Any):
    """Chapter ``name`` with a notebook's parameters: its ``ChapterRun`` subclass, grid built.

    ``namespace``: a notebook's ``globals()``; the chapter takes the names of its parameters
    cell from it (``RESERVED_PARAMETERS`` + ``GRID_PARAMETERS`` + the chapter's own) and nothing
    else. Keyword arguments win over the namespace."""
    module = _module(name)
    names = set(GRID_PARAMETERS) | {"results_dir"} | set(getattr(module, "PARAMETERS", ()))
    taken = {k: v for k, v in (namespace or {}).items() if k in names}
    return module.Run({**taken, **params})
