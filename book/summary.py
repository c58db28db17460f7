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
# This page reads every finished run in the run store and sets our results, experiment by
# experiment, beside the values the paper publishes. Nothing here trains: the experiment chapters
# did that. Every number is computed when the book is built; the paper's numbers come from the
# project's transcription of its tables (`vldlib.study.reference`) and are always labelled as the
# paper's.
#
# How to read it: ours is the mean over runs (seeds x class splits) with a 95% t-interval; the
# paper's values are single runs on its own datasets with a CLIP ViT-L/14 teacher. Under the
# offline profile the teacher is a ConSE *proxy* and the data Fashion-MNIST, so compare the
# direction of each effect, not its size. The code behind each table is folded ("Show code cell
# source"); the notebook is `book/summary.py`.

# %% tags=["parameters"]
profile = "offline"  # offline | paper | smoke: which runs of the store to summarise
results_dir = "results"  # run store (relative to the repository root)
smoke = False  # True: summarise the smoke-sized runs of the offline profile
dataset_root = None  # paper profile: the dataset folder whose runs to summarise (None: all)
paper_dataset = None  # the paper's column to show beside ours; None: matching folder or "Average"

# %% tags=["hide-input"]
from vldlib.study.parameters import check_parameters

globals().update(check_parameters(globals()))  # every parameter against its declared type, before anything runs
import math

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from vldlib.study import report
from vldlib.study.grid import make_grid
from vldlib.study.reference import TABLE1_METHODS, method_key_for_weights, paper_table
from vldlib.runs import RunStore
from vldlib.core.losses import PAPER_LOSS_NAMES
from vldlib.study.chapters import ACCURACY, ACCURACY_NAMES

sns.set_theme(style="whitegrid", context="notebook")
pd.set_option("display.max_colwidth", 120)

ACC, ACC_NAMES = ACCURACY, ACCURACY_NAMES  # declared once, in vldlib.study.chapters
SCALE = ["dataset", "teacher", "student", "epochs", "dataset_options.per_class", "dataset_options.root"]
LOSSES = PAPER_LOSS_NAMES
#: The run store's column of a run's wall time (``record['timings']['total_s']``).
TOTAL_TIME = "time.total_s"


def say(text: str) -> None:
    display(Markdown(text))


def replicates(frame: pd.DataFrame, by: str, metrics) -> pd.DataFrame:
    """One row per (setting, seed, class split): runs that differ only in bookkeeping (e.g. whether
    the analyses were computed) train the same student, so they count as one replicate."""
    keys = [by, "seed", "split_seed"]
    return frame.groupby(keys, dropna=False, sort=False)[list(metrics)].mean().reset_index()


def label_columns(table: pd.DataFrame, paper_name: str) -> pd.DataFrame:
    """Rename the (metric, ours/paper) header of ``report.beside_paper`` for display."""
    table = table.copy()
    table.columns = pd.MultiIndex.from_tuples(
        [(ACC_NAMES.get(m, m), "ours" if who == "ours" else f"paper ({paper_name})") for m, who in table.columns])
    return table


# %% [markdown]
# ## The run store

# %% tags=["hide-input"]
grid = make_grid(profile, smoke=smoke, dataset_root=dataset_root, paper_dataset=paper_dataset)
base = grid.base
store = RunStore(results_dir)
frame = store.to_frame()
say(f"Run store `{store.root}`: **{len(frame)}** finished run(s) in total; this page summarises the "
    f"profile **{grid.profile}** ({base['dataset']} data, `{base['teacher']}` teacher, "
    f"`{base['student']}` student).")

# %% tags=["hide-input"]
if frame.empty:
    runs = frame
else:
    frame = frame.rename(columns={"dataset_options.split_seed": "split_seed"})
    if "split_seed" not in frame.columns:
        frame["split_seed"] = None
    for column in SCALE:
        if column not in frame.columns:
            frame[column] = None
    mine = frame[(frame["dataset"] == base["dataset"]) & (frame["teacher"] == base["teacher"])
                 & (frame["student"] == base["student"])].copy()
    if dataset_root is not None:
        mine = mine[mine["dataset_options.root"] == base["dataset_options"]["root"]]
    scale_cols = [c for c in SCALE if mine[c].notna().any()]
    mine["scale"] = mine[scale_cols].astype(str).agg(" / ".join, axis=1) if not mine.empty else []
    if mine.empty:
        runs = mine
    else:
        scales = (mine.groupby("scale", sort=False)
                  .agg(runs=("hash", "size"), seeds=("seed", "nunique"), class_splits=("split_seed", "nunique"))
                  .sort_values("runs", ascending=False))
        scales.index.name = " / ".join(scale_cols)
        display(scales)
        chosen = scales.index[0]
        runs = mine[mine["scale"] == chosen].copy()
        if len(scales) > 1:
            say(f"Several run sizes are in the store; the tables below use the most frequent one "
                f"(`{chosen}`, {len(runs)} runs).")
if runs.empty:
    say("**No finished runs of this profile in the run store yet**: execute the experiment chapters "
        "first (`python -m vldlib.book` does it), then this page fills in.")

# %% tags=["hide-input"]
if not runs.empty:
    for name in LOSSES:
        column = f"weights.{name}"
        runs[column] = runs[column].fillna(0.0) if column in runs.columns else 0.0
    runs["method"] = [method_key_for_weights({n: row[f"weights.{n}"] for n in LOSSES}) or
                      "+".join(n for n in LOSSES if row[f"weights.{n}"] > 0)
                      for _, row in runs.iterrows()]
    for column, default in (("k", base["k"]), ("filter", base["filter"]), ("im_cst_filter", False),
                            ("descriptions", None)):
        if column not in runs.columns:
            runs[column] = default
    runs["descriptions"] = runs["descriptions"].where(runs["descriptions"].notna(), "none")
    acc = [m for m in ACC if m in runs.columns]
    plain = runs[(runs["k"] == base["k"]) & (runs["filter"] == base["filter"])
                 & (~runs["im_cst_filter"].astype(bool)) & (runs["descriptions"] == "none")]
else:
    acc, plain = [], runs

# %% [markdown]
# ## Main results (Table 1)
#
# Each loss combination of the paper's Table 1, without language enrichment, with the default
# L_vlprox settings. The paper's column is the dataset named in the header (the six-dataset
# average when our data is not one of the paper's datasets).

# %% tags=["hide-input"]
table1 = plain[plain["method"].isin(list(TABLE1_METHODS))] if not plain.empty else plain
if table1.empty or not acc:
    say("No Table 1 runs in the store for this profile.")
else:
    paper1 = paper_table("table1", dataset=grid.paper_dataset)
    table1_r = replicates(table1, "method", acc)
    summary1 = report.summarize(table1_r, "method", acc)
    order = [m for m in TABLE1_METHODS if m in set(table1["method"])]
    display(label_columns(report.beside_paper(
        summary1, paper1, key="method", paper_key="method_key", metrics={m: ACC[m] for m in acc},
        labels=dict(zip(paper1["method_key"], paper1["method"])), order=order), grid.paper_dataset))
    long = table1_r.melt(id_vars=["method"], value_vars=acc, var_name="metric", value_name="accuracy")
    long["metric"] = long["metric"].map(ACC_NAMES)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(order) * len(acc) + 1.5))
    sns.pointplot(data=long, y="method", x="accuracy", hue="metric", order=order, errorbar=("ci", 95),
                  linestyle="none", dodge=0.4, ax=ax)
    ax.set_xlabel("mean per-class accuracy (%), ours; bars: 95% interval over runs")
    ax.set_ylabel("")
    ax.set_title(f"Table 1 losses, profile {grid.profile}")
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ### What the main results show
#
# Paired effects (same seed and class split) of the paper's full method and of imitating the
# teacher's visual space, against the naive L_cls baseline, with the paper's own difference for
# the same comparison.

# %% tags=["hide-input"]
def reading(frame, treatment, baseline, metric, paper):
    have = set(frame["method"])
    if treatment not in have or baseline not in have or metric not in frame.columns:
        return None
    try:
        effect = report.paired_effect(frame, metric, column="method", treatment=treatment, baseline=baseline)
    except ValueError as exc:
        return f"{treatment} vs {baseline}: {exc}"
    diff = report.paper_difference(paper, ACC[metric], column="method_key", treatment=treatment,
                                   baseline=baseline) if paper is not None else None
    return report.effect_sentence(effect, metric=f"{ACC_NAMES[metric]} accuracy", treatment=treatment,
                                  baseline=baseline, paper=diff)


sentences = []
if not table1.empty:
    paper1 = paper_table("table1", dataset=grid.paper_dataset)
    for treatment in ("cls+imcst+vlprox(+mse)", "cls+imcst", "cls+mse"):
        for metric in ("acc_ood_zeroshot", "acc_ood_5shot"):
            text = reading(replicates(table1, "method", acc), treatment, "cls", metric, paper1)
            if text:
                sentences.append(f"- {text}")
say("\n".join(sentences) if sentences else "Not enough paired runs for a reading.")

# %% [markdown]
# ## L_vlprox's k and the filters (Table 9)
#
# Runs of the full method (all four losses) that differ only in L_vlprox's k, its
# teacher-correctness filter, or filtering inside L_im-cst. Under the offline profile there are
# only five seen classes, so any k of at least five is the full distribution.

# %% tags=["hide-input"]
def table9_key(row) -> str:
    if bool(row["im_cst_filter"]):
        return "filter_in_imcst"
    if not bool(row["filter"]):
        return "no_filter_in_vlprox"
    if int(row["k"]) == 1:
        return "k1_vlprox"
    if int(row["k"]) == 10:
        return "k10_vlprox"
    if int(row["k"]) == int(base["k"]):
        return "reference_k256_filter_vlprox_nofilter_imcst"
    return f"k{int(row['k'])}_vlprox"


full = runs[(runs["method"] == "cls+imcst+vlprox(+mse)") & (runs["descriptions"] == "none")] if not runs.empty else runs
if full.empty or full[["k", "filter", "im_cst_filter"]].astype(str).drop_duplicates().shape[0] < 2:
    say("No k / filter ablation runs in the store for this profile.")
else:
    full = full.assign(variant=[table9_key(r) for _, r in full.iterrows()])
    paper9_all = paper_table("table9")
    d9 = grid.paper_dataset if grid.paper_dataset in set(paper9_all["dataset"]) else "Flower102"
    paper9 = paper_table("table9", dataset=d9)
    summary9 = report.summarize(replicates(full, "variant", acc), "variant", acc)
    display(label_columns(report.beside_paper(
        summary9, paper9, key="variant", paper_key="variant_key", metrics={m: ACC[m] for m in acc},
        labels={**dict(zip(paper9["variant_key"], paper9["variant"]))}), d9))

# %% [markdown]
# ## Prompt detail (Table 7)
#
# The same student trained and evaluated with plain class names and with class descriptions
# written under the paper's main prompt and its three variants.

# %% tags=["hide-input"]
DESC_KEYS = {"none": "none", "official": "main_prompt", "main": "main_prompt", "succinct": "more_succinct",
             "detailed": "more_detailed", "distinct": "more_distinct"}
enriched = runs[runs["descriptions"] != "none"] if not runs.empty else runs
if enriched.empty:
    say("No language-enrichment runs in the store for this profile.")
else:
    methods7 = set(enriched["method"])
    prompt = runs[runs["method"].isin(methods7) & (runs["k"] == base["k"]) & (runs["filter"] == base["filter"])]
    prompt = prompt.assign(descriptions_key=prompt["descriptions"].map(DESC_KEYS).fillna(prompt["descriptions"]))
    paper7_all = paper_table("table7")
    d7 = grid.paper_dataset if grid.paper_dataset in set(paper7_all["dataset"]) else "tiered-ImageNet"
    paper7 = paper_table("table7", dataset=d7)
    summary7 = report.summarize(replicates(prompt, "descriptions_key", acc), "descriptions_key", acc)
    order7 = [k for k in dict.fromkeys(DESC_KEYS.values()) if k in set(prompt["descriptions_key"])]
    display(label_columns(report.beside_paper(
        summary7, paper7, key="descriptions_key", metrics={m: ACC[m] for m in acc}, order=order7,
        labels=dict(zip(paper7["descriptions_key"], paper7["descriptions"]))), d7))

# %% [markdown]
# ## Feature analyses (Tables 2-4)
#
# The analysis metrics stored with the Table 1 runs: feature error between student and teacher
# (Table 2) and the structure metrics M_rel, M_neigh and M_vlalign, as mean with a 95% interval.
# The paper's Table 2 is shown below ours for reference.

# %% tags=["hide-input"]
analysis_cols = [c for c in runs.columns if c.startswith("analysis.") and pd.api.types.is_numeric_dtype(runs[c])] \
    if not runs.empty else []
with_analysis = table1.dropna(subset=analysis_cols, how="all") if analysis_cols and not table1.empty else table1
if not analysis_cols or with_analysis.empty:
    say("No feature analyses in the store for this profile.")
else:
    summary_a = report.summarize(replicates(with_analysis, "method", analysis_cols), "method", analysis_cols)
    wide = report.interval_table(summary_a, "method", digits=3,
                                 labels={c: c.removeprefix("analysis.") for c in analysis_cols})
    display(wide.T)
    display(paper_table("table2"))

# %% [markdown]
# ## Coverage
#
# How many runs stand behind each row above (a row with a single run has no interval).

# %% tags=["hide-input"]
if not runs.empty:
    coverage = (runs.groupby(["method", "descriptions", "k", "filter", "im_cst_filter"], dropna=False)
                .agg(runs=("hash", "size"), seeds=("seed", "nunique"), class_splits=("split_seed", "nunique"))
                .reset_index())
    display(coverage)
    if TOTAL_TIME in runs.columns:
        say(f"Total training time of these runs: {runs[TOTAL_TIME].sum() / 60:.1f} min.")
