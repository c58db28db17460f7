"""Chapter "Continual adaptation" (paper Table 11): after 5-shot fine-tuning on half of the
unseen classes, does the student still recognise the other half, and the seen classes?

Y_ood is cut in half in label order (Y_ood1: the first ``n // 2`` unseen classes, Y_ood2: the
rest). The student trained with the full method is fine-tuned on 5 images per class of Y_ood1
only (``fewshot.continual=True``; texts of Y_id and Y_ood1). Before and after, X_ood1 (its
images less the support set) is scored among Y_ood1, X_ood2 (all its images) among Y_ood2, and
X_id among Y_id.
"""
from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd

from vldlib.study import report
from vldlib.study.chapters import Chapter, ChapterRun, Claim
from vldlib.study.grid import Grid
from vldlib.study.readings import Comparison as C
from vldlib.study.reference import TABLE1_METHODS, paper_table

METHOD = "cls+imcst+vlprox(+mse)"
#: Our metric -> (the record's key before fine-tuning, after, the paper's Table 11 field).
SPLITS = {"acc_id": ("acc_id", "acc_id_5shot", None),
          "acc_ood1": ("acc_ood1_zeroshot", "acc_ood1_5shot", "x_ood1_acc"),
          "acc_ood2": ("acc_ood2_zeroshot", "acc_ood2_5shot", "x_ood2_acc")}
NAMES = {"acc_id": "X_id", "acc_ood1": "X_ood1", "acc_ood2": "X_ood2"}
STAGES = {"before": "zero_shot", "after": "after_5shot_finetune_on_x_ood1"}

def variants(grid: Grid, params: Mapping) -> dict[str, dict]:
    """The full method, fine-tuned continually on Y_ood1 (needs the profile's fewshot)."""
    if grid.base.get("fewshot") is None:
        raise ValueError("continual adaptation fine-tunes on 5 shots: the profile's fewshot must be on")
    return {"continual": {"weights": TABLE1_METHODS[METHOD], "fewshot.continual": True}}


CHAPTER = Chapter(
    name="continual",
    title="Continual adaptation",
    question="Does fine-tuning on half of the unseen classes cost the other half, or the seen classes?",
    paper_tables=("table11_continual",),
    column="stage",
    variants=variants,
    metrics={"acc_id": "", "acc_ood1": "x_ood1_acc", "acc_ood2": "x_ood2_acc"},
    comparisons=tuple(C("after", "before", m) for m in ("acc_ood1", "acc_ood2", "acc_id")),
    labels={"before": "Before (zero-shot)", "after": "After 5-shot fine-tuning on X_ood1"},
    module=__name__,
    effects_title="After minus before fine-tuning on X_ood1",
    claims=(Claim("continual_ood1", "Table 11", "Fine-tuning on five shots of X_ood1 raises X_ood1 accuracy",
                  C("after", "before", "acc_ood1")),),
)


class Run(ChapterRun):
    def setup(self) -> None:
        paper = paper_table("table11_continual")
        self.paper = paper.assign(stage=paper["stage_key"].map({v: k for k, v in STAGES.items()}))

    def derive(self, runs: pd.DataFrame) -> pd.DataFrame:
        """One row per run and stage (before / after), the accuracies in ``acc_id``, ``acc_ood1``, ``acc_ood2``."""
        rows = []
        for _, run in runs.iterrows():
            for i, stage in enumerate(STAGES):
                rows.append({"stage": stage, "seed": run["seed"], "split_seed": run["split_seed"],
                             **{m: run[keys[i]] for m, keys in SPLITS.items()}})
        return pd.DataFrame(rows)

    def table(self, acc: pd.DataFrame) -> pd.DataFrame:
        summary = report.summarize(acc, "stage", list(SPLITS))
        ours = report.interval_table(summary, "stage", labels=NAMES, order=list(STAGES))
        ours.columns = pd.MultiIndex.from_tuples([(c, "ours") for c in ours.columns])
        for ds_name in sorted(self.paper["dataset"].unique()):
            p = self.paper[self.paper["dataset"] == ds_name].set_index("stage")
            for m, (_, _, field) in SPLITS.items():
                ours[(NAMES[m], f"paper ({ds_name})")] = [
                    f"{p.loc[s, field]:.1f}" if field and s in p.index else "–" for s in ours.index]
        ours = ours[[c for m in SPLITS for c in ours.columns if c[0] == NAMES[m]]]
        ours.index = [CHAPTER.label(s) for s in ours.index]
        return ours

    def figure(self, acc: pd.DataFrame):
        long = acc.melt(id_vars=["stage", "seed", "split_seed"], value_vars=list(SPLITS),
                        var_name="split", value_name="accuracy")
        long["split"] = long["split"].map(NAMES)
        long["when"] = long["stage"].map(CHAPTER.label)
        fig, ax = plt.subplots(figsize=(7.5, 4))
        report.plot_intervals(long, x="split", y="accuracy", hue="when", order=list(NAMES.values()), ax=ax,
                              ylabel="mean per-class accuracy (%)",
                              title="Before and after fine-tuning on X_ood1 only: runs, mean and 95% CI")
        fig.tight_layout()
        return fig

    def metric_labels(self) -> dict[str, str]:
        return {m: f"{n} accuracy" for m, n in NAMES.items()}

    def paper_values(self) -> pd.DataFrame:
        return self.paper.rename(columns={field: m for m, (_, _, field) in SPLITS.items() if field})

    def reading(self, acc: pd.DataFrame, effects: pd.DataFrame) -> str:
        lines = super().reading(acc, effects).splitlines()
        lines.append("- X_ood1 and X_ood2 are each scored among their own half of the unseen classes; "
                     "the paper does not say which rule its Table 11 uses (its values are for Flower102).")
        return "\n".join(lines)
