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
# # The k of L_vlprox and the teacher-correctness filter
#
# L_vlprox (paper Eq. 6) asks the student to reproduce the teacher's probabilities over its k most
# likely seen classes, KL(P_T,topk ‖ P_S,topk), and only on images the teacher itself classifies
# correctly (the filter I(x)). Table 9 of the paper varies these choices on top of its best model
# (full method with the main-prompt descriptions): k = 1 (a softmax over one class is 1, so the
# loss is identically zero: L_vlprox switched off), a smaller k, no filter, and the same filter
# applied inside L_im-cst as well. The paper finds the reference best and reads "k = 1" as
# evidence that L_vlprox helps zero-shot accuracy.
#
# Any k at least the number of seen classes is the full KL over all of them, so the meaningful
# range of k is set by the dataset (computed below).

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
ks = None  # L_vlprox k values besides the reference; None: [1, 2, 3] on Fashion-MNIST, [1, 10] (the paper's) otherwise
descriptions = "main"  # description set of the reference model (Table 9 builds on Table 5's); None: plain names
weights = None  # loss weights; None: L_cls + L_im-cst + L_vlprox + L_mse
analysis = True  # compute the feature analyses too (shares runs with the other chapters)
paper_dataset = None  # the paper's column; None: matching folder, else both Table 9 datasets
overrides = {}  # any other TrainConfig fields, e.g. {"teacher_options": {"pretrained": "/path/ckpt.pt"}, "num_workers": 0}

# %%
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from vldlib.study import report
from vldlib.data import load_dataset
from vldlib.study.grid import make_grid, run_grid
from vldlib.study.reference import TABLE1_METHODS, paper_table
from vldlib.runs import RunStore

sns.set_theme(style="whitegrid", context="notebook")
pd.set_option("display.max_colwidth", 200)

# %% [markdown]
# ## The runs

# %%
grid = make_grid(profile, smoke=smoke, dataset=dataset, dataset_root=dataset_root, teacher=teacher,
                 student=student, epochs=epochs, per_class=per_class, seeds=seeds,
                 split_seeds=split_seeds, cache_dir=cache_dir, paper_dataset=paper_dataset, overrides=overrides)
options = dict(grid.base["dataset_options"])
if grid.split_seeds[0] is not None:
    options["split_seed"] = grid.split_seeds[0]
n_seen = len(load_dataset(grid.base["dataset"], **options).seen_classes)
k_ref = int(grid.base["k"])
if ks is None:
    ks = [k for k in (1, 2, 3) if k < min(n_seen, k_ref)] if grid.dataset == "fashion-mnist" else [1, 10]
ks = [int(k) for k in ks]
if any(k < 1 for k in ks):
    raise ValueError(f"every k must be >= 1, got {ks}")
full = dict(weights) if weights is not None else TABLE1_METHODS["cls+imcst+vlprox(+mse)"]
if descriptions == "main" and grid.dataset == "official":
    descriptions = "official"  # the official datasets' main-prompt sentences (chatgpt.txt)
common = {"weights": full, "analysis": bool(analysis), "descriptions": descriptions}
variants = {"reference": {**common, "k": k_ref, "filter": True, "im_cst_filter": False}}
variants.update({f"k={k}": {**common, "k": k, "filter": True, "im_cst_filter": False}
                 for k in ks if min(k, n_seen) != min(k_ref, n_seen)})
variants["no filter in L_vlprox"] = {**common, "k": k_ref, "filter": False, "im_cst_filter": False}
variants["filter in L_im-cst"] = {**common, "k": k_ref, "filter": True, "im_cst_filter": True}
grid.expand(variants)
display(Markdown(
    f"With **{n_seen} seen classes**, every k ≥ {n_seen} is the full KL over them, so the reference "
    f"(k = {k_ref}) is k = {min(k_ref, n_seen)} and the values worth running are "
    f"k ∈ {{{', '.join(str(k) for k in sorted(set(ks + [min(k_ref, n_seen)])))}}}; "
    "k = 1 switches L_vlprox off (a softmax over one class)."))
print(f"profile {grid.profile}: {grid.dataset}, teacher {grid.base['teacher']}, student "
      f"{grid.base['student']}, descriptions {descriptions}; seeds {grid.seeds} x class splits "
      f"{grid.split_seeds}; {len(grid.configs)} runs")
store = RunStore(results_dir, cache_dir=cache_dir)
runs = run_grid(store, grid)
if grid.base["teacher"] == "conse":
    display(Markdown("The teacher is the **ConSE proxy teacher** (not CLIP)."))

# %% [markdown]
# ## Table 9 beside the paper

# %%
METRICS = {"acc_id": "id_acc", "acc_ood_zeroshot": "ood_zero_shot_acc", "acc_ood_5shot": "ood_5shot_acc"}
NAMES = {"acc_id": "X_id", "acc_ood_zeroshot": "X_ood zero-shot", "acc_ood_5shot": "X_ood 5-shot"}
PAPER_KEYS = {"reference": "reference_k256_filter_vlprox_nofilter_imcst", "k=1": "k1_vlprox",
              "k=10": "k10_vlprox", "no filter in L_vlprox": "no_filter_in_vlprox",
              "filter in L_im-cst": "filter_in_imcst"}
metrics = [m for m in METRICS if m in runs.columns]
paper_all = paper_table("table9")
paper_datasets = ([grid.paper_dataset] if grid.paper_dataset in set(paper_all["dataset"])
                  else sorted(paper_all["dataset"].unique()))
summary = report.summarize(runs, "variant", metrics)
ours = report.interval_table(summary, "variant", labels={m: NAMES[m] for m in metrics}, order=list(variants))
ours.columns = pd.MultiIndex.from_tuples([(c, "ours") for c in ours.columns])
parts = [ours]
for ds_name in paper_datasets:
    p = paper_all[paper_all["dataset"] == ds_name].set_index("variant_key")
    parts.append(pd.DataFrame({(NAMES[m], f"paper ({ds_name})"): [
        f"{p.loc[PAPER_KEYS[v], METRICS[m]]:.1f}" if PAPER_KEYS.get(v) in p.index else "–"
        for v in ours.index] for m in metrics}, index=ours.index))
table = pd.concat(parts, axis=1)
table = table[[c for m in metrics for c in table.columns if c[0] == NAMES[m]]]
table.index = [f"reference (k = {k_ref}, filter in L_vlprox)" if v == "reference" else v for v in table.index]
display(table)

# %%
curve = runs[runs["variant"].isin(["reference"] + [f"k={k}" for k in ks])].copy()
curve["k"] = [min(int(k), n_seen) for k in curve["k"]]
long = curve.melt(id_vars=["k", "seed", "split_seed"], value_vars=[m for m in metrics if m != "acc_id"],
                  var_name="metric", value_name="accuracy")
long["metric"] = long["metric"].map(NAMES)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
report.plot_lines(long, x="k", y="accuracy", hue="metric", ax=axes[0],
                  title=f"X_ood accuracy against k (k = {n_seen}: full KL)", ylabel="accuracy (%)")
axes[0].set_xticks(sorted(curve["k"].unique()))
report.plot_intervals(runs, x="variant", y="acc_ood_zeroshot", order=list(variants), ax=axes[1],
                      ylabel="X_ood zero-shot accuracy (%)", title="All variants (runs, mean, 95% CI)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Effects against the reference
#
# Paired differences (same seed and class split); the paper's difference is the mean over the
# datasets shown above.

# %%
paper_sel = paper_all[paper_all["dataset"].isin(paper_datasets)]
paper_mean = (paper_sel.groupby("variant_key")[list(METRICS.values())].mean().reset_index()
              .rename(columns={v: k for k, v in METRICS.items()}))
paper_mean["variant"] = paper_mean["variant_key"].map({v: k for k, v in PAPER_KEYS.items()})
C = report.Comparison
comparisons = [C(v, "reference", m) for v in variants if v != "reference"
               for m in metrics if m != "acc_id"]
effects = report.compare(runs, comparisons, column="variant",
                         metric_labels={m: f"{n} accuracy" for m, n in NAMES.items()},
                         paper=paper_mean, paper_column="variant")
display(report.effects_table(effects))
if not effects.empty:
    report.plot_effects(effects, title="Variants minus the reference")
    plt.show()

# %% [markdown]
# ## Reading

# %%
lines = [f"- {r}" for r in effects["reading"]]
if "k=1" in variants:
    off = effects[(effects["comparison"] == "k=1 vs reference")]
    helps = off[off["verdict"].isin(["lowers", "as in the paper"]) & (off["effect"] < 0)]
    lines.append(f"- Switching L_vlprox off (k = 1) lowers X_ood accuracy with an interval excluding 0 on "
                 f"{len(helps)} of {len(off)} X_ood measures here.")
display(Markdown("\n".join(lines)))
