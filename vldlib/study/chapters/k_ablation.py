"""Chapter "The k of L_vlprox and the teacher-correctness filter" (paper Table 9)."""
from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd

from vldlib.data import load_dataset
from vldlib.study import report
from vldlib.study.chapters import ACCURACY, ACCURACY_NAMES, Chapter, ChapterRun, Claim, declared
from vldlib.study.datasets import own_descriptions
from vldlib.study.grid import Grid
from vldlib.study.readings import Comparison as C
from vldlib.study.reference import TABLE1_METHODS, paper_table

#: Our variant names -> Table 9's variant keys.
PAPER_KEYS = {"reference": "reference_k256_filter_vlprox_nofilter_imcst", "k=1": "k1_vlprox",
              "k=10": "k10_vlprox", "no filter in L_vlprox": "no_filter_in_vlprox",
              "filter in L_im-cst": "filter_in_imcst"}

#: The filter variants, each on the reference k.
FILTERS = {"reference": {"filter": True, "im_cst_filter": False},
           "no filter in L_vlprox": {"filter": False, "im_cst_filter": False},
           "filter in L_im-cst": {"filter": True, "im_cst_filter": True}}


def seen_classes(grid: Grid) -> int:
    """How many seen classes the grid's (first) class split has: every k at least this is the full KL."""
    options = dict(grid.base["dataset_options"])
    if grid.split_seeds[0] is not None:
        options["split_seed"] = grid.split_seeds[0]
    return len(load_dataset(grid.base["dataset"], **options).seen_classes)


def k_values(grid: Grid, params: Mapping) -> list[int]:
    """The k values run besides the reference (``ks``; None: the paper's k = 1, 10 beside 256, or with
    fewer than 10 seen classes the values below both their number and the reference's k)."""
    ks = params.get("ks")
    if ks is None:
        n_seen, k_ref = seen_classes(grid), int(grid.base["k"])
        ks = [k for k in (1, 3) if k < min(n_seen, k_ref)] if n_seen < 10 else [1, 10]
    ks = [int(k) for k in ks]
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be >= 1, got {ks}")
    return ks


def descriptions(grid: Grid, params: Mapping) -> str | None:
    """The reference's description set: ``descriptions``, the dataset's own main-prompt sentences for "main"."""
    desc = params.get("descriptions", "main")
    return "official" if desc == "main" and own_descriptions(grid.base) else desc


def variants(grid: Grid, params: Mapping) -> dict[str, dict]:
    """The reference (full method, k of the profile), one row ``k=<k>`` per k that differs from it
    on this dataset, and the two filter variants."""
    n_seen, k_ref = seen_classes(grid), int(grid.base["k"])
    weights = params.get("weights")
    common = {"weights": dict(weights) if weights is not None else TABLE1_METHODS["cls+imcst+vlprox(+mse)"],
              "analysis": bool(params.get("analysis", True)), "descriptions": descriptions(grid, params)}
    out = {"reference": {**common, "k": k_ref, **FILTERS["reference"]}}
    out.update({f"k={k}": {**common, "k": k, **FILTERS["reference"]}
                for k in k_values(grid, params) if min(k, n_seen) != min(k_ref, n_seen)})
    for name in ("no filter in L_vlprox", "filter in L_im-cst"):
        out[name] = {**common, "k": k_ref, **FILTERS[name]}
    return out


def comparisons(variants: list[str]) -> list[C]:
    """Every variant against the reference, on the X_ood accuracies."""
    return [C(v, "reference", m) for v in variants if v != "reference" for m in ("acc_ood_zeroshot", "acc_ood_5shot")]


CHAPTER = Chapter(
    name="k_ablation",
    title="The k of L_vlprox and the teacher-correctness filter",
    question="How much do L_vlprox's top-k and its filter matter?",
    paper_tables=("table9",),
    column="variant",
    variants=variants,
    metrics=ACCURACY,
    comparisons=comparisons,
    labels={"reference": "reference (filter in L_vlprox)"},
    module=__name__,
    parameters=declared("ks", "descriptions", "weights", "analysis"),
    paper_keys=PAPER_KEYS,
    paper_column="variant_key",
    csv="table9",
    effects_title="Variants minus the reference",
    claims=(
        Claim("k1_zeroshot", "Table 9", "Switching L_vlprox off (k = 1) lowers zero-shot X_ood accuracy",
              C("k=1", "reference", "acc_ood_zeroshot")),
        Claim("nofilter_zeroshot", "Table 9", "Dropping the teacher-correctness filter of L_vlprox lowers "
              "zero-shot X_ood accuracy", C("no filter in L_vlprox", "reference", "acc_ood_zeroshot")),
    ),
)


class Run(ChapterRun):
    def setup(self) -> None:
        self.n_seen, self.k_ref = seen_classes(self.grid), int(self.grid.base["k"])
        self.ks = k_values(self.grid, self.params)
        self.descriptions = descriptions(self.grid, self.params)
        self.paper_all = self.paper

    def notes(self) -> str:
        return self.note() + "\n\n" + self.proxy_note()

    def note(self) -> str:
        n, k = self.n_seen, self.k_ref
        values = ", ".join(str(x) for x in sorted(set(self.ks + [min(k, n)])))
        return (f"With **{n} seen classes**, every k ≥ {n} is the full KL over them, so the reference "
                f"(k = {k}) is k = {min(k, n)} and the values worth running are k ∈ {{{values}}}; "
                f"k = 1 switches L_vlprox off (a softmax over one class). Descriptions: {self.descriptions}.")

    def table(self, runs: pd.DataFrame) -> pd.DataFrame:
        """Table 9: ours (mean, 95% interval) beside the paper's datasets."""
        table = self.accuracy_table(runs, list(self.variants), self.paper_all, "variant_key", PAPER_KEYS)
        table.index = [f"reference (k = {self.k_ref}, filter in L_vlprox)" if v == "reference" else v
                       for v in table.index]
        return table

    def figure(self, runs: pd.DataFrame):
        metrics = self.metrics(runs)
        curve = runs[runs["variant"].isin(["reference"] + [f"k={k}" for k in self.ks])].copy()
        curve["k"] = [min(int(k), self.n_seen) for k in curve["k"]]
        long = curve.melt(id_vars=["k", "seed", "split_seed"], value_vars=[m for m in metrics if m != "acc_id"],
                          var_name="metric", value_name="accuracy")
        long["metric"] = long["metric"].map(ACCURACY_NAMES)
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        report.plot_lines(long, x="k", y="accuracy", hue="metric", ax=axes[0],
                          title=f"X_ood accuracy against k (k = {self.n_seen}: full KL)", ylabel="accuracy (%)")
        axes[0].set_xticks(sorted(curve["k"].unique()))
        report.plot_intervals(runs, x="variant", y="acc_ood_zeroshot", order=list(self.variants), ax=axes[1],
                              ylabel="X_ood zero-shot accuracy (%)", title="All variants (runs, mean, 95% CI)")
        fig.tight_layout()
        return fig

    def effect_labels(self) -> dict[str, str]:
        return {}  # the effects name the variants by their keys ("k=1 vs reference")

    def reading(self, runs: pd.DataFrame, effects: pd.DataFrame) -> str:
        lines = super().reading(runs, effects).splitlines()
        if "k=1" in self.variants:
            off = effects[(effects["comparison"] == "k=1 vs reference")]
            helps = off[off["verdict"].isin(["lowers", "as in the paper"]) & (off["effect"] < 0)]
            lines.append(f"- Switching L_vlprox off (k = 1) lowers X_ood accuracy with an interval excluding 0 on "
                         f"{len(helps)} of {len(off)} X_ood measures here.")
        return "\n".join(lines)
