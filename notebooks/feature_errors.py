# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Feature errors and coherence: what should the student copy from the teacher?
#
# The paper's first principle is that the student should imitate the teacher's *visual space*.
# Table 2 shows that this is not the same as copying each image feature: students trained with
# L_mse sit closest to the teacher's features (smallest squared distance and angle), yet students
# trained with the contrastive L_im-cst, which sit much further away, generalise better to unseen
# classes. Tables 3, 4 and 14 to 16 measure what L_im-cst preserves instead:
#
# - **M_rel** (Eq. 4, higher is better): how often a student feature's nearest teacher feature is
#   the teacher feature of the same image;
# - **M_neigh** (Eq. 5, higher is better): overlap of each image's k nearest neighbours in the
#   student and teacher spaces;
# - **M_vlalign** (Eq. 7, lower is better): how many pairs among the teacher's k closest class
#   texts the student puts in the reverse order.
#
# All come from the same runs as the main results (the trainer's `analysis=True`), evaluated with
# the student's eval transform against the cached teacher features, on X_train, X_id and X_ood.

# %% tags=["parameters"]
profile = "offline"  # offline | paper | smoke
results_dir = "results"  # run store (relative to the repository root)
cache_dir = None  # teacher-feature cache; None: $VLD_CACHE or the user cache dir
smoke = False  # True: tiny sizes (the smoke profile) to check that everything runs
dataset = None  # None: the profile's ("fashion-mnist" offline, "official" paper)
dataset_root = None  # data folder; required for "official"
teacher = None  # None: the profile's
student = None  # None: the profile's
epochs = None  # None: the profile's
per_class = None  # Fashion-MNIST images per class; None: the profile's
seeds = None  # training seeds; None: the profile's replicates
split_seeds = None  # Fashion-MNIST class splits; None: the profile's
paper_dataset = None  # the paper's column; None: matching folder, else Flower102 (Tables 3-4) / both Table 2 datasets
overrides = {}  # any other TrainConfig fields, e.g. {"teacher_options": {"pretrained": "/path/ckpt.pt"}, "num_workers": 0}

# %%
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from vldlib.study import report
from vldlib.study.grid import make_grid, run_grid
from vldlib.study.reference import TABLE1_METHODS, paper_table
from vldlib.runs import RunStore

sns.set_theme(style="whitegrid", context="notebook")
pd.set_option("display.max_colwidth", 200)

# %% [markdown]
# ## The runs
#
# The students of Table 2 and of Tables 14 to 16 (the same settings as the main results, so the
# run store trains them once for both chapters).

# %%
METHODS = {
    "mse": "L_mse",
    "cls+mse": "L_cls + L_mse",
    "cls+imcst+mse": "L_cls + L_mse + L_im-cst",
    "cls+imcst": "L_cls + L_im-cst",
    "cls+imcst+vlprox(+mse)": "L_cls + L_mse + L_im-cst + L_vlprox",
}
grid = make_grid(profile, smoke=smoke, dataset=dataset, dataset_root=dataset_root, teacher=teacher,
                 student=student, epochs=epochs, per_class=per_class, seeds=seeds,
                 split_seeds=split_seeds, cache_dir=cache_dir, paper_dataset=paper_dataset, overrides=overrides)
grid.expand({m: {"weights": TABLE1_METHODS[m], "analysis": True} for m in METHODS}, column="method")
print(f"profile {grid.profile}: {grid.dataset}, teacher {grid.base['teacher']}, student "
      f"{grid.base['student']}; seeds {grid.seeds} x class splits {grid.split_seeds}; "
      f"{len(grid.configs)} runs")
store = RunStore(results_dir, cache_dir=cache_dir)
runs = run_grid(store, grid)
missing = [c for c in ("analysis.X_train.mse", "analysis.X_ood.m_rel") if c not in runs.columns]
if missing:
    raise RuntimeError(f"the runs carry no analysis columns {missing}; were they trained with analysis=True?")
if grid.base["teacher"] == "conse":
    display(Markdown("The teacher is the **ConSE proxy teacher** (not CLIP): its image features are "
                     "probability-weighted sentence embeddings of ImageNet class names."))

# %% [markdown]
# ## Table 2: distance and angle to the teacher's features
#
# Squared distance between the L2-normalised student and teacher features, averaged over images,
# and the angle arccos(1 − mse/2) in degrees. The paper does not say on which split it measured
# these; ours are given on all three.

# %%
SPLITS = ["X_train", "X_id", "X_ood"]
long = []
for split in SPLITS:
    for stat in ("mse", "angle"):
        col = f"analysis.{split}.{stat}"
        long.append(runs[["method", "seed", "split_seed", col]].rename(columns={col: "value"})
                    .assign(split=split, stat=stat))
long = pd.concat(long, ignore_index=True)
t2 = report.summarize(long, ["method", "split", "stat"], "value")
t2["cell"] = [report.format_interval(m, lo, hi, 2 if s == "mse" else 1)
              for m, lo, hi, s in zip(t2["mean"], t2["ci_low"], t2["ci_high"], t2["stat"])]
ours2 = t2.pivot_table(index="method", columns=["split", "stat"], values="cell", aggfunc="first")
ours2 = ours2.reindex(index=[m for m in METHODS if m != "cls+imcst+vlprox(+mse)"],
                      columns=pd.MultiIndex.from_product([SPLITS, ["mse", "angle"]]))
ours2.columns = pd.MultiIndex.from_tuples([(f"ours {s}", stat) for s, stat in ours2.columns])
paper2 = paper_table("table2", student="ResNet18")
table2_datasets = ([grid.paper_dataset] if grid.paper_dataset in set(paper2["dataset"])
                   else sorted(paper2["dataset"].unique()))
T2_KEYS = {"L_mse": "mse", "L_cls + L_mse": "cls+mse", "L_cls + L_mse + L_im-cst": "cls+imcst+mse",
           "L_cls + L_im-cst": "cls+imcst"}
paper2 = paper2.assign(method=paper2["student_training"].map(T2_KEYS))
for ds_name in table2_datasets:
    p = paper2[paper2["dataset"] == ds_name].set_index("method")
    for stat, digits in (("mse", 2), ("angle_deg", 1)):
        ours2[(f"paper {ds_name}", stat.replace("_deg", ""))] = [
            f"{p.loc[m, stat]:.{digits}f}" if m in p.index else "–" for m in ours2.index]
ours2.index = [METHODS[m] for m in ours2.index]
display(ours2)

# %%
fig, ax = plt.subplots(figsize=(8, 3.8))
plot_frame = long[(long["stat"] == "mse") & (long["method"] != "cls+imcst+vlprox(+mse)")]
plot_frame = plot_frame.assign(row=plot_frame["method"].map(METHODS))
report.plot_intervals(plot_frame, x="row", y="value", hue="split",
                      order=[METHODS[m] for m in METHODS if m != "cls+imcst+vlprox(+mse)"], ax=ax,
                      ylabel="mean squared distance (normalised)",
                      title="Student-teacher feature error per split (dots: runs; bars: mean, 95% CI)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Tables 3, 4 and 14 to 16: what the students preserve
#
# Rows are cumulative on L_cls + L_mse as in the paper. Ours: mean [95% CI] over the runs.
# Paper: the published values for the dataset in the header (the paper's main text shows Flower102).

# %%
ANALYSIS_METHODS = ["cls+mse", "cls+imcst+mse", "cls+imcst+vlprox(+mse)"]
PAPER_ROWS = {"L_cls+L_mse": "cls+mse", "L_cls+L_mse+L_im-cst": "cls+imcst+mse",
              "L_cls+L_mse+L_im-cst+L_vlprox": "cls+imcst+vlprox(+mse)"}
analysis_dataset = grid.paper_dataset if grid.paper_dataset != "Average" else "Flower102"
SPECS = [("M_rel", "m_rel", [None], "table14_mrel"), ("M_neigh", "m_neigh", [3, 5, 10], "table15_mneigh"),
         ("M_vlalign", "m_vlalign", [2, 3, 5], "table16_vlalign")]
paper_rows: dict[str, dict[str, float]] = {}
rows = []
for title, metric, ks, table_name in SPECS:
    p = paper_table(table_name, dataset=analysis_dataset)
    for k in ks:
        for method in ANALYSIS_METHODS:
            row = {"metric": title, "k": "–" if k is None else k, "students": METHODS[method]}
            for split, pcol in (("X_train", "x_train"), ("X_ood", "x_ood")):
                col = f"analysis.{split}.{metric}" + ("" if k is None else f".{k}")
                values = runs.loc[runs["method"] == method, col].dropna() if col in runs else pd.Series(dtype=float)
                if values.empty:
                    row[(f"ours {split}")] = "–"
                else:
                    iv = report.t_interval(values)
                    row[f"ours {split}"] = report.format_interval(iv.mean, iv.low, iv.high, 3)
                hit = p[(p["student_training"].map(PAPER_ROWS) == method) & ((p["k"] == k) if k else True)]
                row[f"paper {split}"] = f"{hit[pcol].iloc[0]:.3f}" if not hit.empty else "–"
                if not hit.empty:
                    paper_rows.setdefault(method, {})[col] = float(hit[pcol].iloc[0])
            rows.append(row)
coherence = pd.DataFrame(rows).set_index(["metric", "k", "students"])
coherence = coherence[["ours X_train", "paper X_train", "ours X_ood", "paper X_ood"]]
coherence.columns = [c.replace("paper", f"paper ({analysis_dataset})") for c in coherence.columns]
display(coherence)

# %%
curves = []
for title, metric, ks, _ in SPECS[1:]:
    for k in ks:
        for split in ("X_train", "X_ood"):
            col = f"analysis.{split}.{metric}.{k}"
            if col not in runs:
                continue
            part = runs[runs["method"].isin(ANALYSIS_METHODS)][["method", "seed", "split_seed", col]]
            curves.append(part.rename(columns={col: "value"}).assign(metric=title, k=k, split=split))
curves = pd.concat(curves, ignore_index=True)
curves["students"] = curves["method"].map(METHODS)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for ax, title in zip(axes, ["M_neigh", "M_vlalign"]):
    part = curves[(curves["metric"] == title) & (curves["split"] == "X_ood")]
    report.plot_lines(part, x="k", y="value", hue="students", ax=ax,
                      title=f"{title} on X_ood ({'higher' if title == 'M_neigh' else 'lower'} is better)",
                      ylabel=title)
    ax.set_xticks(sorted(part["k"].unique()))
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Reading
#
# Paired differences (same seed and class split) for the paper's claims, with the paper's own
# difference for the dataset named above.

# %%
p2 = paper2[paper2["dataset"].isin(table2_datasets)].groupby("method")[["mse"]].mean()
for method, value in p2["mse"].items():
    paper_rows.setdefault(method, {})["analysis.X_ood.mse"] = float(value)
paper_frame = pd.DataFrame.from_dict(paper_rows, orient="index").rename_axis("method").reset_index()
C = report.Comparison
comparisons = [
    C("cls+imcst", "mse", "analysis.X_ood.mse"),
    C("cls+imcst+mse", "cls+mse", "analysis.X_train.m_rel"),
    C("cls+imcst+mse", "cls+mse", "analysis.X_ood.m_rel"),
    C("cls+imcst+mse", "cls+mse", "analysis.X_train.m_neigh.10"),
    C("cls+imcst+mse", "cls+mse", "analysis.X_ood.m_neigh.10"),
    C("cls+imcst+mse", "cls+mse", "analysis.X_ood.m_vlalign.3"),
    C("cls+imcst+vlprox(+mse)", "cls+imcst+mse", "analysis.X_ood.m_vlalign.3"),
]
comparisons = [c for c in comparisons if c.metric in runs.columns]
NICE = {c.metric: c.metric.replace("analysis.", "").replace(".m_", " M_").replace(".mse", " mse")
        .replace("M_neigh.", "M_neigh k=").replace("M_vlalign.", "M_vlalign k=") for c in comparisons}
effects = report.compare(runs, comparisons, column="method", labels=METHODS, metric_labels=NICE,
                         paper=paper_frame, paper_column="method", digits=3, unit="")
display(report.effects_table(effects, digits=3))
display(Markdown("\n".join(f"- {r}" for r in effects["reading"])))
