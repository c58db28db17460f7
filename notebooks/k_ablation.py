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
# L_vlprox (Eq. 6 of the paper {cite}`li2023distilling`) asks the student to reproduce the teacher's
# probabilities over its k most likely seen classes, KL(P_T,topk ‖ P_S,topk), and only on images the
# teacher itself classifies correctly (the filter I(x)). Table 9 of the paper varies these choices
# on top of its best model (full method with the main-prompt descriptions): k = 1 (a softmax over
# one class is 1, so the loss is identically zero: L_vlprox switched off), a smaller k, no filter,
# and the same filter applied inside L_im-cst as well. The paper finds the reference best and reads
# "k = 1" as evidence that L_vlprox helps zero-shot accuracy.
#
# Any k at least the number of seen classes is the full KL over all of them, so the meaningful
# range of k is set by the dataset (computed below).

# %% tags=["parameters"]
profile = "offline"  # offline | paper | smoke
results_dir = "results"  # run store (relative to the repository root)
cache_dir = None  # teacher-feature cache; None: $VLD_CACHE or the user cache dir
executor = "local"  # where missing runs train: "local" (this machine) or "ray" (one Ray task per run)
ray_address = None  # executor "ray": None starts a local Ray; or a cluster address ("auto", "ray://head:10001")
smoke = False  # True: tiny sizes (the smoke profile) to check that everything runs
dataset = None  # None: the profile's ("fashion-mnist" offline, "official" paper); "folder": your images
dataset_root = None  # data folder; required for "official" (e.g. ".../CaltechBirds") and "folder"
teacher = None  # None: the profile's ("conse" proxy offline, "openclip" ViT-L/14 paper)
student = None  # None: the profile's ("small" offline, "resnet18" paper)
epochs = None  # None: the profile's
per_class = None  # Fashion-MNIST images per class; None: the profile's
seeds = None  # training seeds; None: the profile's replicates
split_seeds = None  # class splits (which classes are seen); None: the profile's (official: its lists)
paper_dataset = None  # the paper's column to show beside ours; None: matching folder or "Average"
overrides = {}  # any other TrainConfig fields, e.g. {"teacher_options": {"pretrained": "/path/ckpt.pt"}, "num_workers": 0}
ks = None  # L_vlprox k values besides the reference; None: [1, 2, 3] on Fashion-MNIST, [1, 10] (the paper's) otherwise
descriptions = "main"  # description set for the enriched texts; None: plain names only
weights = None  # loss weights of the full method; None: L_cls + L_im-cst + L_vlprox + L_mse
analysis = True  # compute the feature analyses too (shares the runs with feature_errors)

# %%
from vldlib.study.chapters import open_chapter

ch = open_chapter("k_ablation", globals(), page=True)  # every parameter checked, the theme set

# %% [markdown]
# ## The runs

# %%
runs = ch.show_runs()

# %% [markdown]
# ## Table 9 beside the paper

# %%
ch.show_table(runs)

# %% [markdown]
# ## Effects against the reference
#
# Paired differences (same seed and class split); the paper's difference is the mean over the
# datasets shown above.

# %%
effects = ch.show_effects(runs)

# %% [markdown]
# ## Reading

# %%
ch.show_reading(runs, effects)

# %% [markdown]
# ## The paper's headline claims, tested here
#
# Each claim this chapter declares (`CHAPTER.claims`), with our paired effect and the paper's
# difference; the book's front page lists these lines for every chapter.

# %%
ch.show_claims(effects)
