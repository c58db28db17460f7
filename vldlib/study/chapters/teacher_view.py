"""Chapter "Teacher view": what should the student copy, the teacher's centre crop or its own view?

The paper computes the teacher's image feature once per image, on the official centre-crop view,
while the student trains on random crops and flips of the image: L_mse and L_im-cst then ask the
student's feature of a crop to match the teacher's feature of a different, larger view. Dataset
reinforcement (MobileCLIP) stores K augmented views per image with the teacher's embedding of each,
so that the student imitates the teacher on the very view it sees (``TrainConfig.teacher_views``,
:mod:`vldlib.train.views`). This chapter compares the two targets for L_mse alone, L_im-cst alone
and the full method. The centre-crop rows are the main-results chapter's runs (same configs, so
nothing is trained twice); the own-view rows differ only in ``teacher_views``. The paper does not
ask this question, so there are no paper numbers to set beside ours.
"""
from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd

from vldlib.study import report
from vldlib.study.chapters import ACCURACY, ACCURACY_NAMES, TABLE1_LABELS, Chapter, ChapterRun, Claim, declared
from vldlib.study.chapters import main_results
from vldlib.study.grid import Grid
from vldlib.study.parameters import PARAMETERS
from vldlib.study.readings import Comparison as C

#: The Table 1 rows whose teacher target is varied (their centre-crop runs are the main-results chapter's).
METHODS = ("mse", "imcst", "cls+imcst+vlprox(+mse)")
#: The suffix of an own-view row's key (``"mse" + VIEW`` is L_mse with stored teacher views).
VIEW = "@view"
#: The paper's first principle (Table 1: L_im-cst beats L_mse on unseen classes) tested with the own-view
#: target: the chapter's claim (the paper states it for its centre-crop target only).
PRINCIPLE = (C("imcst" + VIEW, "mse" + VIEW, "acc_ood_zeroshot"),)
#: The two targets, as the table's and the figure's column names.
TARGETS = {"": "centre crop", VIEW: "own view"}
#: The default number of stored views per X_train image (the ``teacher_views`` parameter's), sized by
#: the teacher's cost of embedding them.
DEFAULT_VIEWS: int = PARAMETERS["teacher_views"].default


def variants(grid: Grid, params: Mapping) -> dict[str, dict]:
    """Each of :data:`METHODS` configured exactly as the main-results chapter's (the centre-crop
    target), and the same with ``teacher_views`` = K (the own-view target)."""
    rows = main_results.variants(grid, {"methods": list(METHODS)})
    k = int(params.get("teacher_views") or DEFAULT_VIEWS)
    out = {}
    for m in METHODS:
        out[m] = rows[m]
        out[m + VIEW] = {**rows[m], "teacher_views": k}
    return out


def _label(key: str) -> str:
    base, view = (key[:-len(VIEW)], VIEW) if key.endswith(VIEW) else (key, "")
    return f"{TABLE1_LABELS.get(base, base)}, {TARGETS[view]}"


CHAPTER = Chapter(
    name="teacher_view",
    title="What should the student copy: the teacher's centre crop or its own view?",
    question="Should the student imitate the teacher's embedding of the centre crop or of the view it sees?",
    paper_tables=(),
    column="method",
    variants=variants,
    metrics=ACCURACY,
    comparisons=(*(C(m + VIEW, m, metric) for m in METHODS for metric in ACCURACY), *PRINCIPLE),
    labels={k: _label(k) for m in METHODS for k in (m, m + VIEW)},
    module=__name__,
    parameters=declared("teacher_views"),
    csv="teacher_view",
    effects_title="Own view minus centre crop, paired over class splits",
    claims=(Claim("imcst_beats_mse_own_view", "Table 1", "With the teacher's embedding of the student's own view "
                  "as the target, imitating the teacher's visual space (L_im-cst) still beats matching its "
                  "features (L_mse) on unseen classes", PRINCIPLE[0], direction=1,
                  direction_text="higher (Table 1, centre-crop target)"),),
)


class Run(ChapterRun):
    def notes(self) -> str:
        k = self.variants[METHODS[0] + VIEW]["teacher_views"]
        return (f"{self.proxy_note()}\n\nThe own-view rows store **K = {k}** augmented views of each X_train image "
                "(the student's own RandomResizedCrop + flip, drawn once per image and view), each embedded once by "
                "the teacher and cached; every epoch each image shows the student one of its K views, and the "
                "teacher's embedding of that view is the target of L_mse, L_im-cst and L_vlprox. The centre-crop "
                "rows are the paper's setting (the teacher embeds the whole image once, the student sees a fresh "
                "random crop): they are the main-results chapter's runs. 5-shot fine-tuning keeps the centre-crop "
                "target in both. **The paper does not ask this question**: it has no numbers for the own-view "
                "target, so no paper values stand beside ours on this page.").strip()

    def table(self, data: pd.DataFrame) -> pd.DataFrame:
        """Per method, each accuracy (mean and 95% interval over class splits) with the centre-crop
        and with the own-view target side by side."""
        metrics = self.metrics(data)
        summary = report.summarize(data, "method", metrics)
        wide = report.interval_table(summary, "method", labels={m: ACCURACY_NAMES[m] for m in metrics},
                                     order=list(self.variants))
        rows = {}
        for m in METHODS:
            rows[TABLE1_LABELS.get(m, m)] = {(ACCURACY_NAMES[metric], target): (
                wide.loc[m + suffix, ACCURACY_NAMES[metric]] if m + suffix in wide.index else "–")
                for metric in metrics for suffix, target in TARGETS.items()}
        table = pd.DataFrame.from_dict(rows, orient="index")
        table.columns = pd.MultiIndex.from_tuples(table.columns)
        return table

    def figure(self, data: pd.DataFrame):
        """One panel per metric: every run as a dot, per method the two targets side by side."""
        metrics = self.metrics(data)
        if data.empty or not metrics:
            return None
        frame = data.assign(row=[TABLE1_LABELS.get(k.removesuffix(VIEW), k) for k in data["method"]],
                            target=[TARGETS[VIEW if k.endswith(VIEW) else ""] for k in data["method"]])
        frame = frame.sort_values("target", key=lambda s: s.map({t: i for i, t in enumerate(TARGETS.values())}))
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 4.2), squeeze=False,
                                 layout="constrained")
        for ax, metric in zip(axes[0], metrics):
            report.plot_intervals(frame, x="row", y=metric, hue="target", ax=ax, ylabel="accuracy (%)",
                                  order=[TABLE1_LABELS.get(m, m) for m in METHODS], title=ACCURACY_NAMES[metric])
            ax.tick_params(axis="x", labelrotation=25, labelsize=8)
        fig.suptitle("Each dot is one run (class split); bars: mean with its 95% t-interval")
        return fig

    def reading(self, data: pd.DataFrame, effects: pd.DataFrame) -> str:
        """The paired effects, then which methods the own view helps or hurts on each metric."""
        lines = super().reading(data, effects).splitlines()
        for metric in self.metrics(data):
            hit = (effects[(effects["metric_key"] == metric) & effects["baseline"].isin(METHODS)]
                   if not effects.empty else effects)
            up = [TABLE1_LABELS.get(t.removesuffix(VIEW), t) for t, lo in zip(hit["treatment"], hit["ci_low"]) if lo > 0]
            down = [TABLE1_LABELS.get(t.removesuffix(VIEW), t) for t, hi in zip(hit["treatment"], hit["ci_high"]) if hi < 0]
            if len(hit):
                lines.append(f"- {ACCURACY_NAMES[metric]} accuracy with the own view instead of the centre crop: "
                             f"higher for {', '.join(up) or 'no method'}, lower for {', '.join(down) or 'no method'}; "
                             f"{len(hit) - len(up) - len(down)} of {len(hit)} methods show no difference their 95% "
                             "interval over class splits can tell from 0.")
        lines.append("- The paper does not ask this question (its teacher target is always the official centre "
                     "crop), so these effects have no paper value to agree or disagree with; its Table 1 principle "
                     "(L_im-cst above L_mse on unseen classes) is tested here with the own-view target.")
        return "\n".join(lines)
