"""Chapter "Few-shot by retrieval" (paper Table 10): fine-tune on the 5-shot support set, or
only look it up in a Tip-Adapter-style cache?

Both use the same support images (the first 5 per unseen class in sorted key order) and the same
evaluation images (the rest of X_ood). Fine-tuning is the run's own 5-shot stage; retrieval
(:func:`vldlib.train.fewshot.retrieval_logits`, alpha = 1, beta = 5.5: Tip-Adapter's defaults and
the official code's) is applied to the same run's main-stage student, so it costs no training.
"""
from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd

from vldlib.study import report
from vldlib.study.chapters import Chapter, ChapterRun, Claim, declared
from vldlib.study.derived import memoised
from vldlib.study.grid import Grid
from vldlib.study.readings import Comparison as C
from vldlib.study.reference import TABLE1_METHODS, paper_table
from vldlib.train import retrieval_accuracy
from vldlib.train.fewshot import RETRIEVAL_ALPHA, RETRIEVAL_BETA

METHOD = "cls+imcst+vlprox(+mse)"
#: Our rows -> the run-record / retrieval keys they are read from.
SOURCES = {"zero-shot": "acc_ood_zeroshot_fs_eval", "retrieval (teacher keys)": "acc_ood_retrieval_teacher_keys",
           "retrieval (student keys)": "acc_ood_retrieval_student_keys", "fine-tuning": "acc_ood_5shot"}
PAPER_KEYS = {"fine-tuning": "Fine-tuning", "retrieval (teacher keys)": "Retrieval"}
#: The version of :func:`retrieval_accuracy`'s numbers in the runs' memos (bump it when they change).
RETRIEVAL_VERSION = 1

def variants(grid: Grid, params: Mapping) -> dict[str, dict]:
    """The full method's runs (shared with main_results); their 5-shot stage needs the profile's fewshot."""
    if grid.base.get("fewshot") is None:
        raise ValueError("this chapter compares with 5-shot fine-tuning: the profile's fewshot must be on")
    return {METHOD: {"weights": TABLE1_METHODS[METHOD], "analysis": True}}


CHAPTER = Chapter(
    name="fewshot_retrieval",
    title="Few-shot by retrieval",
    question="Is a retrieval cache of the 5-shot support set as good as fine-tuning on it?",
    paper_tables=("table10_fewshot_retrieval",),
    column="method",
    variants=variants,
    metrics={"acc_ood_5shot": "ood_5shot_acc"},
    comparisons=(
        C("fine-tuning", "retrieval (teacher keys)", "acc_ood_5shot"),
        C("retrieval (teacher keys)", "zero-shot", "acc_ood_5shot"),
        C("retrieval (student keys)", "retrieval (teacher keys)", "acc_ood_5shot"),
    ),
    labels={"retrieval (teacher keys)": "Retrieval, teacher keys (official code)",
            "retrieval (student keys)": "Retrieval, student keys (paper's text)",
            "zero-shot": "Zero-shot (no support set)", "fine-tuning": "5-shot fine-tuning"},
    module=__name__,
    parameters=declared("retrieval_alpha", "retrieval_beta"),
    paper_keys=PAPER_KEYS,
    paper_column="method",
    effects_title="Fine-tuning and retrieval: paired effects",
    claims=(Claim("finetune_beats_retrieval", "Table 10", "5-shot fine-tuning beats a retrieval cache of the "
                  "same support images", C("fine-tuning", "retrieval (teacher keys)", "acc_ood_5shot")),),
)


class Run(ChapterRun):
    def setup(self) -> None:
        self.alpha = float(self.params.get("retrieval_alpha", RETRIEVAL_ALPHA))
        self.beta = float(self.params.get("retrieval_beta", RETRIEVAL_BETA))
        if self.alpha < 0 or self.beta < 0:
            raise ValueError(f"retrieval_alpha and retrieval_beta must be >= 0, got {self.alpha}, {self.beta}")
        self.order = list(SOURCES)  # one row per way of using the support set, derived from each run

    def derive(self, runs: pd.DataFrame) -> pd.DataFrame:
        """The retrieval cache on each run's main-stage student: one row per run and method, the
        accuracy in ``acc_ood_5shot``."""
        rows = []
        for (labels, config), (_, run) in zip(self.grid.configs, runs.iterrows()):
            values = memoised(self.store, config, "retrieval_accuracy", RETRIEVAL_VERSION,
                              lambda config=config: retrieval_accuracy(
                                  config, self.store.verified_run_dir(config, progress=False),
                                  cache_dir=self.store.cache_dir, alpha=self.alpha, beta=self.beta),
                              params={"alpha": self.alpha, "beta": self.beta})
            values["acc_ood_5shot"] = run["acc_ood_5shot"]
            for method, key in SOURCES.items():
                rows.append({"method": method, "seed": labels["seed"], "split_seed": labels["split_seed"],
                             "acc_ood_5shot": values[key]})
        print(f"retrieval cache: alpha {self.alpha}, beta {self.beta}, one view per support image")
        return pd.DataFrame(rows)

    def figure(self, acc: pd.DataFrame):
        fig, ax = plt.subplots(figsize=(7.5, 3.8))
        frame = acc.assign(row=[CHAPTER.label(m) for m in acc["method"]])
        report.plot_intervals(frame, x="row", y="acc_ood_5shot", order=[CHAPTER.label(m) for m in SOURCES], ax=ax,
                              ylabel="X_ood accuracy (%)",
                              title="Same support and evaluation images: runs (dots), mean and 95% t-interval")
        ax.tick_params(axis="x", labelrotation=15)
        ax.set_xlabel("")
        fig.tight_layout()
        return fig

    def metric_labels(self) -> dict[str, str]:
        return {"acc_ood_5shot": "X_ood accuracy (support images removed)"}

    def reading(self, acc: pd.DataFrame, effects: pd.DataFrame) -> str:
        lines = super().reading(acc, effects).splitlines()
        lines.append(f"- The cache uses alpha = {self.alpha} and beta = {self.beta} (Tip-Adapter's defaults, "
                     "the official code's values; not tuned here) and one un-augmented view per support "
                     "image, where the official code caches ten (nine RandAugment views).")
        return "\n".join(lines)
