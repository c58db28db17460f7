"""The chapter contract: :class:`ChapterRun`, a chapter with its notebook's parameters (grid, run
store, variants), and one API for every chapter: ``train() -> runs``, ``derive(runs) -> data``,
``table(data)``, ``figure(data)``, ``effects(data)``, ``reading(data, effects)``,
``claims(effects)``. A chapter module subclasses it only for what is special to it."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from vldlib.models.specs import teacher_spec
from vldlib.runs import RunStore, record_row
from vldlib.study import report
from vldlib.study.chapters.declaration import (ACCURACY, ACCURACY_NAMES, DATASETS_GLUE, GRID_PARAMETERS, NOT_RUN,
                                               Chapter, glue_values)
from vldlib.study.chapters.page import Page, glue
from vldlib.study.datasets import dataset_grids, dataset_kind, label_runs
from vldlib.study.downloads import Download, runs_caption, save_csv
from vldlib.study.executors import check_executor
from vldlib.study.grid import Grid, make_grid, run_grid
from vldlib.study.readings import Comparison
from vldlib.study.reference import paper_table
from vldlib.study.stats import CHANCE_CLASSES, Interval
from vldlib.study.transfer import paper_transfer

__all__ = ["ChapterRun", "ABOVE_CHANCE"]

#: Our accuracy columns given as shares of the teacher's above chance -> the paper's fields.
ABOVE_CHANCE: dict[str, str] = {m: ACCURACY[m] for m in CHANCE_CLASSES}


class ChapterRun(Page):
    """A chapter with its notebook's parameters: the grid (validated), the run store, the runs."""

    def __init__(self, chapter: Chapter, params: Mapping[str, Any]) -> None:
        self.chapter = chapter
        self.params = {**{k: p.default for k, p in chapter.parameters.items()}, **params}
        grid_kw = {k: self.params[k] for k in GRID_PARAMETERS if k in self.params}
        roots = list(self.params.get("dataset_roots") or [])
        #: several data roots (``dataset_roots``): one grid per dataset, by label; {} for one dataset
        self.datasets: dict[str, Grid] = (dataset_grids(roots, grid_kw, chapter.offline_splits)
                                          if len(roots) >= 2 else {})
        if len(roots) == 1:
            grid_kw.update(dataset_root=str(roots[0]), dataset=dataset_kind(roots[0]))
        if self.datasets:  # the runs of every dataset, labelled by dataset (see expand)
            first = next(iter(self.datasets.values()))
            self.grid: Grid = Grid(first.profile, first.base, first.seeds, first.split_seeds, "Average")
        else:
            self.grid = make_grid(**grid_kw, n_splits=chapter.offline_splits)
        self.executor = check_executor(self.params.get("executor") or "local")
        self.store = RunStore(self.params.get("results_dir", "results"), cache_dir=self.params.get("cache_dir"))
        #: the variants run (the declaration's, on this grid with these parameters) and their comparisons
        self.variants: dict[str, dict[str, Any]] = chapter.variants_for(self.grid, self.params)
        self.comparisons: tuple[Comparison, ...] = chapter.comparisons_for(list(self.variants))
        #: the rows of the chapter's tables, in order (the variants, or the rows derived from them)
        self.order: list[str] = list(self.variants)
        self.paper: pd.DataFrame = (paper_table(chapter.paper_tables[0]) if chapter.paper_keys
                                    else pd.DataFrame())
        self.setup()
        if self.variants:
            self.expand(self.variants)

    def setup(self) -> None:
        """What a chapter needs besides its grid and variants (its paper frame, checks of its own
        parameters); runs before the grid is expanded. Nothing here by default."""

    def expand(self, variants: Mapping[str, Mapping[str, Any]]) -> None:
        """Expand the grid over ``variants`` (validating every config) and print its size; with
        several datasets, each dataset's grid, its runs labelled by dataset (:func:`label_runs`)."""
        for label, grid in self.datasets.items():
            before = len(grid.configs)
            self._expand(grid, variants)
            self.grid.configs.extend(label_runs(grid.configs[before:], label))
        if not self.datasets:
            self._expand(self.grid, variants)
        g = self.grid
        where = f"{len(self.datasets)} datasets ({', '.join(self.datasets)})" if self.datasets else g.dataset
        print(f"profile {g.profile}: {where}, teacher {g.base['teacher']}, student {g.base['student']}, "
              f"{g.base['epochs']} epochs; seeds {g.seeds} x class splits {g.split_seeds}; {len(g.configs)} runs")

    def _expand(self, grid: Grid, variants: Mapping[str, Mapping[str, Any]]) -> None:
        fewer = grid.default_split_seeds
        if fewer is not None and self.chapter.powered:
            grid.expand({k: v for k, v in variants.items() if k in self.chapter.powered},
                        column=self.chapter.column)
            grid.expand({k: v for k, v in variants.items() if k not in self.chapter.powered},
                        column=self.chapter.column, split_seeds=fewer)
        else:
            grid.expand(variants, column=self.chapter.column)

    def train(self) -> pd.DataFrame:
        """Every run of the grid from the run store (missing ones trained), one row per run, with
        the share of the teacher's accuracy each run transfers (``transfer_*`` columns); an empty
        frame for a chapter that trains no student."""
        if not self.grid.configs:
            return pd.DataFrame()
        return report.with_transfer(run_grid(self.store, self.grid, executor=self.executor,
                                              ray_address=self.params.get("ray_address")))

    def derive(self, runs: pd.DataFrame) -> pd.DataFrame:
        """What the chapter's ``table``, ``effects`` and ``reading`` read, from its run rows (the
        rows themselves here; a chapter whose tables are built from the runs, e.g. a retrieval
        cache on the stored students or before/after stages, overrides it). Trains nothing."""
        return runs

    def table(self, data: pd.DataFrame) -> pd.DataFrame:
        """The chapter's table: ours (mean and 95% interval per row) beside the paper's datasets."""
        table = self.accuracy_table(data, self.order, self.paper, self.chapter.paper_column, self.chapter.paper_keys)
        table.index = [self.chapter.label(v) for v in table.index]
        return table

    def figure(self, data: pd.DataFrame):
        """The chapter's figure (None: it has none)."""
        return None

    def effects(self, data: pd.DataFrame) -> pd.DataFrame:
        """The declared paired effects the data hold (:func:`report.compare`), each beside the paper's
        difference (:meth:`paper_values`)."""
        comparisons = [c for c in self.comparisons if c.metric in data.columns]
        return report.compare(data, comparisons, column=self.chapter.column, labels=self.effect_labels(),
                              metric_labels=self.metric_labels(), paper=self.paper_values(),
                              paper_column=self.chapter.column)

    def effect_labels(self) -> dict[str, str]:
        """The row names the effects' sentences use."""
        return dict(self.chapter.labels)

    def metric_labels(self) -> dict[str, str]:
        """The metric names the effects' sentences use."""
        return {m: f"{n} accuracy" for m, n in ACCURACY_NAMES.items()}

    def paper_values(self) -> pd.DataFrame | None:
        """The paper's values under our metric names, one row per our row (column ``chapter.column``):
        what :func:`report.compare` takes the paper's differences from (None: no paper values)."""
        if not self.chapter.paper_keys:
            return None
        return self.paper_accuracy_means(self.paper, self.chapter.paper_column, self.chapter.paper_keys)

    def reading(self, data: pd.DataFrame, effects: pd.DataFrame) -> str:
        """The computed reading: one line per paired effect (a chapter adds its own lines)."""
        return "\n".join(f"- {r}" for r in effects["reading"])

    def claims(self, effects: pd.DataFrame) -> pd.DataFrame:
        """One row per declared claim, read off ``effects`` (:meth:`claim_table`)."""
        return self.claim_table(effects)

    def notes(self) -> str:
        """What the reader should know before the tables (the proxy teacher, a chapter's own notes)."""
        return self.proxy_note()

    def transfer_table(self, runs: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
        """Per variant: the teacher's zero-shot X_ood accuracy on the same images and class texts, the
        student's, and the share of the teacher's the student reaches (%), each with its 95%
        interval over class splits (:meth:`above_chance_table` gives the shares above chance)."""
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

    def above_chance_table(self, runs: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
        """Per variant, X_id and X_ood zero-shot as the share of the teacher's accuracy above chance
        ``(student - chance) / (teacher - chance)`` (mean and 95% interval over class splits), beside
        the paper's share for the variants that are Table 1 rows (:func:`paper_transfer`, its teacher
        CLIP ViT-L/14, each dataset at its own chance): the two worlds in one unit."""
        column = self.chapter.column
        cols = {f"above_chance_{m}": ACCURACY_NAMES[m] for m in ABOVE_CHANCE}
        present = [c for c in cols if c in runs.columns and runs[c].notna().any()]
        if not present:
            return pd.DataFrame()
        order = list(order or self.variants_run(runs))
        summary = report.summarize(runs, column, present)
        ours = report.interval_table(summary, column, labels={c: cols[c] for c in present}, digits=2, order=order)
        ours.columns = pd.MultiIndex.from_tuples([(c, "ours") for c in ours.columns])
        keys = ((dict(self.chapter.paper_keys) or {v: v for v in ours.index})  # main_results: rows are Table 1 keys
                if self.chapter.paper_tables[:1] == ("table1",) else {})
        shares = paper_transfer()
        dataset = self.grid.paper_dataset if self.grid.paper_dataset in set(shares["dataset"]) else "Average"
        shares = shares[shares["dataset"] == dataset].set_index("method_key")
        fields = {f"above_chance_{m}": field for m, field in ABOVE_CHANCE.items()}

        def share(variant: str, field: str) -> str:
            value = shares.loc[keys[variant], field] if keys.get(variant) in shares.index else float("nan")
            return "–" if pd.isna(value) else f"{value:.2f}"

        paper = pd.DataFrame({(cols[c], f"paper ({dataset})"): [share(v, fields[c]) for v in ours.index]
                              for c in present}, index=ours.index)
        table = pd.concat([ours, paper], axis=1)
        table = table[[col for c in present for col in table.columns if col[0] == cols[c]]]
        return table.rename(index=self.chapter.label)

    def above_chance_reading(self, runs: pd.DataFrame) -> str:
        """One sentence with every variant's mean shares above chance (X_id / X_ood zero-shot) and
        the paper's where it has the row ('' when the runs carry no teacher accuracies)."""
        table = self.above_chance_table(runs)
        if table.empty:
            return ""
        parts = []
        for label, row in table.iterrows():
            ours = " / ".join(str(row[(name, "ours")]).split(" ")[0] for name, src in table.columns if src == "ours")
            paper = " / ".join(str(row[(name, src)]) for name, src in table.columns if src != "ours")
            parts.append(f"{label} {ours}" + (f" (paper {paper})" if paper.strip("–/ ") else ""))
        metrics = " / ".join(dict.fromkeys(name for name, _ in table.columns))
        return ("In units of the teacher's ability above chance ((student - chance) / (teacher - chance): 1 is "
                f"the teacher, 0 is chance), {metrics}: " + "; ".join(parts) + ".")

    def variants_run(self, runs: pd.DataFrame) -> list[str]:
        """The chapter's variants that the runs hold, in declaration order (then any extra)."""
        present = list(dict.fromkeys(runs[self.chapter.column]))
        return [v for v in self.variants if v in present] + [v for v in present if v not in self.variants]

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

    def stored(self) -> tuple[pd.DataFrame, int]:
        """The grid's runs that the run store already has (nothing is trained), one row per run
        (labels + record row), and how many of the grid's runs are missing."""
        rows, missing = [], 0
        for labels, cfg in self.grid.configs:
            record = self.store.get(cfg)
            if record is None:
                missing += 1
            else:
                rows.append({**record_row(record), **labels})
        return pd.DataFrame(rows), missing

    def csv(self, table: pd.DataFrame, name: str, text: str = "Download this table:") -> Download:
        """Write ``table`` as ``<downloads>/<chapter>/<name>.csv`` and return its link (display it)."""
        return save_csv(table, self.chapter.name, name, self.params.get("results_dir", "results"), text=text)

    def runs_csv(self, runs: pd.DataFrame, what: str = "runs") -> Download:
        """The figures' caption: the runs they show, written as ``runs.csv`` with their config hashes."""
        return runs_caption(runs, self.chapter.name, self.params.get("results_dir", "results"),
                            column=self.chapter.column, what=what)

    def publish_claims(self, effects: pd.DataFrame) -> tuple[pd.DataFrame, Download]:
        """The chapter's declared claims (:meth:`claim_table` of ``effects``), each value glued for
        the front page (MyST-NB ``glue``, names from :func:`glue_key`, not displayed), and the
        table with its CSV download, to display: ``display(*ch.publish_claims(effects))``."""
        claims = self.claim_table(effects)
        for name, value in glue_values(claims).items():
            glue(name, value)
        pooled = getattr(self, "datasets", None)  # absent on a run made without a grid (tests)
        if pooled:  # the claims pool several datasets: the front page names them
            glue(DATASETS_GLUE, ", ".join(pooled))
        return claims, self.csv(claims, "claims")

    def claim_table(self, effects: pd.DataFrame) -> pd.DataFrame:
        """One row per declared claim (index: its key): ``source``, ``claim``, ``ours`` (paired effect
        with its 95% interval), ``paper`` (the paper's difference, or its direction), ``verdict`` and
        ``n``, looked up in ``effects`` (the :func:`report.compare` frame of the chapter). A claim
        whose comparison was not run reads "not run"."""
        rows = {}
        for c in self.chapter.claims:
            cmp = c.comparison
            hit = effects[(effects["treatment"] == cmp.treatment) & (effects["baseline"] == cmp.baseline)
                          & (effects["metric_key"] == cmp.metric)] if not effects.empty else effects
            row = {"source": c.source, "claim": c.statement}
            if hit.empty:
                rows[c.key] = {**row, "ours": NOT_RUN, "paper": "–", "verdict": NOT_RUN, "n": 0}
                continue
            e = hit.iloc[0]
            iv = Interval(float(e["effect"]), float(e["ci_low"]), float(e["ci_high"]), int(e["n"]), math.nan)
            if c.direction:
                paper = float(c.direction)
                shown = c.direction_text or ("higher" if c.direction > 0 else "lower") + " (direction only)"
            else:
                paper = None if e["paper"] is None or pd.isna(e["paper"]) else float(e["paper"])
                shown = "–" if paper is None else f"{paper:+.{c.digits}f}"
            ours = report.format_interval(iv.mean, iv.low, iv.high, c.digits)
            rows[c.key] = {**row, "ours": ours if ours[:1] in ("-", "–") else "+" + ours, "paper": shown,
                           "verdict": report.verdict(iv, paper, c.digits), "n": iv.n}
        table = pd.DataFrame.from_dict(rows, orient="index",
                                       columns=["source", "claim", "ours", "paper", "verdict", "n"])
        table.index.name = "claim_key"
        return table

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
        fields = [f for f in ACCURACY.values() if f in sel.columns]  # e.g. Table 10 has 5-shot only
        means = (sel.groupby(paper_key)[fields].mean().reset_index()
                 .rename(columns={v: k for k, v in ACCURACY.items()}))
        means[self.chapter.column] = means[paper_key].map({v: k for k, v in keys.items()})
        return means

    def proxy_note(self) -> str:
        """A sentence saying that the offline teacher is a proxy, not CLIP ('' otherwise)."""
        spec = teacher_spec(self.grid.base["teacher"])
        return spec.note if spec.proxy else ""


