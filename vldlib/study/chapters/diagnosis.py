"""Chapter "Diagnosis": how much of the teacher can a student learn here? (issue 22's question)

The offline world differs from the paper's in kind: the proxy teacher is weaker than a student
trained on labels, and L_mse alone collapses to the teacher's mean direction. This chapter
measures why, on the Table 1 students' own runs (the same configs as the main-results chapter) and
on L_mse alone trained longer (:func:`mse_budgets`; the book's epochs were chosen for the full
method, and plain regression may need more): the teacher against the L_cls student on seen classes; the cone of the
teacher's features, its between-class share and its zero-shot accuracy on its top-k principal
directions (per class split, :func:`vldlib.study.diagnosis.teacher_geometry`); the share of the
teacher's centred variance each student explains on held-out images (R²,
:func:`vldlib.study.diagnosis.student_geometry`); and the same teacher measurements for the default
and the chosen option of the proxy-teacher search (its recorded result, development splits).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from vldlib.runs import config_hash
from vldlib.study import report
from vldlib.study.chapters import ACCURACY, Chapter, ChapterRun, Claim, declared
from vldlib.study.chapters import main_results
from vldlib.study.derived import memoised
from vldlib.study.diagnosis import GEOMETRY_LABELS, GEOMETRY_VERSION, KS, student_geometry, teacher_geometry
from vldlib.study.grid import Grid
from vldlib.study.readings import Comparison as C
from vldlib.study.reference import paper_table
from vldlib.study.teacher_search import load_result

#: The Table 1 rows diagnosed (their runs are the main-results chapter's).
DIAGNOSED = ("cls", "mse", "imcst", "cls+imcst+vlprox(+mse)")
#: At most this many class splits are diagnosed (a student is loaded and run per run).
MAX_SPLITS = 8
STUDENT_COLUMNS = {"acc_id": "student X_id (%)", "teacher_acc_id": "teacher X_id (%)",
                   "r2_id": "R² X_id", "r2_ood": "R² X_ood", "r2_ood_mapped": "R² X_ood, mapped"}
TEACHER_COLUMNS = GEOMETRY_LABELS


def mse_budgets(grid: Grid, params) -> list[int]:
    """The longer budgets (epochs) L_mse alone also trains for (``mse_epochs``; None: 2x and 4x the
    profile's epochs, none under the paper profile, whose L_mse already trains the paper's budget)."""
    given = params.get("mse_epochs")
    if given is None:
        return [] if grid.profile == "paper" else [2 * int(grid.base["epochs"]), 4 * int(grid.base["epochs"])]
    return [int(n) for n in given]


def budget_key(epochs: int) -> str:
    """The variant of L_mse alone trained for ``epochs`` (else as the Table 1 row)."""
    return f"L_mse, {epochs} epochs"


def variants(grid: Grid, params) -> dict[str, dict]:
    """The diagnosed Table 1 rows, configured exactly as the main-results chapter's; then L_mse
    alone at the longer budgets of :func:`mse_budgets` (is the budget what keeps it at the mean?)."""
    rows = main_results.variants(grid, {"methods": list(DIAGNOSED)})
    out = {m: rows[m] for m in DIAGNOSED}
    for n in mse_budgets(grid, params):
        if n != int(grid.base["epochs"]):
            out[budget_key(n)] = {**rows["mse"], "epochs": n}
    return out


CHAPTER = Chapter(
    name="diagnosis",
    title="Diagnosis: how much of the teacher can a student learn here?",
    question="How much of the teacher can a student learn in this world, and why?",
    paper_tables=("table1",),
    column="method",
    variants=variants,
    metrics=ACCURACY,
    labels=main_results.TABLE1_LABELS,
    module=__name__,
    parameters=declared("mse_epochs"),
    csv="diagnosis",
    paper_keys={m: m for m in DIAGNOSED},
    paper_column="method_key",
    comparisons=(C("imcst", "mse", "acc_id"), C("imcst", "mse", "acc_ood_zeroshot")),
    effects_title="L_im-cst minus L_mse (ours) and the paper's difference ({paper_dataset})",
    claims=(Claim("imcst_beats_mse_zeroshot", "Table 1", "Imitating the teacher's visual space with L_im-cst "
                  "beats matching its features with plain L_mse on unseen classes",
                  C("imcst", "mse", "acc_ood_zeroshot")),),
)


class Run(ChapterRun):
    def setup(self) -> None:
        self.teacher_rows = pd.DataFrame()

    def derive(self, runs: pd.DataFrame) -> pd.DataFrame:
        """The runs of the first :data:`MAX_SPLITS` class splits with each student's R² columns;
        the teacher's measurements per split go to ``teacher_rows`` (features cached)."""
        if runs.empty:
            return runs
        splits = list(dict.fromkeys(runs["split_seed"]))[:MAX_SPLITS]
        runs = runs[runs["split_seed"].isin(splits)].reset_index(drop=True)
        configs = {config_hash(cfg): cfg for _, cfg in self.grid.configs}
        cache = self.params.get("cache_dir")
        geometry = [memoised(self.store, configs[h], "student_geometry", GEOMETRY_VERSION,
                             lambda cfg=configs[h]: student_geometry(cfg, self.store.run_dir(cfg), cache_dir=cache))
                    for h in runs["hash"]]
        runs = pd.concat([runs, pd.DataFrame(geometry, index=runs.index)], axis=1)
        first = {cfg["dataset_options"].get("split_seed"): cfg for _, cfg in self.grid.configs}
        self.teacher_rows = pd.DataFrame([{"split_seed": s, "seed": 0, "world": "this book's teacher",
                                           **teacher_geometry(first[s], cache_dir=cache)} for s in splits])
        return runs

    def table(self, data: pd.DataFrame) -> pd.DataFrame:
        """Per student: its and the teacher's X_id accuracy and its R² (mean, 95% interval over splits),
        beside the paper's X_id of the same row and of its CLIP ViT-L/14 teacher."""
        present = [c for c in STUDENT_COLUMNS if c in data.columns and data[c].notna().any()]
        summary = report.summarize(data, "method", present)
        table = report.interval_table(summary, "method", labels={c: STUDENT_COLUMNS[c] for c in present},
                                      digits=2, order=self.variants_run(data))
        dataset = self.grid.paper_dataset
        paper = paper_table("table1", dataset=dataset).set_index("method_key")["id_acc"]
        table[f"paper student X_id (%, {dataset})"] = [f"{paper[m]:.1f}" if m in paper.index else "–"
                                                      for m in table.index]
        table[f"paper teacher X_id (%, {dataset})"] = f"{paper['teacher_clip_vit_l14']:.1f}"
        return table.rename(index=self.chapter.label)

    def teacher_table(self) -> pd.DataFrame:
        """The teacher's measurements (mean, 95% interval over the diagnosed splits), beside the
        proxy-teacher search's baseline (the teacher before it) and its winner (the profile's teacher since; the
        recorded means over the development splits)."""
        present = [c for c in TEACHER_COLUMNS if c in self.teacher_rows.columns]
        summary = report.summarize(self.teacher_rows, "world", present)
        ours = report.interval_table(summary, "world", labels={c: TEACHER_COLUMNS[c] for c in present}, digits=2)
        search = load_result()
        rows = {entry["candidate"]: entry for entry in search["table"]}
        picked = {f"search, teacher before it ({search['default']})": rows.get(search["default"], {}),
                  f"search, chosen: the book's teacher ({search['winner']})": rows.get(search["winner"], {})}
        other = pd.DataFrame({name: {TEACHER_COLUMNS[c]: (f"{entry[c]:.2f}" if c in entry else "–") for c in present}
                              for name, entry in picked.items()}).T
        return pd.concat([ours, other])

    def figure(self, data: pd.DataFrame):
        """The teacher's zero-shot X_ood accuracy on its top-k principal directions, per split."""
        if self.teacher_rows.empty:
            return None
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for _, row in self.teacher_rows.iterrows():
            ax.plot(list(KS) + [max(KS) * 2], [row[f"acc_ood_top{k}"] for k in KS] + [row["acc_ood_zeroshot"]],
                    marker="o", alpha=0.6, label=f"split {row['split_seed']}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(KS) + [max(KS) * 2], [str(k) for k in KS] + ["all"])
        ax.set_xlabel("principal directions of X_train kept")
        ax.set_ylabel("teacher X_ood zero-shot (%)")
        if "n_unseen" in data.columns and data["n_unseen"].notna().any():
            n = int(data["n_unseen"].dropna().iloc[0])
            ax.axhline(100.0 / n, color="grey", linestyle=":", label=f"chance ({n}-way)")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        return fig

    def show_teacher(self) -> pd.DataFrame:
        """The teacher's measurements with their CSV."""
        table = self.teacher_table()
        display(table, self.csv(table, "teacher"))
        return table

    def reading(self, data: pd.DataFrame, effects: pd.DataFrame) -> str:
        """The diagnosis in numbers, computed from the tables."""
        if data.empty or self.teacher_rows.empty:
            return "No runs yet: nothing to diagnose."
        mean = data.groupby("method")[[c for c in STUDENT_COLUMNS if c in data.columns]].mean()
        mean = mean.reindex([m for m in self.variants_run(data) if m in mean.index])
        t = self.teacher_rows.mean(numeric_only=True)
        label = self.chapter.label
        parts = []
        if "cls" in mean.index:
            parts.append(f"On seen classes the teacher reaches {mean.loc['cls', 'teacher_acc_id']:.1f} % and the "
                         f"{label('cls')} student {mean.loc['cls', 'acc_id']:.1f} %: "
                         + ("the labels teach more than the teacher knows." if mean.loc['cls', 'acc_id']
                            > mean.loc['cls', 'teacher_acc_id'] else "the teacher knows more than the labels teach."))
        parts.append(f"The teacher's X_train features sit in a cone: mean pairwise cosine {t['mean_cos']:.2f}, "
                     f"norm of the mean normalised feature {t['mean_norm']:.2f}; {100 * t['between_share']:.0f} % of "
                     "their variance lies between classes.")
        if "r2_id" in mean.columns:
            r2 = "; ".join(f"{label(m)} {mean.loc[m, 'r2_id']:.2f}" for m in mean.index)
            parts.append(f"The share of the teacher's centred variance each student explains on held-out X_id "
                         f"images (R², same space; 1 is perfect, 0 is the teacher's mean): {r2}.")
        budgets = [(n, budget_key(n)) for n in mse_budgets(self.grid, self.params) if budget_key(n) in mean.index]
        if budgets and "mse" in mean.index:
            def at(key: str) -> str:
                r2 = f", R² {mean.loc[key, 'r2_id']:.2f}" if "r2_id" in mean.columns else ""
                return f"X_id {mean.loc[key, 'acc_id']:.1f} %{r2}"
            longer = "; ".join(f"{n} epochs: {at(key)}" for n, key in budgets)
            parts.append(f"Is it the budget that keeps L_mse at the mean? L_mse alone at the book's "
                         f"{int(self.grid.base['epochs'])} epochs: {at('mse')}; {longer} (same splits).")
        curve = ", ".join(f"top-{k} {t[f'acc_ood_top{k}']:.1f} %" for k in KS)
        parts.append(f"Kept to its top principal directions, the teacher's zero-shot X_ood accuracy is {curve}, "
                     f"against {t['acc_ood_zeroshot']:.1f} % with all of them.")
        effect_lines = super().reading(data, effects) if effects is not None and not effects.empty else ""
        return " ".join(parts) + (f"\n\n{effect_lines}" if effect_lines else "")
