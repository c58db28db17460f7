"""Experiment grids for the notebooks: variants x seeds x class splits, declared as data.

A notebook's parameters (``profile``, ``dataset``, ``epochs``, ``seeds``, ...; ``None`` meaning
"the profile's default") become one :class:`Grid`: a validated base config (from
:func:`vldlib.train.profiles.profile_config`) plus the replicates every comparison is run on.  Each
variant is a dict of config overrides (e.g. ``{"weights": {"cls": 1, "im_cst": 1}}``); the grid
expands it over ``seeds x split_seeds`` and **validates every config before anything trains**, so a
typo (unknown profile, dataset, loss name, ...) fails in milliseconds with the valid choices.
:func:`run_grid` then asks the run store for every run (finished ones are reused, missing ones
trained; identical configs in different notebooks are one run, since the store keys on the hash)
and returns one tidy row per run. Where the missing runs train is the ``executor``
(:mod:`vldlib.study.executors`: ``local`` or ``ray``); the numbers do not depend on it.

Replicates (``REPLICATES``): the class split is the experimental unit (effects vary far more between
splits than between seeds), so the offline default runs one seed on each of several **test** class
splits (:data:`TEST_SPLITS`); a chapter may ask for more of them (``Chapter.offline_splits``).  The
offline recipe was chosen on the disjoint **development** splits (:data:`DEV_SPLITS`,
:mod:`vldlib.study.design`), which no chapter reports.  The official datasets have one fixed class
split (the published lists) unless ``split_seeds`` asks for seeded class splits of their images
(:mod:`vldlib.data.protocol`), as an image folder (``dataset="folder"``) always has.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from vldlib.core.losses import LOSSES
from vldlib.data import distinct_split_seeds
from vldlib.data.specs import dataset_spec
from vldlib.runs import config_hash, record_row
from vldlib.study.executors import (EXECUTORS, GridRunError, Job, RunFailure, check_executor,
                                    describe_error, execute, warm_teacher_features)
from vldlib.train.config import TrainConfig
from vldlib.train.profiles import PROFILES, apply_overrides, profile_config

__all__ = ["REPLICATES", "TEST_SPLITS", "DEV_SPLITS", "PAPER_DATASETS", "EXECUTORS", "Grid",
           "GridRunError", "make_grid", "run_grid", "expected_cost", "warm_teacher_features",
           "check_distinct", "repeated"]

#: Test class splits of Fashion-MNIST (split seeds 0, 1, ... with repeated seen-class sets skipped):
#: every offline chapter reports on the first ``n`` of them.
TEST_SPLITS: list[int] = distinct_split_seeds(40)
#: Development class splits: the offline recipe search runs here only; their seen-class sets are
#: disjoint from every test split's, and no chapter reports them.
DEV_SPLITS: list[int] = distinct_split_seeds(3, start=1000, exclude=TEST_SPLITS)
#: How many test splits an offline chapter uses unless it asks for more (``Chapter.offline_splits``).
OFFLINE_SPLITS = 8

REPLICATES: dict[str, dict[str, list]] = {
    "offline": {"seeds": [0], "split_seeds": TEST_SPLITS[:OFFLINE_SPLITS]},
    "smoke": {"seeds": [0], "split_seeds": [0]},
    "paper": {"seeds": [0], "split_seeds": [None]},
}
"""Default training seeds and class splits per profile (a notebook's ``seeds``/``split_seeds``
parameters override them).  ``None`` as a split seed means "the dataset's own class split"."""

PAPER_DATASETS: tuple[str, ...] = (
    "CaltechBirds", "StanfordCars", "Flower102", "Food101", "SUN397", "tiered-ImageNet",
)
"""Dataset names of the paper's tables (and of the official data folders)."""


@dataclass
class Grid:
    """A validated base config and the replicates that every variant is run on."""

    profile: str
    base: dict[str, Any]
    seeds: list[int]
    split_seeds: list[int | None]
    paper_dataset: str = "Average"
    configs: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    #: the profile's default class splits when ``make_grid(n_splits=...)`` gave this grid more:
    #: variants that do not need the extra power run on these (``expand(..., split_seeds=...)``)
    default_split_seeds: list[int | None] | None = None

    def __post_init__(self) -> None:
        check_distinct("seeds", self.seeds)
        check_distinct("split_seeds", self.split_seeds)

    @property
    def dataset(self) -> str:
        return str(self.base["dataset"])

    def expand(self, variants: Mapping[str, Mapping[str, Any]], column: str = "variant",
               split_seeds: Sequence[int | None] | None = None) -> list[tuple[dict, dict]]:
        """``[(labels, config), ...]`` for every variant x seed x split, each config validated.

        ``labels`` holds ``{column: variant name, "seed": s, "split_seed": p}``; ``split_seeds``
        (default: the grid's) restricts these variants to other class splits.
        """
        if split_seeds is not None:
            check_distinct("split_seeds", split_seeds)
        out = []
        for name, overrides in variants.items():
            if not isinstance(overrides, Mapping):
                raise ValueError(f"variant {name!r} must be a dict of config overrides, got {overrides!r}")
            for split in (self.split_seeds if split_seeds is None else split_seeds):
                for seed in self.seeds:
                    extra: dict[str, Any] = {**overrides, "seed": seed}
                    if split is not None:
                        extra["dataset_options.split_seed"] = split
                    try:
                        cfg = apply_overrides(self.base, extra)
                        TrainConfig.from_dict(cfg).validate()
                    except ValueError as exc:
                        raise ValueError(f"variant {name!r}: {exc}") from None
                    out.append(({column: name, "seed": seed, "split_seed": split}, cfg))
        self.configs.extend(out)
        return out


def repeated(values: Sequence[Any]) -> list[Any]:
    """The values that occur more than once in ``values``, in order of first occurrence."""
    seen: set[Any] = set()
    twice: dict[Any, None] = {}
    for v in values:
        if v in seen:
            twice[v] = None
        seen.add(v)
    return list(twice)


def check_distinct(name: str, values: Sequence[Any]) -> None:
    """A one-line ``ValueError`` when ``values`` (a grid's seeds or class splits) repeats one: each is
    an experimental unit, and a repeat would count the same run again (narrowing every interval)."""
    twice = repeated(values)
    if twice:
        what = "seed" if name == "seeds" else "class split"
        raise ValueError(f"{name}={list(values)!r} repeats {', '.join(map(repr, twice))}: each {what} is one "
                         f"experimental unit and a repeat would count the same run again; list each once, "
                         f"e.g. {name}={list(dict.fromkeys(values))!r}")


def _as_list(name: str, value: Any, default: list) -> list:
    if value is None:
        return list(default)
    if isinstance(value, (int, str)) or value is None:
        value = [value]
    value = list(value)
    if not value:
        raise ValueError(f"{name} must be a non-empty list (or None for the profile's default)")
    for v in value:
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ValueError(f"{name} must hold integers >= 0, got {v!r}")
    check_distinct(name, value)
    return value


def make_grid(
    profile: str = "offline",
    *,
    smoke: bool = False,
    dataset: str | None = None,
    dataset_root: str | None = None,
    teacher: str | None = None,
    student: str | None = None,
    epochs: int | None = None,
    per_class: int | None = None,
    seeds: Sequence[int] | None = None,
    split_seeds: Sequence[int] | None = None,
    cache_dir: str | None = None,
    paper_dataset: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    n_splits: int | None = None,
) -> Grid:
    """The notebook's base config and replicates from its parameters (``None`` = profile default).

    ``smoke=True`` turns the ``offline`` profile into ``smoke`` (tiny sizes) and shrinks any other
    profile to one short epoch, one seed and a one-epoch few-shot stage.  ``dataset_root`` is
    the data folder (required for ``"official"``).  ``paper_dataset`` picks the paper's column
    the results are shown beside; default: the official folder's name when it is one of
    :data:`PAPER_DATASETS`, else the paper's six-dataset average.  ``n_splits`` (a chapter's
    ``offline_splits``): with ``split_seeds=None`` on Fashion-MNIST outside the smoke profile, run
    the first ``n_splits`` test splits instead of the profile's default number.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    name = "smoke" if smoke and profile == "offline" else profile
    cfg = profile_config(name)
    # A different dataset or teacher does not inherit the profile's options for the old one.
    if dataset is not None and dataset != cfg["dataset"]:
        cfg["dataset"], cfg["dataset_options"] = dataset, {}
    if teacher is not None and teacher != cfg["teacher"]:
        cfg["teacher"], cfg["teacher_options"] = teacher, {}
    kw: dict[str, Any] = {}
    if dataset_root is not None:
        kw["dataset_options.root"] = str(dataset_root)
    if per_class is not None:
        kw["dataset_options.per_class"] = per_class
    if student is not None:
        kw["student"] = student
    if epochs is not None:
        kw["epochs"] = epochs
        kw["last_n"] = min(cfg["last_n"], epochs)
    if cache_dir is not None:
        kw["cache_dir"] = str(cache_dir)
    if smoke and name != "smoke":
        kw.setdefault("epochs", 1)
        kw["last_n"] = 1
        if cfg.get("fewshot") is not None:
            kw["fewshot.epochs"] = 1
    kw.update(overrides or {})
    base = apply_overrides(cfg, kw)
    TrainConfig.from_dict(base).validate()
    rep = REPLICATES.get(name, REPLICATES["offline"])
    seeds_l = _as_list("seeds", seeds, rep["seeds"][:1] if smoke and name != "smoke" else rep["seeds"])
    profile_splits: list[int | None] | None = None
    if dataset_spec(base["dataset"]).split_seed_required:
        default_splits = [s for s in rep["split_seeds"] if s is not None] or [0]
        if n_splits is not None and name != "smoke" and split_seeds is None:
            profile_splits, default_splits = default_splits, TEST_SPLITS[:n_splits]
        splits_l = _as_list("split_seeds", split_seeds, default_splits)
        if None in splits_l:
            raise ValueError(f"split_seeds for {base['dataset']} must be integers (which classes are seen)")
    elif split_seeds in (None, [None]):
        splits_l = [None]  # the official lists' fixed split; an image folder's default split_seed
    else:  # seeded class splits of an official dataset or an image folder (vldlib.data.protocol)
        splits_l = _as_list("split_seeds", split_seeds, [])
        if None in splits_l:
            raise ValueError(f"split_seeds={split_seeds!r}: give integers (seeded class splits) or None "
                             f"(the {base['dataset']!r} dataset's own class split), not both")
    if paper_dataset is None:
        root = base.get("dataset_options", {}).get("root")
        folder = Path(str(root)).name if root else ""
        paper_dataset = folder if folder in PAPER_DATASETS else "Average"
    elif paper_dataset not in (*PAPER_DATASETS, "Average"):
        raise ValueError(f"unknown paper_dataset {paper_dataset!r}; valid: {', '.join(PAPER_DATASETS)}, Average")
    grid = Grid(name, base, seeds_l, splits_l, paper_dataset)
    if profile_splits is not None:
        grid.default_split_seeds = list(profile_splits)
    return grid


def expected_cost(config: Mapping[str, Any]) -> float:
    """A run's cost relative to a CNN run of the same profile, from what measurably makes a run
    slower on the CPU (about 2x each: a ViT student, CoOp prompt learning through the text encoder,
    a loss whose registry entry declares a cost, e.g. RKD's pairwise angles). Only orders the missing runs of a grid, longest first; changes no number."""
    cost = 1.0
    if str(config.get("student", "")).startswith("vit"):
        cost *= 2.0
    if config.get("prompt_learning"):
        cost *= 1.8
    for name, weight in (config.get("weights") or {}).items():  # a loss's own cost (the registry's)
        if name in LOSSES and float(weight) > 0:
            cost *= LOSSES[name].cost
    if config.get("fewshot"):
        cost *= 1.3
    return cost


def run_grid(store, grid: Grid | Sequence[tuple[dict, dict]], *, workers: int | None = None,
             progress: bool = False, log: bool = True, executor: str = "local",
             ray_address: str | None = None) -> pd.DataFrame:
    """Ask the run store for every ``(labels, config)``; one row per run (labels + record row).

    Finished runs are read back; missing ones are trained by ``executor``
    (:mod:`vldlib.study.executors`): ``"local"`` (default) trains on this machine - on CPU by
    ``workers`` processes (default: the CPU cores divided by the largest ``threads`` of the
    runs), after the teacher features they need are cached (so no image is encoded twice); on a
    GPU one at a time. ``"ray"`` makes each missing run a Ray task on the local Ray or the
    cluster at ``ray_address`` (one GPU per run on GPU machines, else ``num_cpus=threads``).
    Each run trains with its config's ``threads`` (a hashed field, default 1) wherever it runs,
    so its numbers do not depend on ``workers`` or on the executor. A failed run is reported by
    name with its error while the others finish; then
    :class:`~vldlib.study.executors.GridRunError` lists the failures.
    A progress bar over the runs to train (done / total, ETA, the run just finished) is shown
    while ``log`` is True, unless ``$VLD_PROGRESS`` is ``0``; with ``$VLD_PROGRESS=terminal`` (set by
    the book driver) it goes to the process's own stderr (``sys.__stderr__``), which a notebook
    kernel shares with the terminal that started the build, and stays. Prints one line: runs reused, runs
    trained, time taken.
    """
    check_executor(executor)
    items = grid.configs if isinstance(grid, Grid) else list(grid)
    if not items:
        raise ValueError("run_grid got no configs; call grid.expand(variants) first")
    start = time.perf_counter()
    records: dict[int, dict] = {}
    missing: list[int] = []
    for i, (_, cfg) in enumerate(items):
        found = store.get(cfg)
        if found is None:
            missing.append(i)
        else:
            records[i] = found
    # identical configs (e.g. two variants that coincide) are trained once
    unique: dict[str, int] = {}
    for i in missing:
        unique.setdefault(config_hash(items[i][1]), i)

    def name(i: int) -> str:
        return " ".join(f"{v}" for v in items[i][0].values())[:40] or config_hash(items[i][1])

    # the longest first (ViT, prompt learning, relational losses), so that no core idles at the end
    jobs = sorted((Job(i, name(i), items[i][1]) for i in unique.values()),
                  key=lambda j: expected_cost(j.config), reverse=True)
    terminal = os.environ.get("VLD_PROGRESS") == "terminal"
    bar = tqdm(total=len(jobs), desc="runs", unit="run", leave=terminal, file=sys.__stderr__ if terminal else None,
               disable=not (log and jobs) or os.environ.get("VLD_PROGRESS") == "0")
    failures: list[RunFailure] = []

    def done(job: Job, record: dict) -> None:
        records[job.index] = record
        bar.set_postfix_str(job.name)
        bar.update(1)

    def failed(job: Job, exc: BaseException) -> None:
        failures.append(RunFailure(job.name, config_hash(job.config), describe_error(exc)))
        bar.write(f"run {job.name} ({failures[-1].hash}) failed: {failures[-1].error}")
        bar.update(1)

    try:
        execute(executor, store, jobs, workers=workers, progress=progress, ray_address=ray_address,
                done=done, failed=failed)
    finally:
        bar.close()
    if failures:
        raise GridRunError(failures, len(jobs) - len(failures))
    rows = []
    for i, (labels, cfg) in enumerate(items):
        record = records.get(i) or store.run(cfg, progress=progress)  # duplicates: now finished
        rows.append({**record_row(record), **labels})
    if log:
        print(f"{len(items)} runs: {len(items) - len(jobs)} reused from {store.root}, {len(jobs)} trained "
              f"with the {executor} executor ({time.perf_counter() - start:.0f} s)")
    return pd.DataFrame(rows)
