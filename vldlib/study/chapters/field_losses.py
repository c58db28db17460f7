"""Chapter "The paper's losses beside the field's": L_mse, L_im-cst and L_vlprox next to CLIP-KD's
FD, ICL and CRD-style affinity distillation (Yang et al., CVPR 2024) and relational KD (Park et
al., CVPR 2019), each added to L_cls, with the accuracies and the analysis metrics."""
from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from vldlib.study import report
from vldlib.study.chapters import ACCURACY, ACCURACY_NAMES, Chapter, ChapterRun, Claim, declared
from vldlib.study.grid import Grid
from vldlib.study.readings import Comparison as C
from vldlib.study.reference import FIELD_LOSS_METHODS, paper_table

METHODS = FIELD_LOSS_METHODS
PAPERS_OWN = ("cls+mse", "cls+imcst", "cls+vlprox")
#: The rows Table 1 has (same keys there).
PAPER_KEYS = {m: m for m in ("cls", "cls+mse", "cls+imcst")}
FIELD = ("cls+fd", "cls+icl", "cls+crd", "cls+rkd")
#: The analysis columns shown (X_ood; M_neigh k=10, M_vlalign k=3 as in the feature-errors chapter).
ANALYSIS: dict[str, str] = {"analysis.X_ood.mse": "X_ood squared distance (lower: closer)",
                            "analysis.X_ood.m_rel": "X_ood M_rel (higher)",
                            "analysis.X_ood.m_neigh.10": "X_ood M_neigh k=10 (higher)",
                            "analysis.X_ood.m_vlalign.3": "X_ood M_vlalign k=3 (lower)"}

def variants(grid: Grid, params: Mapping) -> dict[str, dict]:
    """The loss rows asked for (``losses``; None: all eight), each added to L_cls."""
    keys = list(METHODS) if params.get("losses") is None else list(params["losses"])
    bad = [m for m in keys if m not in METHODS]
    if bad:
        raise ValueError(f"unknown loss row(s) {bad}; valid: {list(METHODS)}")
    return {m: {"weights": METHODS[m], "analysis": bool(params.get("analysis", True))} for m in keys}


CHAPTER = Chapter(
    name="field_losses",
    title="The paper's losses beside the field's",
    question="Do the paper's distillation terms beat the feature and relation losses of the wider KD literature?",
    paper_tables=("table1",),
    column="method",
    variants=variants,
    metrics=ACCURACY,
    comparisons=tuple(C(m, "cls", metric) for m in PAPERS_OWN + FIELD for metric in ("acc_ood_zeroshot", "acc_id"))
    + tuple(C(m, "cls+imcst", "acc_ood_zeroshot") for m in FIELD)
    + (C("cls+imcst", "cls+mse", "acc_ood_zeroshot"),),
    labels={"cls": "L_cls alone", "cls+mse": "L_cls + L_mse", "cls+imcst": "L_cls + L_im-cst",
            "cls+vlprox": "L_cls + L_vlprox", "cls+fd": "L_cls + 2000·FD (CLIP-KD)", "cls+icl": "L_cls + ICL (CLIP-KD)",
            "cls+crd": "L_cls + CRD affinity (CLIP-KD)", "cls+rkd": "L_cls + RKD (Park et al.)"},
    module=__name__,
    parameters=declared("losses", "analysis"),
    paper_keys=PAPER_KEYS,
    paper_column="method_key",
    claims=(Claim("field_imcst_vs_mse", "Table 1", "Imitating the teacher's image space contrastively (L_im-cst) "
                  "beats regressing its features (L_mse) for zero-shot X_ood accuracy",
                  C("cls+imcst", "cls+mse", "acc_ood_zeroshot")),),
)


class Run(ChapterRun):
    def setup(self) -> None:
        self.methods = list(self.variants)

    def show_analysis(self, runs: pd.DataFrame) -> None:
        """The analysis metrics of each student (:meth:`analysis_table`) with its CSV."""
        analysis = self.analysis_table(runs)
        display(analysis, self.csv(analysis, "analysis"))

    def analysis_table(self, runs: pd.DataFrame) -> pd.DataFrame:
        """The analysis metrics of each student on X_ood: mean and 95% interval over the runs."""
        cols = [c for c in ANALYSIS if c in runs.columns]
        if not cols:
            return pd.DataFrame()
        summary = report.summarize(runs, "method", cols)
        table = report.interval_table(summary, "method", labels={c: ANALYSIS[c] for c in cols}, digits=3,
                                      order=self.methods)
        table.index = [CHAPTER.label(m) for m in table.index]
        return table

    def figure(self, runs: pd.DataFrame):
        """Zero-shot X_ood accuracy per loss (left) and against M_rel (right), one dot per run."""
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [3, 2]})
        frame = runs.assign(row=[CHAPTER.label(m) for m in runs["method"]])
        report.plot_intervals(frame, x="row", y="acc_ood_zeroshot", order=[CHAPTER.label(m) for m in self.methods],
                              ax=axes[0], ylabel="X_ood zero-shot accuracy (%)",
                              title="Runs (dots), mean and 95% t-interval (black)")
        axes[0].tick_params(axis="x", labelrotation=40)
        for lab in axes[0].get_xticklabels():
            lab.set_horizontalalignment("right")
        if "analysis.X_ood.m_rel" in runs.columns:
            for m in self.methods:
                part = frame[frame["method"] == m]
                axes[1].scatter(part["analysis.X_ood.m_rel"], part["acc_ood_zeroshot"], label=CHAPTER.label(m),
                                marker="o" if m in ("cls",) + PAPERS_OWN else "^", alpha=0.75)
            axes[1].set_xlabel("X_ood M_rel (student-teacher coherence)")
            axes[1].set_ylabel("X_ood zero-shot accuracy (%)")
            axes[1].set_title("Coherence vs accuracy (circles: the paper's; triangles: the field's)")
            axes[1].legend(fontsize=7, loc="best")
        fig.tight_layout()
        return fig

    def reading(self, runs: pd.DataFrame, effects: pd.DataFrame) -> str:
        summary = report.summarize(runs, "method", ["acc_ood_zeroshot"])
        ranked = summary.sort_values("mean", ascending=False)
        lines = []
        if not ranked.empty:
            order = ", ".join(f"{CHAPTER.label(r['method'])} "
                              f"{report.format_interval(r['mean'], r['ci_low'], r['ci_high'])}"
                              for _, r in ranked.iterrows())
            lines.append(f"- Zero-shot X_ood accuracy (%), best first: {order}.")
            top = ranked.iloc[0]["method"]
            kind = "one of the paper's terms" if top in ("cls",) + PAPERS_OWN else "a loss from the wider field"
            lines.append(f"- The best mean here is {kind}: **{CHAPTER.label(top)}**; whether it is distinguishable "
                         "from the others is what the paired intervals below say.")
        lines += super().reading(runs, effects).splitlines()
        return "\n".join(lines)
