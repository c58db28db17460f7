"""Chapter "Do the descriptions help because of what they say?" (a question the paper leaves open).

Same protocol, five class-text sets (:mod:`vldlib.text.controls`), every enriched set as the mean
feature over its strings (``text_mode="average"``): plain names; the real descriptions; the same
descriptions shuffled across classes; WaffleCLIP random-word descriptors (Roth et al., ICCV
2023); CLIP's name-only template ensemble. Scored for the teacher (zero-shot, no training) and
for students trained with the full method on each set. If the content matters, the real set
beats the shuffled and random ones; if only the form matters (more strings averaged, longer
texts), the controls do as well.
"""
from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd

from vldlib.study import report
from vldlib.study.chapters import ACCURACY_NAMES, Chapter, ChapterRun, Claim
from vldlib.study.chapters import teacher_zero_shot
from vldlib.study.datasets import own_descriptions
from vldlib.study.grid import Grid
from vldlib.study.readings import Comparison as C
from vldlib.study.reference import TABLE1_METHODS

METHOD = "cls+imcst+vlprox(+mse)"
#: Text set -> (uses the real descriptions, text mode, control).
TEXT_SETS = {"plain": (False, "first", None), "real": (True, "average", None),
             "shuffled": (True, "average", "shuffled"), "waffle": (True, "average", "waffle"),
             "templates": (False, "average", "templates")}
METRICS = {"acc_id": ACCURACY_NAMES["acc_id"], "acc_ood_zeroshot": ACCURACY_NAMES["acc_ood_zeroshot"]}

def description_set(grid: Grid) -> str:
    """The real descriptions: the dataset's own main-prompt sentences where it ships them, else "main"."""
    return "official" if own_descriptions(grid.base) else "main"


def variants(grid: Grid, params: Mapping) -> dict[str, dict]:
    """The full method on each text set; "plain" is the same run as main_results' full method."""
    desc, out = description_set(grid), {}
    for key, (real, mode, control) in TEXT_SETS.items():
        v = {"weights": TABLE1_METHODS[METHOD]}
        if key == "plain":
            v["analysis"] = True
        else:
            v.update({"descriptions": desc if real else None, "text_mode": mode, "description_control": control,
                      "fewshot": None})  # the chapter reports X_id and zero-shot X_ood only
        out[key] = v
    return out


CHAPTER = Chapter(
    name="description_controls",
    title="Do the descriptions help because of what they say?",
    question="Do real descriptions beat shuffled, random-word and template-only class texts?",
    paper_tables=(),
    column="texts",
    variants=variants,
    metrics=dict.fromkeys(METRICS, ""),
    comparisons=tuple(C("real", b, m) for b in ("plain", "shuffled", "waffle", "templates") for m in METRICS),
    labels={"plain": "Plain names", "real": "Real descriptions", "shuffled": "Descriptions shuffled across classes",
            "waffle": "Random-word descriptors (WaffleCLIP)", "templates": "Name-only template ensemble"},
    module=__name__,
    effects_title="Real descriptions minus each control",
    claims=(Claim("controls_descriptions_zeroshot", "Table 7", "Descriptions raise the student's zero-shot X_ood accuracy "
                  "over plain names", C("real", "plain", "acc_ood_zeroshot"), direction=1,
                  direction_text="higher (Tables 5, 7)"),),
)


class Run(ChapterRun):
    def setup(self) -> None:
        self.desc = description_set(self.grid)
        self.teacher_run = teacher_zero_shot.Run(teacher_zero_shot.CHAPTER, {**self.params, "descriptions": self.desc})
        self.teacher_run.text_sets = {k: (CHAPTER.label(k), self.desc if real else None, mode, control)
                                      for k, (real, mode, control) in TEXT_SETS.items()}

    def derive(self, runs: pd.DataFrame) -> pd.DataFrame:
        """Teacher zero-shot accuracies (every class split; cached features, no training) and the
        students' runs, stacked with a ``model`` column ("teacher" / "student")."""
        teacher = self.teacher_run.zero_shot().assign(model="teacher")
        students = runs.assign(model="student")
        cols = ["model", "texts", "seed", "split_seed", *METRICS]
        return pd.concat([teacher[cols], students[cols]], ignore_index=True)

    def table(self, acc: pd.DataFrame) -> pd.DataFrame:
        parts = []
        for model in ("teacher", "student"):
            summary = report.summarize(acc[acc["model"] == model], "texts", list(METRICS))
            t = report.interval_table(summary, "texts", labels=METRICS, order=list(TEXT_SETS))
            t.columns = pd.MultiIndex.from_tuples([(model, c) for c in t.columns])
            parts.append(t)
        table = pd.concat(parts, axis=1)
        table.index = [CHAPTER.label(k) for k in table.index]
        return table

    def figure(self, acc: pd.DataFrame):
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=False)
        frame = acc.assign(row=[CHAPTER.label(k).replace(" (WaffleCLIP)", "\n(WaffleCLIP)").replace(" across", "\nacross")
                                for k in acc["texts"]])
        order = list(dict.fromkeys(frame.set_index("texts").loc[list(TEXT_SETS), "row"]))
        for ax, model in zip(axes, ("teacher", "student")):
            report.plot_intervals(frame[frame["model"] == model], x="row", y="acc_ood_zeroshot", order=order, ax=ax,
                                  ylabel="X_ood zero-shot accuracy (%)", title=f"{model}: dots are runs, mean and 95% CI")
            ax.tick_params(axis="x", labelrotation=30, labelsize=8)
            ax.set_xlabel("")
        fig.tight_layout()
        return fig

    def effects(self, acc: pd.DataFrame) -> pd.DataFrame:
        parts = []
        for model, units in (("student", ["seed", "split_seed"]), ("teacher", ["split_seed"])):  # claims read the first
            e = report.compare(acc[acc["model"] == model], CHAPTER.comparisons, column="texts",
                               labels=dict(CHAPTER.labels), units=units,
                               metric_labels={m: f"{model}'s {n} accuracy" for m, n in METRICS.items()})
            parts.append(e)
        # one Series of per-unit differences per row (report.compare's attrs), kept across the concat
        differences = [d for e in parts for d in e.attrs.pop("differences", [])]
        out = pd.concat(parts, ignore_index=True)
        out.attrs["differences"] = differences
        return out

    def reading(self, acc: pd.DataFrame, effects: pd.DataFrame) -> str:
        lines = super().reading(acc, effects).splitlines()
        lines.append("- The paper reports no such controls; its Tables 5 and 7 compare descriptions with plain "
                     "names only. Shuffling keeps every sentence and its length but breaks its link to the "
                     "class; random descriptors keep the averaging over several strings but carry no content.")
        return "\n".join(lines)
