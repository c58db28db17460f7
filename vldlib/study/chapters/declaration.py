"""A chapter's declaration (:class:`Chapter`, :class:`Claim`) and the names every chapter shares:
the accuracy columns, the paper's results, the glue names of a claim's values."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from vldlib.core.losses import method_label
from vldlib.study.reference import TABLE1_METHODS
from vldlib.study.grid import Grid
from vldlib.study.parameters import GRID_NAMES, Param
from vldlib.study.readings import Comparison

#: Our accuracy columns -> the paper's accuracy fields (Table 1 and the tables built like it).
ACCURACY: dict[str, str] = {"acc_id": "id_acc", "acc_ood_zeroshot": "ood_zero_shot_acc",
                            "acc_ood_5shot": "ood_5shot_acc"}
ACCURACY_NAMES: dict[str, str] = {"acc_id": "X_id", "acc_ood_zeroshot": "X_ood zero-shot",
                                  "acc_ood_5shot": "X_ood 5-shot"}
#: Short row names of Table 1's loss combinations (the keys of ``TABLE1_METHODS``).
#: From the loss registry's labels (:func:`vldlib.core.losses.method_label`); the single-L_cls
#: row is the paper's naive baseline.
TABLE1_LABELS: dict[str, str] = {key: method_label(weights) + (" (naive baseline)" if key == "cls" else "")
                                 for key, weights in TABLE1_METHODS.items()}
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


#: A chapter's variants as a function of its grid and parameters: ``(grid, params) -> {label: overrides}``.
VariantsFn = Callable[[Grid, Mapping[str, Any]], Mapping[str, Mapping[str, Any]]]
#: A chapter's comparisons as a function of the variants it runs (in order).
ComparisonsFn = Callable[[Sequence[str]], Sequence[Comparison]]


@dataclass(frozen=True)
class Chapter:
    """One chapter as data: everything its notebook runs and reads is declared here.

    ``variants``: label -> config overrides (run on every seed x class split), or a function of
    the grid and the parameters giving them (:data:`VariantsFn`: rows that depend on the dataset,
    e.g. the k values worth running, or on a parameter, e.g. the Table 1 rows asked for);
    ``comparisons``: the paired effects its reading reports (or a function of the variants run);
    ``column``: the run-table column naming the variant; ``metrics``: our metric columns -> the
    paper's field names in ``paper_tables``; ``paper_keys``: our row -> the paper's row key in its
    table's ``paper_column``; ``labels``: display names of the rows; ``parameters``: the
    chapter's own notebook parameters with their declared types (:func:`declared`; the shared
    ones are :data:`vldlib.study.parameters.SHARED`); ``offline_splits``: how many test class
    splits the offline default runs (None: the profile's, :data:`vldlib.study.grid.OFFLINE_SPLITS`),
    for a chapter whose comparisons need more power; ``powered``: when given, only these variants
    run on all ``offline_splits`` splits, the others on the profile's default number;
    ``claims``: the paper's headline claims it tests (listed on the front page); ``csv``: the
    name of its main table's download; ``effects_title``: the title of its effects figure.
    """

    name: str
    title: str
    question: str
    paper_tables: tuple[str, ...]
    column: str = "method"
    variants: Mapping[str, Mapping[str, Any]] | VariantsFn = field(default_factory=dict)
    metrics: Mapping[str, str] = field(default_factory=dict)
    comparisons: tuple[Comparison, ...] | ComparisonsFn = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    module: str = ""
    offline_splits: int | None = None
    powered: tuple[str, ...] = ()
    claims: tuple[Claim, ...] = ()
    parameters: Mapping[str, Param] = field(default_factory=dict)
    paper_keys: Mapping[str, str] = field(default_factory=dict)
    paper_column: str = ""
    csv: str = "table"
    effects_title: str = ""

    def label(self, key: Any) -> str:
        return str(self.labels.get(key, key))

    def variants_for(self, grid: Grid, params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """The variants this chapter runs on ``grid`` with notebook parameters ``params``."""
        found = self.variants(grid, params) if callable(self.variants) else self.variants
        return {k: dict(v) for k, v in found.items()}

    def comparisons_for(self, variants: Sequence[str]) -> tuple[Comparison, ...]:
        """The paired effects this chapter reports when it runs ``variants``."""
        return tuple(self.comparisons(list(variants)) if callable(self.comparisons) else self.comparisons)
