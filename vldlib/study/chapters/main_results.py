"""Chapter "Main results" (paper Table 1): which losses let the student recognise unseen classes?"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from vldlib.study import report
from vldlib.study.chapters import ACCURACY, ACCURACY_NAMES, TABLE1_LABELS, Chapter, ChapterRun, Claim, declared
from vldlib.study.datasets import by_dataset_table
from vldlib.study.grid import Grid
from vldlib.study.readings import Comparison as C
from vldlib.study.reference import TABLE1_METHODS, paper_table



def variants(grid: Grid, params: Mapping) -> dict[str, dict]:
    """The Table 1 rows asked for (``methods``; None: all) and the user's own (``extra_methods``)."""
    methods: Sequence[str] | None = params.get("methods")
    extra = params.get("extra_methods") or {}
    methods = list(TABLE1_METHODS) if methods is None else list(methods)
    unknown = [m for m in methods if m not in TABLE1_METHODS]
    if unknown:
        raise ValueError(f"unknown Table 1 method(s) {unknown}; valid: {list(TABLE1_METHODS)} "
                         "(or add your own with extra_methods={'label': {loss: weight}})")
    if not isinstance(extra, Mapping):
        raise ValueError("extra_methods must be a dict {label: {loss name: weight}}")
    analysis = bool(params.get("analysis", True))
    out = {m: {"weights": TABLE1_METHODS[m], "analysis": analysis} for m in methods}
    out.update({n: {"weights": dict(w), "analysis": analysis} for n, w in extra.items()})
    return out

CHAPTER = Chapter(
    name="main_results",
    title="Main results",
    question="Which losses let the student recognise unseen classes?",
    paper_tables=("table1",),
    column="method",
    variants=variants,
    metrics=ACCURACY,
    comparisons=(
        C("cls+imcst", "cls", "acc_ood_zeroshot"),
        C("cls+imcst", "cls", "acc_ood_5shot"),
        C("cls+imcst+vlprox(+mse)", "cls+imcst+mse", "acc_ood_zeroshot"),
        C("cls+imcst+vlprox(+mse)", "cls+imcst+mse", "acc_ood_5shot"),
        C("cls+imcst+vlprox(+mse)", "cls", "acc_ood_zeroshot"),
        C("cls+imcst+vlprox(+mse)", "cls", "acc_ood_5shot"),
        C("cls+mse", "cls", "acc_ood_zeroshot"),
        C("mse", "cls", "acc_id"),
        C("imcst", "cls", "acc_id"),
        C("imcst", "cls", "acc_ood_zeroshot"),
    ),
    labels=TABLE1_LABELS,
    module=__name__,
    parameters=declared("dataset_roots", "methods", "extra_methods", "analysis"),
    csv="table1",
    effects_title="Paired effects (ours) and the paper's differences ({paper_dataset})",
    # the main comparisons (L_cls vs L_cls + L_im-cst and vs the full method) need more class splits
    # than the other chapters for a 95% interval of about +/-3.5 points (issue 9)
    offline_splits=24,
    powered=("cls", "cls+imcst", "cls+imcst+vlprox(+mse)"),
    claims=(
        Claim("imcst_zeroshot", "Table 1", "Imitating the teacher's visual space (L_cls + L_im-cst) raises "
              "zero-shot X_ood accuracy over the naive L_cls", C("cls+imcst", "cls", "acc_ood_zeroshot")),
        Claim("vlprox_zeroshot", "Table 1", "Adding L_vlprox to L_cls + L_im-cst + L_mse raises zero-shot X_ood "
              "accuracy", C("cls+imcst+vlprox(+mse)", "cls+imcst+mse", "acc_ood_zeroshot")),
        Claim("full_5shot", "Table 1", "The full method raises 5-shot X_ood accuracy over the naive L_cls",
              C("cls+imcst+vlprox(+mse)", "cls", "acc_ood_5shot")),
    ),
)

#: The comparisons whose per-class gains the chapter plots (treatment, baseline).
PER_CLASS = (("cls+imcst", "cls"), ("cls+imcst+vlprox(+mse)", "cls"))


class Run(ChapterRun):
    PER_CLASS = PER_CLASS

    def setup(self) -> None:
        self.paper = paper_table("table1", dataset=self.grid.paper_dataset)
        self.labels = dict(zip(self.paper["method_key"], self.paper["method"]))

    def show_transfer(self, runs: pd.DataFrame) -> None:
        """How much of the teacher's zero-shot accuracy each student transfers (:meth:`transfer_table`)."""
        transfer = self.transfer_table(runs)
        display(transfer, self.csv(transfer, "transfer"))

    def show_per_class(self, runs: pd.DataFrame) -> None:
        """Per unseen class, the paired difference of each :data:`PER_CLASS` comparison."""
        for treatment, baseline in self.PER_CLASS:
            if self.per_class_figure(runs, treatment, baseline) is not None:
                plt.show()

    def table(self, runs: pd.DataFrame) -> pd.DataFrame:
        """Table 1: ours (mean and 95% interval) beside the paper's column; with several datasets
        one column per dataset and their Average, beside the paper's (:func:`by_dataset_table`)."""
        metrics = self.metrics(runs)
        if self.datasets:
            return by_dataset_table(runs, paper_table("table1"), column="method",
                                    metrics={m: ACCURACY[m] for m in metrics}, names=ACCURACY_NAMES,
                                    datasets=list(self.datasets), order=self.variants_run(runs), labels=self.labels)
        summary = report.summarize(runs, "method", metrics)
        table = report.beside_paper(summary, self.paper, key="method", paper_key="method_key",
                                    metrics={m: ACCURACY[m] for m in metrics}, labels=self.labels,
                                    order=list(self.variants))
        table.columns = pd.MultiIndex.from_tuples(
            [(ACCURACY_NAMES[m], "ours" if who == "ours" else f"paper ({self.grid.paper_dataset})")
             for m, who in table.columns])
        return table

    def figure(self, runs: pd.DataFrame):
        """One panel per metric: every run as a dot, the mean with its interval."""
        metrics = self.metrics(runs)
        fig, axes = plt.subplots(len(metrics), 1, figsize=(9, 2.6 * len(metrics) + 1.6), sharex=True,
                                 squeeze=False, layout="constrained")
        short = {m: self.labels.get(m, m).replace(" (naive baseline)", "") for m in self.variants}
        frame = runs.assign(row=[short.get(m, m) for m in runs["method"]])
        for ax, metric in zip(axes[:, 0], metrics):
            report.plot_intervals(frame, x="row", y=metric, order=[short[m] for m in self.variants], ax=ax,
                                  ylabel="accuracy (%)", title=ACCURACY_NAMES[metric])
        axes[-1, 0].tick_params(axis="x", labelrotation=30)
        for lab in axes[-1, 0].get_xticklabels():
            lab.set_horizontalalignment("right")
        fig.suptitle("Each dot is one run (seed x class split); black: mean with its 95% t-interval")
        return fig

    def effect_labels(self) -> dict[str, str]:
        return self.labels

    def paper_values(self) -> pd.DataFrame:
        """Table 1's rows under our metric names, keyed by our method (the paper's ``method_key``)."""
        paper = self.paper.rename(columns={v: k for k, v in ACCURACY.items()})
        return paper.assign(method=paper["method_key"])

    def reading(self, runs: pd.DataFrame, effects: pd.DataFrame) -> str:
        """The computed reading: the best setting, each effect, how many match the paper."""
        lines = super().reading(runs, effects).splitlines()
        summary = report.summarize(runs, "method", self.metrics(runs))
        best = summary[summary["metric"] == "acc_ood_zeroshot"].sort_values("mean", ascending=False)
        if not best.empty:
            top = best.iloc[0]
            lines.insert(0, f"- The highest zero-shot X_ood accuracy here comes from "
                            f"**{self.labels.get(top['method'], top['method'])}** "
                            f"({report.format_interval(top['mean'], top['ci_low'], top['ci_high'])} %, "
                            f"{int(top['n'])} {'class splits' if top['unit'] == 'class split' else 'runs'}).")
        with_paper = effects[effects["paper"].notna()]
        seen = with_paper[with_paper["verdict"] == "as in the paper"]
        missing = with_paper[with_paper["verdict"].isin(["not seen here", "reversed"])]
        lines.append(f"- Of {len(with_paper)} comparisons with a paper value, {len(seen)} show the paper's "
                     f"direction with an interval that excludes 0, and {len(missing)} do not"
                     + (f": {'; '.join(missing['comparison'] + ' on ' + missing['metric'])}."
                        if len(missing) else "."))
        return "\n".join(lines)
