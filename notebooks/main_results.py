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
# # Main results: which losses let the student recognise unseen classes?
#
# The paper's Table 1 asks which training losses turn a small vision-only student into a
# classifier for classes it never saw. Every student is scored the same way: its image embedding
# is compared with the teacher's text embedding of each class name, on held-out images of the seen
# classes (X_id), on the unseen classes without any of their images (zero-shot X_ood), and after
# fine-tuning on five images per unseen class (5-shot X_ood).
#
# The naive baseline L_cls only matches student images to the seen classes' texts. The paper adds
# L_mse (copy the teacher's image feature), L_im-cst (contrastive imitation of the teacher's image
# space, Eq. 3) and L_vlprox (match the teacher's vision-language proximities, Eq. 6) and reports
# that imitating the teacher's visual space and its vision-language alignment raises zero-shot and
# few-shot accuracy on unseen classes.
#
# Every setting below is trained with several seeds on several class splits; tables give the mean
# with a 95% t-interval, and effects are paired differences (same seed and class split).

# %% tags=["parameters"]
profile = "offline"  # offline | paper | smoke
results_dir = "results"  # run store (relative to the repository root)
cache_dir = None  # teacher-feature cache; None: $VLD_CACHE or the user cache dir
smoke = False  # True: tiny sizes (the smoke profile) to check that everything runs
dataset = None  # None: the profile's ("fashion-mnist" offline, "official" paper)
dataset_root = None  # data folder; required for "official" (e.g. ".../CaltechBirds")
teacher = None  # None: the profile's ("conse" proxy offline, "openclip" ViT-L/14 paper)
student = None  # None: the profile's ("small" offline, "resnet18" paper)
epochs = None  # None: the profile's
per_class = None  # Fashion-MNIST images per class; None: the profile's
seeds = None  # training seeds; None: the profile's replicates
split_seeds = None  # Fashion-MNIST class splits (which classes are seen); None: the profile's
methods = None  # Table 1 rows to run (keys of vldlib.reference.TABLE1_METHODS); None: all
extra_methods = {}  # more rows: {"label": {"cls": 1.0, "vlprox": 1.0}} (loss weights by name)
analysis = True  # compute the feature analyses too (shares the runs with feature_errors)
paper_dataset = None  # the paper's column to show beside ours; None: matching folder or "Average"
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
# Each row of Table 1 is a set of loss weights; the run store trains only the runs it has not
# seen (runs that coincide with another chapter's are shared).

# %%
grid = make_grid(profile, smoke=smoke, dataset=dataset, dataset_root=dataset_root, teacher=teacher,
                 student=student, epochs=epochs, per_class=per_class, seeds=seeds,
                 split_seeds=split_seeds, cache_dir=cache_dir, paper_dataset=paper_dataset, overrides=overrides)
if methods is None:
    methods = list(TABLE1_METHODS)
unknown = [m for m in methods if m not in TABLE1_METHODS]
if unknown:
    raise ValueError(f"unknown Table 1 method(s) {unknown}; valid: {list(TABLE1_METHODS)} "
                     "(or add your own with extra_methods={'label': {loss: weight}})")
if not isinstance(extra_methods, dict):
    raise ValueError("extra_methods must be a dict {label: {loss name: weight}}")
variants = {m: {"weights": TABLE1_METHODS[m], "analysis": bool(analysis)} for m in methods}
variants.update({name: {"weights": dict(w), "analysis": bool(analysis)} for name, w in extra_methods.items()})
grid.expand(variants, column="method")  # validates every config before anything trains
print(f"profile {grid.profile}: {grid.dataset}, teacher {grid.base['teacher']}, "
      f"student {grid.base['student']}, {grid.base['epochs']} epochs; "
      f"seeds {grid.seeds} x class splits {grid.split_seeds}; {len(grid.configs)} runs")

# %%
store = RunStore(results_dir, cache_dir=cache_dir)
runs = run_grid(store, grid)
if grid.base["teacher"] == "conse":
    display(Markdown("The teacher here is the **ConSE proxy teacher** (EfficientNet-Lite ImageNet "
                     "classifier + MiniLM sentence embeddings), not CLIP: the text space is the same "
                     "idea, its quality is far lower."))

# %% [markdown]
# ## Table 1 beside the paper
#
# Ours: mean per-class accuracy (%) with its 95% t-interval over the runs. Paper: the published
# single-run value for the column named in the header (the paper's datasets and CLIP teacher, so
# compare directions and orderings, not levels).

# %%
METRICS = {"acc_id": "id_acc", "acc_ood_zeroshot": "ood_zero_shot_acc", "acc_ood_5shot": "ood_5shot_acc"}
NAMES = {"acc_id": "X_id", "acc_ood_zeroshot": "X_ood zero-shot", "acc_ood_5shot": "X_ood 5-shot"}
metrics = [m for m in METRICS if m in runs.columns]
paper = paper_table("table1", dataset=grid.paper_dataset)
labels = dict(zip(paper["method_key"], paper["method"]))
summary = report.summarize(runs, "method", metrics)
table = report.beside_paper(summary, paper, key="method", paper_key="method_key",
                            metrics={m: METRICS[m] for m in metrics}, labels=labels,
                            order=list(variants))
table.columns = pd.MultiIndex.from_tuples(
    [(NAMES[m], "ours" if who == "ours" else f"paper ({grid.paper_dataset})") for m, who in table.columns])
display(table)

# %%
fig, axes = plt.subplots(len(metrics), 1, figsize=(9, 2.6 * len(metrics) + 1.6), sharex=True,
                         squeeze=False, layout="constrained")
short = {m: labels.get(m, m).replace(" (naive baseline)", "") for m in variants}
plot_frame = runs.assign(row=[short.get(m, m) for m in runs["method"]])
for ax, metric in zip(axes[:, 0], metrics):
    report.plot_intervals(plot_frame, x="row", y=metric, order=[short[m] for m in variants], ax=ax,
                          ylabel="accuracy (%)", title=NAMES[metric])
axes[-1, 0].tick_params(axis="x", labelrotation=30)
for lab in axes[-1, 0].get_xticklabels():
    lab.set_horizontalalignment("right")
fig.suptitle("Each dot is one run (seed x class split); black: mean with its 95% t-interval")
plt.show()

# %% [markdown]
# ## What changes what: paired effects
#
# Each effect is the mean difference between two settings run on the same seed and class split,
# with its 95% t-interval; the paper's difference is taken from the same column of Table 1. A
# verdict "not seen here" means our interval includes 0.

# %%
C = report.Comparison
comparisons = [
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
]
comparisons = [c for c in comparisons if c.metric in metrics]
paper_cols = paper.rename(columns={v: k for k, v in METRICS.items()})
effects = report.compare(runs, comparisons, column="method", labels=labels,
                         metric_labels={m: f"{n} accuracy" for m, n in NAMES.items()},
                         paper=paper_cols, paper_column="method_key")
display(report.effects_table(effects))

# %%
if not effects.empty:
    report.plot_effects(effects, title=f"Paired effects (ours) and the paper's differences ({grid.paper_dataset})")
    plt.show()

# %% [markdown]
# ## Reading

# %%
lines = [f"- {r}" for r in effects["reading"]]
best = summary[summary["metric"] == "acc_ood_zeroshot"].sort_values("mean", ascending=False)
if not best.empty:
    top = best.iloc[0]
    lines.insert(0, f"- The highest zero-shot X_ood accuracy here comes from "
                    f"**{labels.get(top['method'], top['method'])}** "
                    f"({report.format_interval(top['mean'], top['ci_low'], top['ci_high'])} %, "
                    f"{int(top['n'])} runs).")
with_paper = effects[effects["paper"].notna()]
seen = with_paper[with_paper["verdict"] == "as in the paper"]
missing = with_paper[with_paper["verdict"].isin(["not seen here", "reversed"])]
lines.append(f"- Of {len(with_paper)} comparisons with a paper value, {len(seen)} show the paper's "
             f"direction with an interval that excludes 0, and {len(missing)} do not"
             + (f": {'; '.join(missing['comparison'] + ' on ' + missing['metric'])}." if len(missing) else "."))
display(Markdown("\n".join(lines)))
