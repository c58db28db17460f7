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
# # The teacher: how well does it recognise seen and unseen classes?
#
# Every student in this book learns from one frozen teacher, and the student can only be as good
# at unseen classes as the teacher's text space allows. The CLIP rows of the paper's Table 1 give
# the teacher's own accuracy: each image is assigned to the class whose text embedding
# (`a photo of {name}`) is closest to the teacher's image embedding, on held-out images of the seen
# classes (X_id, among the seen classes) and on the unseen classes (X_ood, zero-shot, among the
# unseen classes only).
#
# In the offline profile the teacher is **not CLIP** but a ConSE *proxy teacher*: an
# EfficientNet-Lite ImageNet classifier whose image embedding is the probability-weighted mean of
# MiniLM sentence embeddings of its top ImageNet class names, and whose text embedding is MiniLM's.
# It shares CLIP's interface (images and texts in one space) at a much lower quality. We also
# score it with enriched class texts (`a photo of {name} . {description}`), which the paper's
# Table 1 teacher rows do not use.

# %% tags=["parameters"]
profile = "offline"  # offline | paper | smoke
results_dir = "results"  # not used here (no training); kept for the book's common parameters
cache_dir = None  # teacher-feature cache; None: $VLD_CACHE or the user cache dir
smoke = False  # True: tiny sizes (the smoke profile) to check that everything runs
dataset = None  # None: the profile's ("fashion-mnist" offline, "official" paper)
dataset_root = None  # data folder; required for "official"
teacher = None  # None: the profile's ("conse" proxy offline, "openclip" ViT-L/14 paper)
per_class = None  # Fashion-MNIST images per class; None: the profile's
split_seeds = None  # Fashion-MNIST class splits; None: all ten offline (features are shared), the profile's in smoke
descriptions = "main"  # description set for the enriched texts; None: plain names only
paper_dataset = None  # the paper's column; None: matching folder or "Average"
overrides = {}  # any other TrainConfig fields, e.g. {"teacher_options": {"pretrained": "/path/ckpt.pt"}, "num_workers": 0}

# %%
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from IPython.display import Markdown, display

from vldlib.study import report
from vldlib.data import load_dataset
from vldlib.text.descriptions import class_text_features, load_descriptions
from vldlib.features import default_cache_dir, teacher_image_features
from vldlib.study.grid import make_grid
from vldlib.core.metrics import mean_per_class_accuracy, zero_shot_predict
from vldlib.study.reference import paper_table
from vldlib.features import CachedTextTeacher, LazyTeacher

sns.set_theme(style="whitegrid", context="notebook")
pd.set_option("display.max_colwidth", 200)

# %% [markdown]
# ## Teacher features
#
# Image features come from the same on-disk cache the trainer uses, so the teacher encodes each
# image once for the whole book.

# %%
grid = make_grid(profile, smoke=smoke, dataset=dataset, dataset_root=dataset_root, teacher=teacher,
                 per_class=per_class, split_seeds=split_seeds, cache_dir=cache_dir,
                 paper_dataset=paper_dataset, overrides=overrides)
if split_seeds is None and grid.dataset == "fashion-mnist":
    # every class split draws on the same cached image pool, so more splits cost no teacher passes
    grid.split_seeds = list(range(3 if grid.profile == "smoke" else 10))
cfg = grid.base
if descriptions is not None and descriptions not in ("main", "succinct", "detailed", "distinct", "official"):
    raise ValueError(f"unknown descriptions {descriptions!r}; valid: 'main', 'succinct', 'detailed', "
                     "'distinct', 'official' (official datasets' chatgpt.txt) or None")
cache = Path(cache_dir) if cache_dir else default_cache_dir()
teacher_model = LazyTeacher(cfg["teacher"], cfg["teacher_options"], cache / "teacher-meta")
text_encoder = CachedTextTeacher(teacher_model, cache)
print(f"profile {grid.profile}: {grid.dataset}, teacher {teacher_model.identifier}; "
      f"class splits {grid.split_seeds}")
if cfg["teacher"] == "conse":
    display(Markdown(f"The teacher is the **ConSE proxy teacher** `{teacher_model.identifier}`, "
                     "not CLIP."))


def descriptions_for(ds, variant):
    """The description set the trainer would use for this dataset and variant."""
    if variant is None:
        return None
    if grid.dataset == "fashion-mnist":
        return load_descriptions("fashion-mnist", "main" if variant == "official" else variant)
    if variant in ("official", "main") and ds.descriptions:
        return ds.descriptions
    key = cfg["dataset_options"].get("name") or Path(cfg["dataset_options"]["root"]).name
    return load_descriptions(key, variant, cache_dir=cache_dir)


TEXT_SETS = {"plain": ("plain names", None, "first")}
if descriptions is not None:
    TEXT_SETS["enriched"] = (f"enriched ({descriptions}), first sentence", descriptions, "first")
    TEXT_SETS["enriched-avg"] = (f"enriched ({descriptions}), mean over sentences", descriptions, "average")

rows = []
for split in grid.split_seeds:
    options = dict(cfg["dataset_options"])
    root = options.pop("root", None)
    if split is not None:
        options["split_seed"] = split
    ds = load_dataset(cfg["dataset"], root=root, **options)
    feats = {name: teacher_image_features(teacher_model, getattr(ds, name), dataset_id=ds.name,
                                          cache_dir=cache, progress=False)
             for name in ("id", "ood")}
    for key, (label, variant, mode) in TEXT_SETS.items():
        desc = descriptions_for(ds, variant)
        kw = dict(mode=mode, template=cfg["template"], enriched_template=cfg["enriched_template"])
        texts = {"id": class_text_features(text_encoder, ds.seen_classes, desc, **kw),
                 "ood": class_text_features(text_encoder, ds.unseen_classes, desc, **kw)}
        row = {"texts": key, "split_seed": split, "seed": 0,
               "n_seen": len(ds.seen_classes), "n_unseen": len(ds.unseen_classes)}
        for name, metric in (("id", "acc_id"), ("ood", "acc_ood_zeroshot")):
            labels = torch.as_tensor(getattr(ds, name).labels)
            pred = zero_shot_predict(feats[name], texts[name])
            row[metric] = 100.0 * mean_per_class_accuracy(pred, labels)
        rows.append(row)
acc = pd.DataFrame(rows)
print(f"teacher forward passes in this notebook: {teacher_model.forward_passes()}")

# %% [markdown]
# ## The teacher rows of Table 1
#
# Ours: mean per-class accuracy (%) with its 95% t-interval over the class splits (the teacher is
# deterministic, so class splits are the only replicates). Paper: CLIP ViT-L/14 and RN50 for the
# column in the header.

# %%
NAMES = {"acc_id": "X_id", "acc_ood_zeroshot": "X_ood zero-shot"}
summary = report.summarize(acc, "texts", list(NAMES))
ours = report.interval_table(summary, "texts", labels=NAMES, order=list(TEXT_SETS))
teacher_name = "ConSE proxy" if cfg["teacher"] == "conse" else teacher_model.identifier
ours.index = [f"{teacher_name}: {TEXT_SETS[k][0]}" for k in ours.index]
paper = paper_table("table1", dataset=grid.paper_dataset,
                    method_key=["teacher_clip_vit_l14", "teacher_clip_rn50"])
paper_rows = pd.DataFrame({"X_id": [f"{v:.1f}" for v in paper["id_acc"]],
                           "X_ood zero-shot": [f"{v:.1f}" for v in paper["ood_zero_shot_acc"]]},
                          index=[f"paper ({grid.paper_dataset}): {m}" for m in paper["method"]])
chance = pd.DataFrame({"X_id": [f"{100 / acc['n_seen'].iloc[0]:.1f}"],
                       "X_ood zero-shot": [f"{100 / acc['n_unseen'].iloc[0]:.1f}"]},
                      index=["chance (1 / number of classes)"])
display(pd.concat([ours, paper_rows, chance]))

# %%
long = acc.melt(id_vars=["texts", "split_seed", "seed"], value_vars=list(NAMES),
                 var_name="split", value_name="accuracy")
long["split"] = long["split"].map(NAMES)
long["text set"] = long["texts"].map({k: v[0] for k, v in TEXT_SETS.items()})
fig, ax = plt.subplots(figsize=(7.5, 4))
report.plot_intervals(long, x="text set", y="accuracy", hue="split", ax=ax,
                      ylabel="mean per-class accuracy (%)",
                      title="Teacher zero-shot accuracy: dots are class splits; bars mean and 95% CI")
ax.axhline(100 / acc["n_unseen"].iloc[0], color="grey", ls=":", lw=1)
ax.tick_params(axis="x", labelrotation=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Reading

# %%
lines = []
plain = report.t_interval(acc.loc[acc["texts"] == "plain", "acc_ood_zeroshot"])
chance_ood = 100 / acc["n_unseen"].iloc[0]
clip_ood = paper.loc[paper["method_key"] == "teacher_clip_vit_l14", "ood_zero_shot_acc"]
verdict = ("above chance" if plain.excludes(chance_ood) and plain.mean > chance_ood else
           "not distinguishable from chance" if not plain.excludes(chance_ood) else "below chance")
lines.append(f"- With plain class names the {teacher_name} teacher reaches "
             f"{report.format_interval(plain.mean, plain.low, plain.high)} % zero-shot on X_ood "
             f"({plain.n} class splits), {verdict} ({chance_ood:.1f} %)"
             + (f"; the paper's CLIP ViT-L/14 reaches {clip_ood.iloc[0]:.1f} % on its "
                f"{grid.paper_dataset} column." if not clip_ood.empty else "."))
for key in [k for k in TEXT_SETS if k != "plain"]:
    for metric in NAMES:
        eff = report.paired_effect(acc, metric, column="texts", treatment=key, baseline="plain",
                                   units=["split_seed"])
        lines.append("- " + report.effect_sentence(
            eff, metric=f"the teacher's {NAMES[metric]} accuracy", treatment=TEXT_SETS[key][0].capitalize(),
            baseline="plain names"))
display(Markdown("\n".join(lines)))
