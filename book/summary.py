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
# # Summary: our results beside the paper's
#
# This page gathers, chapter by chapter, what the run store holds: for each experiment chapter it
# rebuilds the chapter's own grid (the variants, seeds and class splits its declaration in
# `vldlib.study.chapters` asks for, with the parameters below), looks every run up in the store
# without training anything, and sets the chapter's headline claims, computed from those runs,
# beside the paper's. The chapters' own pages show every table and figure; the book's front page
# lists the same claims. The whole run store is one CSV below.
#
# How to read it: ours is a paired effect (same seed and class split) with a 95% t-interval; the
# paper's values are single runs on its own datasets with a CLIP ViT-L/14 teacher. Under the
# offline profile the teacher is a ConSE *proxy* and the data Fashion-MNIST, so compare the
# direction of each effect, not its size. The code behind each table is folded ("Show code cell
# source"); the notebook is `book/summary.py`.

# %% tags=["parameters"]
profile = "offline"  # offline | paper | smoke: which runs of the store to summarise
results_dir = "results"  # run store (relative to the repository root)
smoke = False  # True: summarise the smoke-sized runs of the offline profile
dataset_root = None  # paper profile: the dataset folder whose runs to summarise
paper_dataset = None  # the paper's column to show beside ours; None: matching folder or "Average"
epochs = None  # as passed to the chapters (None: the profile's)
per_class = None  # as passed to the chapters (None: the profile's)
seeds = None  # as passed to the chapters (None: the profile's replicates)
split_seeds = None  # as passed to the chapters (None: the profile's)

# %% tags=["hide-input"]
from vldlib.study.parameters import check_parameters

globals().update(check_parameters(globals()))  # every parameter against its declared type, before anything runs
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
import pandas as pd
from IPython.display import Markdown, display

from vldlib.runs import RunStore
from vldlib.study import report
from vldlib.study.chapters import from_store, glue
from vldlib.study.downloads import save_csv

pd.set_option("display.max_colwidth", 200)
#: The run store's column of a run's wall time (``record['timings']['total_s']``).
TOTAL_TIME = "time.total_s"

# %% [markdown]
# ## The run store

# %%
store = RunStore(results_dir)
everything = store.to_frame()
glue("runs.total", len(everything))
display(Markdown(f"Run store `{store.root}`: **{len(everything)}** finished run(s) of every profile."),
        save_csv(everything, "summary", "runs", results_dir, text="All of them, one row per run:", index=False))

# %% [markdown]
# ## What each chapter asks of the store
#
# Each chapter's grid under this page's parameters: how many runs it needs and how many the
# store holds. A chapter whose runs are not all there is not summarised (execute it first).

# %%
found = from_store(globals())
display(found.coverage, save_csv(found.coverage, "summary", "coverage", results_dir, text="Download this table:"))

# %% [markdown]
# ## The paper's headline claims, from the store
#
# The claims each chapter declares, recomputed here from the stored runs (the front page shows
# the values the chapters glued when they ran; the two agree when nothing changed in between).

# %%
if not found.claims.empty:
    display(found.claims, save_csv(found.claims, "summary", "claims", results_dir, text="Download this table:"))
else:
    display(Markdown("**No chapter has all its runs in the store yet**: execute the chapters first."))

# %% [markdown]
# ## Every paired effect the chapters report

# %%
effects = found.effects
if not effects.empty:
    shown = report.effects_table(effects.assign(comparison=effects["chapter"] + ": " + effects["comparison"]))
    display(shown, save_csv(effects, "summary", "effects", results_dir, text="Download this table:", index=False))
    display(effects.groupby("verdict").size().rename("comparisons").to_frame())

# %% [markdown]
# ## Cost

# %%
used = found.runs.drop_duplicates("hash") if not found.runs.empty else found.runs
if TOTAL_TIME in used.columns:
    display(Markdown(f"The chapters summarised here use **{len(used)}** distinct runs, "
                     f"{used[TOTAL_TIME].sum() / 60:.1f} min of training in total."))

# %% [markdown]
# ## Students: size, cost and accuracy
#
# Every student the chapters trained with the full method (L_cls + L_mse + L_im-cst + L_vlprox) on
# plain class names, its accuracy beside its size and cost: trainable parameters, floating-point
# operations of one forward pass (`torch.utils.flop_counter`; a multiply-add counts 2) and the
# median CPU latency of a batch-1 forward pass on one thread, measured on this machine when the
# page is built (`vldlib.models.students.student_cost`).

# %%
from vldlib.core.losses import PAPER_LOSS_NAMES
from vldlib.models.students import load_student, student_cost
from vldlib.study.chapters import ACCURACY_NAMES

full = used[(used[[f"weights.{n}" for n in PAPER_LOSS_NAMES]].fillna(0) > 0).all(axis=1)
            & used.get("descriptions", pd.Series(None, index=used.index)).isna()
            & used.get("description_control", pd.Series(None, index=used.index)).isna()
            & ~used.get("fewshot.continual", pd.Series(False, index=used.index)).fillna(False).astype(bool)] \
    if not used.empty else used
if full.empty:
    display(Markdown("No full-method runs of the chapters in the store yet."))
else:
    records = {r["hash"]: r for r in store.records()}
    full = full.assign(student_key=[str((records[h]["config"]["student"], records[h]["config"]["student_options"]))
                                    for h in full["hash"]])
    metrics = [m for m in ACCURACY_NAMES if m in full.columns]
    summary = report.summarize(full, "student_key", metrics)
    rows = []
    for key, group in full.groupby("student_key", sort=False):
        cfg, rec = records[group["hash"].iloc[0]]["config"], records[group["hash"].iloc[0]]
        size = int(cfg["dataset_options"].get("crop_size", 224 if cfg["dataset"] == "official" else 28))
        channels = 1 if cfg["dataset"] == "fashion-mnist" else 3
        cost = student_cost(load_student(cfg["student"], rec["teacher"]["embed_dim"], channels,
                                         **cfg["student_options"]), (channels, size, size))
        row = {"student": f"{cfg['student']} {cfg['student_options'] or ''}".strip(), "runs": len(group),
               "parameters (M)": f"{cost['params'] / 1e6:.3f}", "MFLOPs": f"{cost['flops'] / 1e6:.2f}",
               "CPU latency (ms, batch 1)": f"{cost['latency_ms']:.2f}"}
        for _, s in summary[summary["student_key"] == key].iterrows():
            row[ACCURACY_NAMES[s["metric"]]] = report.format_interval(s["mean"], s["ci_low"], s["ci_high"])
        rows.append(row)
    students = pd.DataFrame(rows).set_index("student")
    display(students, save_csv(students, "summary", "students", results_dir, text="Download this table:"))
