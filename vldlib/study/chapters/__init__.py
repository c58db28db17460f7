"""The book's chapters, each declared once as data (:class:`Chapter`): its notebook, question,
variants, metrics, the paper's keys and the comparisons its readings are made of.

A notebook is a thin view of its chapter::

    ch = open_chapter("main_results", globals())  # validates every config before anything trains
    runs = ch.train()                             # the run store trains only the missing runs
    display(ch.table(runs)); ch.figure(runs)      # beside the paper; one dot per run
    display(Markdown(ch.reading(runs)))           # computed sentences
    display(ch.csv(table, "table1"))              # the table as CSV, linked from the page
    display(*ch.publish_claims(effects))          # the headline claims, glued for the front page

Each chapter declares the paper's headline claim(s) it tests (:class:`Claim`, ``Chapter.claims``);
its notebook glues our number for each (MyST-NB ``glue``, names from :func:`glue_key`) and the
book's front page (``vldlib/findings.py``) lists every declared claim with ``{glue:text}``
references. ``book/summary.py`` reads the same declarations and grids instead of regrouping the
run store itself.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from vldlib.runs import RunStore, record_row
from vldlib.models.specs import teacher_spec
from vldlib.study import report
from vldlib.study.datasets import dataset_grids, dataset_kind, label_runs
from vldlib.study.downloads import Download, runs_caption, save_csv
from vldlib.study.executors import check_executor
from vldlib.study.grid import Grid, make_grid, run_grid
from vldlib.study.parameters import GRID_NAMES
from vldlib.study.readings import Comparison
from vldlib.study.stats import Interval

__all__ = ["Chapter", "ChapterRun", "Claim", "ACCURACY", "ACCURACY_NAMES", "TABLE1_LABELS", "CHAPTERS",
           "GRID_PARAMETERS", "EXECUTOR_PARAMETERS", "PAPER_RESULTS", "CLAIM_FIELDS", "DATASETS_GLUE", "open_chapter", "chapter", "glue_key",
           "glue_values", "StoreFindings", "from_store"]

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
    "imcst+vlprox(+mse)": "L_mse + L_im-cst + L_vlprox",
}
#: The notebook parameters that shape the grid (passed to :func:`vldlib.study.grid.make_grid`);
#: every notebook parameter's type is declared in :mod:`vldlib.study.parameters`.
GRID_PARAMETERS: tuple[str, ...] = GRID_NAMES
#: The notebook parameters that say where missing runs train (:func:`vldlib.study.grid.run_grid`):
#: ``executor`` ("local" | "ray") and ``ray_address`` (None: a local Ray; or a cluster address).
EXECUTOR_PARAMETERS: tuple[str, ...] = ("executor", "ray_address")


#: The paper's results whose claims the front page accounts for, in the paper's order (a result no
#: chapter declares a claim for is listed as "no chapter yet").
PAPER_RESULTS: tuple[str, ...] = ("Table 1", "Table 2", "Table 5", "Table 6", "Table 7", "Table 8",
                                  "Table 9", "Table 10", "Table 11", "Fig. 4")
#: What a chapter glues per claim: our effect with its interval, the paper's difference, the verdict,
#: the number of paired replicates.
CLAIM_FIELDS: tuple[str, ...] = ("ours", "paper", "verdict", "n")
NOT_RUN = "not run"
#: The glue name of the datasets a chapter's claims pool (only with several ``dataset_roots``).
DATASETS_GLUE = "claim_datasets"


@dataclass(frozen=True)
class Claim:
    """One headline claim of the paper that a chapter puts to the test.

    ``comparison``: the paired effect that tests it (treatment minus baseline on a metric, same
    seed and class split), as the chapter's ``effects`` computes it; ``source``: where the paper
    makes it (one of :data:`PAPER_RESULTS`); ``statement``: the claim in words, without numbers.
    ``direction`` (+1 / -1) is the paper's sign where it publishes no difference to set beside ours
    (Fig. 4 is a plot; a level against chance), shown as ``direction_text``; otherwise the paper's
    difference comes from its table, through the chapter's ``effects``.
    """

    key: str
    source: str
    statement: str
    comparison: Comparison
    direction: int = 0
    direction_text: str = ""
    digits: int = 1

    def __post_init__(self) -> None:
        if not self.key.isidentifier():
            raise ValueError(f"Claim key {self.key!r} must be an identifier (it names glued values)")
        if self.source not in PAPER_RESULTS:
            raise ValueError(f"Claim {self.key!r}: source {self.source!r} is not one of {PAPER_RESULTS}")
        if self.direction not in (-1, 0, 1):
            raise ValueError(f"Claim {self.key!r}: direction must be -1, 0 or +1, got {self.direction!r}")


def glue_key(claim: str, field: str) -> str:
    """The glue name of one field of a claim, e.g. ``claim.imcst_zeroshot.ours``."""
    if field not in CLAIM_FIELDS:
        raise ValueError(f"unknown claim field {field!r}; fields: {CLAIM_FIELDS}")
    return f"claim.{claim}.{field}"


def glue_values(claims: pd.DataFrame) -> dict[str, str]:
    """``{glue name: text}`` for every claim row of :meth:`ChapterRun.claim_table` (what a notebook glues)."""
    return {glue_key(key, f): str(row[f]) for key, row in claims.iterrows() for f in CLAIM_FIELDS}


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
    ``claims``: the paper's headline claims it tests (listed on the front page).
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
    claims: tuple[Claim, ...] = ()

    def label(self, key: Any) -> str:
        return str(self.labels.get(key, key))


class ChapterRun:
    """A chapter with its notebook's parameters: the grid (validated), the run store, the runs."""

    def __init__(self, chapter: Chapter, params: Mapping[str, Any]) -> None:
        self.chapter = chapter
        self.params = dict(params)
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

    def train(self):
        """Every run of the grid from the run store (missing ones trained), one row per run, with
        the share of the teacher's accuracy each run transfers (``transfer_*`` columns)."""
        return report.with_transfer(run_grid(self.store, self.grid, executor=self.executor,
                                              ray_address=self.params.get("ray_address")))

    def derive(self, runs: pd.DataFrame) -> pd.DataFrame:
        """What the chapter's ``effects`` read, from its run rows (the rows themselves here; a
        chapter whose tables are built from the runs, e.g. a retrieval cache on the stored
        students or before/after stages, overrides it). Trains nothing."""
        return runs

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
        from myst_nb import glue  # only where a notebook publishes; the library runs without a kernel

        claims = self.claim_table(effects)
        for name, value in glue_values(claims).items():
            glue(name, value, display=False)
        pooled = getattr(self, "datasets", None)
        if pooled:  # the claims pool several datasets: the front page names them
            glue(DATASETS_GLUE, ", ".join(pooled), display=False)
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


#: Chapter name -> the module that declares it (``CHAPTER``) and holds its tables and figures.
CHAPTERS: dict[str, str] = {
    "teacher_zero_shot": "vldlib.study.chapters.teacher_zero_shot",
    "feature_errors": "vldlib.study.chapters.feature_errors",
    "main_results": "vldlib.study.chapters.main_results",
    "prompt_detail": "vldlib.study.chapters.prompt_detail",
    "k_ablation": "vldlib.study.chapters.k_ablation",
    "language_enrichment": "vldlib.study.chapters.language_enrichment",
    "field_losses": "vldlib.study.chapters.field_losses",
    "vit_student": "vldlib.study.chapters.vit_student",
    "fewshot_retrieval": "vldlib.study.chapters.fewshot_retrieval",
    "continual": "vldlib.study.chapters.continual",
    "description_controls": "vldlib.study.chapters.description_controls",
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
    cell from it (``results_dir``, ``GRID_PARAMETERS``, ``EXECUTOR_PARAMETERS``, the chapter's own) and nothing
    else. Keyword arguments win over the namespace."""
    module = _module(name)
    names = (set(GRID_PARAMETERS) | set(EXECUTOR_PARAMETERS) | {"results_dir", "dataset_roots"}
             | set(getattr(module, "PARAMETERS", ())))
    taken = {k: v for k, v in (namespace or {}).items() if k in names}
    return module.Run({**taken, **params})


@dataclass(frozen=True)
class StoreFindings:
    """What the run store holds for every chapter (:func:`from_store`): ``coverage`` (one row per
    chapter: runs its grid needs, runs found), ``claims`` (the declared claims of the complete
    chapters, :meth:`ChapterRun.claim_table` + ``chapter``), ``effects`` (their ``effects`` frames +
    ``chapter``) and ``runs`` (the stored runs they use, one row per run and chapter)."""

    coverage: pd.DataFrame
    claims: pd.DataFrame
    effects: pd.DataFrame
    runs: pd.DataFrame


def from_store(namespace: Mapping[str, Any] | None = None, **params: Any) -> StoreFindings:
    """Every chapter of :data:`CHAPTERS` opened with the same parameters (as :func:`open_chapter`),
    its grid looked up in the run store without training (:meth:`ChapterRun.stored`); the claims
    and effects of each chapter whose runs are all there, through the chapter's own ``effects``.
    Chapters that train no student runs (no grid) are listed with 0 runs."""
    coverage, claims, effects, used = [], [], [], []
    for name in CHAPTERS:
        with contextlib.redirect_stdout(io.StringIO()):  # the chapters' own "profile ...: N runs" lines
            ch = open_chapter(name, namespace, **params)
        needed = len(ch.grid.configs)
        runs, missing = ch.stored() if needed else (pd.DataFrame(), 0)
        coverage.append({"chapter": ch.chapter.title, "runs needed": needed, "in the store": needed - missing,
                         "summarised": bool(needed and not missing and hasattr(ch, "effects"))})
        if not coverage[-1]["summarised"]:
            continue
        used.append(runs.assign(chapter=ch.chapter.title))
        derived = ch.derive(runs)
        eff = ch.effects(derived)
        effects.append(eff.assign(chapter=ch.chapter.title))
        table = ch.claim_table(eff)
        # claims on the runs' own metrics; the others (e.g. text features) only the chapter computes
        table = table[[c.comparison.metric in derived.columns for c in ch.chapter.claims]]
        if not table.empty:
            claims.append(table.assign(chapter=ch.chapter.title))
    claim_cols = ["chapter", "source", "claim", "ours", "paper", "verdict", "n"]
    return StoreFindings(
        coverage=pd.DataFrame(coverage).set_index("chapter"),
        claims=pd.concat(claims)[claim_cols] if claims else pd.DataFrame(columns=claim_cols),
        effects=pd.concat(effects, ignore_index=True) if effects else pd.DataFrame(),
        runs=pd.concat(used, ignore_index=True) if used else pd.DataFrame())
