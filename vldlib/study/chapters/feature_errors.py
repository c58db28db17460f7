"""Chapter "Feature errors and coherence" (paper Tables 2, 3-4, 14-16): what should the student
copy from the teacher?"""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from vldlib.study import report
from vldlib.study.chapters import TABLE1_LABELS, Chapter, ChapterRun, Claim
from vldlib.study.readings import Comparison as C
from vldlib.study.reference import TABLE1_METHODS, paper_table

METHODS = ("mse", "cls+mse", "cls+imcst+mse", "cls+imcst", "cls+imcst+vlprox(+mse)")
#: Table 2's rows (the full method has no Table 2 row); Tables 3-4/14-16 rows, cumulative on L_cls + L_mse.
TABLE2_METHODS = METHODS[:-1]
ANALYSIS_METHODS = ("cls+mse", "cls+imcst+mse", "cls+imcst+vlprox(+mse)")
SPLITS = ("X_train", "X_id", "X_ood")
#: The paper's row names -> our variant keys.
TABLE2_KEYS = {"L_mse": "mse", "L_cls + L_mse": "cls+mse", "L_cls + L_mse + L_im-cst": "cls+imcst+mse",
               "L_cls + L_im-cst": "cls+imcst"}
ANALYSIS_KEYS = {"L_cls+L_mse": "cls+mse", "L_cls+L_mse+L_im-cst": "cls+imcst+mse",
                 "L_cls+L_mse+L_im-cst+L_vlprox": "cls+imcst+vlprox(+mse)"}
#: (title, record metric, k values, paper table) of Tables 14-16.
SPECS = (("M_rel", "m_rel", (None,), "table14_mrel"), ("M_neigh", "m_neigh", (3, 5, 10), "table15_mneigh"),
         ("M_vlalign", "m_vlalign", (2, 3, 5), "table16_vlalign"))

CHAPTER = Chapter(
    name="feature_errors",
    title="Feature errors and coherence",
    question="What should the student copy from the teacher?",
    paper_tables=("table2", "table14_mrel", "table15_mneigh", "table16_vlalign"),
    column="method",
    variants={m: {"weights": TABLE1_METHODS[m], "analysis": True} for m in METHODS},
    metrics={"analysis.X_ood.mse": "mse", "analysis.X_ood.m_rel": "x_ood"},
    comparisons=(
        C("cls+imcst", "mse", "analysis.X_ood.mse"),
        C("cls+imcst+mse", "cls+mse", "analysis.X_train.m_rel"),
        C("cls+imcst+mse", "cls+mse", "analysis.X_ood.m_rel"),
        C("cls+imcst+mse", "cls+mse", "analysis.X_train.m_neigh.10"),
        C("cls+imcst+mse", "cls+mse", "analysis.X_ood.m_neigh.10"),
        C("cls+imcst+mse", "cls+mse", "analysis.X_ood.m_vlalign.3"),
        C("cls+imcst+vlprox(+mse)", "cls+imcst+mse", "analysis.X_ood.m_vlalign.3"),
    ),
    labels={m: TABLE1_LABELS[m] for m in METHODS},
    module=__name__,
    csv="table2",
    claims=(
        Claim("imcst_vs_mse_error", "Table 2", "A student trained with L_cls + L_im-cst lands farther from the "
              "teacher's features (squared distance on X_ood) than one trained with L_mse, although it "
              "classifies unseen classes better", C("cls+imcst", "mse", "analysis.X_ood.mse"), digits=3),
    ),
)


def metric_label(column: str) -> str:
    """``analysis.X_ood.m_neigh.10`` -> ``X_ood M_neigh k=10``."""
    return (column.replace("analysis.", "").replace(".m_", " M_").replace(".mse", " mse")
            .replace("M_neigh.", "M_neigh k=").replace("M_vlalign.", "M_vlalign k="))


class Run(ChapterRun):
    def setup(self) -> None:
        paper2 = paper_table("table2", student="ResNet18")
        self.paper2 = paper2.assign(method=paper2["student_training"].map(TABLE2_KEYS))
        self.table2_datasets = self.paper_datasets(paper2)
        self.analysis_dataset = self.grid.paper_dataset if self.grid.paper_dataset != "Average" else "Flower102"

    def derive(self, runs: pd.DataFrame) -> pd.DataFrame:
        """The runs themselves, once they are known to carry the analysis columns."""
        missing = [c for c in ("analysis.X_train.mse", "analysis.X_ood.m_rel") if c not in runs.columns]
        if missing:
            raise RuntimeError(f"the runs carry no analysis columns {missing}; were they trained with analysis=True?")
        return runs

    def _long_errors(self, runs: pd.DataFrame) -> pd.DataFrame:
        parts = []
        for split in SPLITS:
            for stat in ("mse", "angle"):
                col = f"analysis.{split}.{stat}"
                parts.append(runs[["method", "seed", "split_seed", col]].rename(columns={col: "value"})
                             .assign(split=split, stat=stat))
        return pd.concat(parts, ignore_index=True)

    def table(self, runs: pd.DataFrame) -> pd.DataFrame:
        """Table 2: squared distance and angle to the teacher's features, ours beside the paper's."""
        t2 = report.summarize(self._long_errors(runs), ["method", "split", "stat"], "value")
        t2["cell"] = [report.format_interval(m, lo, hi, 2 if s == "mse" else 1)
                      for m, lo, hi, s in zip(t2["mean"], t2["ci_low"], t2["ci_high"], t2["stat"])]
        ours = t2.pivot_table(index="method", columns=["split", "stat"], values="cell", aggfunc="first")
        ours = ours.reindex(index=list(TABLE2_METHODS), columns=pd.MultiIndex.from_product([SPLITS, ["mse", "angle"]]))
        ours.columns = pd.MultiIndex.from_tuples([(f"ours {s}", stat) for s, stat in ours.columns])
        for ds_name in self.table2_datasets:
            p = self.paper2[self.paper2["dataset"] == ds_name].set_index("method")
            for stat, digits in (("mse", 2), ("angle_deg", 1)):
                ours[(f"paper {ds_name}", stat.replace("_deg", ""))] = [
                    f"{p.loc[m, stat]:.{digits}f}" if m in p.index else "–" for m in ours.index]
        ours.index = [CHAPTER.label(m) for m in ours.index]
        return ours

    def figure(self, runs: pd.DataFrame):
        fig, ax = plt.subplots(figsize=(8, 3.8))
        long = self._long_errors(runs)
        frame = long[(long["stat"] == "mse") & long["method"].isin(TABLE2_METHODS)]
        frame = frame.assign(row=frame["method"].map(CHAPTER.label))
        report.plot_intervals(frame, x="row", y="value", hue="split", order=[CHAPTER.label(m) for m in TABLE2_METHODS],
                              ax=ax, ylabel="mean squared distance (normalised)",
                              title="Student-teacher feature error per split (dots: runs; bars: mean, 95% CI)")
        fig.tight_layout()
        return fig

    def _paper_values(self) -> dict[str, dict[str, float]]:
        """{method: {our column: the paper's value}} for Tables 2 and 14-16."""
        out: dict[str, dict[str, float]] = {}
        for _, metric, ks, table_name in SPECS:
            p = paper_table(table_name, dataset=self.analysis_dataset)
            for k in ks:
                for split, pcol in (("X_train", "x_train"), ("X_ood", "x_ood")):
                    col = f"analysis.{split}.{metric}" + ("" if k is None else f".{k}")
                    for method in ANALYSIS_METHODS:
                        hit = p[(p["student_training"].map(ANALYSIS_KEYS) == method) & ((p["k"] == k) if k else True)]
                        if not hit.empty:
                            out.setdefault(method, {})[col] = float(hit[pcol].iloc[0])
        p2 = self.paper2[self.paper2["dataset"].isin(self.table2_datasets)].groupby("method")[["mse"]].mean()
        for method, value in p2["mse"].items():
            out.setdefault(method, {})["analysis.X_ood.mse"] = float(value)
        return out

    def coherence(self, runs: pd.DataFrame) -> pd.DataFrame:
        """Tables 3, 4 and 14-16: M_rel, M_neigh, M_vlalign, ours beside the paper's."""
        paper = self._paper_values()
        rows = []
        for title, metric, ks, _ in SPECS:
            for k in ks:
                for method in ANALYSIS_METHODS:
                    row = {"metric": title, "k": "–" if k is None else k, "students": CHAPTER.label(method)}
                    for split in ("X_train", "X_ood"):
                        col = f"analysis.{split}.{metric}" + ("" if k is None else f".{k}")
                        values = runs.loc[runs["method"] == method, col].dropna() if col in runs else pd.Series(dtype=float)
                        if values.empty:
                            row[f"ours {split}"] = "–"
                        else:
                            iv = report.t_interval(values)
                            row[f"ours {split}"] = report.format_interval(iv.mean, iv.low, iv.high, 3)
                        value = paper.get(method, {}).get(col)
                        row[f"paper {split}"] = "–" if value is None else f"{value:.3f}"
                    rows.append(row)
        table = pd.DataFrame(rows).set_index(["metric", "k", "students"])
        table = table[["ours X_train", "paper X_train", "ours X_ood", "paper X_ood"]]
        table.columns = [c.replace("paper", f"paper ({self.analysis_dataset})") for c in table.columns]
        return table

    def coherence_figure(self, runs: pd.DataFrame):
        curves = []
        for title, metric, ks, _ in SPECS[1:]:
            for k in ks:
                for split in ("X_train", "X_ood"):
                    col = f"analysis.{split}.{metric}.{k}"
                    if col in runs:
                        part = runs[runs["method"].isin(ANALYSIS_METHODS)][["method", "seed", "split_seed", col]]
                        curves.append(part.rename(columns={col: "value"}).assign(metric=title, k=k, split=split))
        curves = pd.concat(curves, ignore_index=True)
        curves["students"] = curves["method"].map(CHAPTER.label)
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        for ax, title in zip(axes, ["M_neigh", "M_vlalign"]):
            part = curves[(curves["metric"] == title) & (curves["split"] == "X_ood")]
            report.plot_lines(part, x="k", y="value", hue="students", ax=ax,
                              title=f"{title} on X_ood ({'higher' if title == 'M_neigh' else 'lower'} is better)",
                              ylabel=title)
            ax.set_xticks(sorted(part["k"].unique()))
        fig.tight_layout()
        return fig

    def effects(self, runs: pd.DataFrame) -> pd.DataFrame:
        paper = pd.DataFrame.from_dict(self._paper_values(), orient="index").rename_axis("method").reset_index()
        comparisons = [c for c in self.comparisons if c.metric in runs.columns]
        return report.compare(runs, comparisons, column="method", labels=dict(CHAPTER.labels),
                              metric_labels={c.metric: metric_label(c.metric) for c in comparisons},
                              paper=paper, paper_column="method", digits=3, unit="")

    def show_coherence(self, runs: pd.DataFrame) -> None:
        """Tables 3, 4 and 14-16 with their CSV, the coherence figure and the runs it shows."""
        coherence = self.coherence(runs)
        display(coherence, self.csv(coherence, "tables3_4_14_16"))
        self.coherence_figure(runs)
        plt.show()
        display(self.runs_csv(runs))

    def show_effects(self, runs: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
        return super().show_effects(runs, digits)
