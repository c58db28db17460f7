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
# # A ViT student: does the recipe carry over to a vision transformer?
#
# The students of the paper {cite}`li2023distilling` are ResNet18s; its Table 8 repeats the main
# comparison with a ViT-B/32 trained from scratch, with the ViT recipe of §5.3 (AdamW, weight decay
# 0.01, a OneCycle schedule with peak learning rate 2e-4, few-shot peak 1e-4). The paper finds the
# same ordering as for the CNN (L_im-cst and L_vlprox raise zero-shot and 5-shot accuracy on unseen
# classes) at much lower accuracy, and a training accuracy above 90%: the ViT overfits the seen
# classes.
#
# Here both students are trained on the same losses, seeds and class splits. In the paper profile
# the ViT is torchvision's `vit_b_32`; offline it is `vit_tiny`, the same architecture sized for
# 28 px images (patch 4, 4 layers, width 64). The offline run has ~90 optimiser steps instead of
# ~10k, so its AdamW peaks are raised (`vit_lr`, `vit_fewshot_lr` below; optimiser, weight decay
# and schedule stay the paper's; the measurement behind the choice is recorded with
# `OFFLINE_VIT_LR` in `vldlib.study.chapters.vit_student`).

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
vit_model = None  # the ViT student; None: vit_b_32 on photos (the paper's), vit_tiny on 28 px Fashion-MNIST
vit_lr = None  # the ViT's peak lr; None: the paper's 2e-4 (paper profile), 2e-3 offline
vit_fewshot_lr = None  # the ViT's few-shot peak lr; None: the paper's 1e-4 (paper profile), 1e-3 offline

# %%
from vldlib.study.chapters import open_chapter

ch = open_chapter("vit_student", globals(), page=True)  # every parameter checked, the theme set

# %% [markdown]
# ## The runs

# %%
runs = ch.show_runs()

# %% [markdown]
# ## Table 8 beside the paper
#
# Ours: mean per-class accuracy (%) with its 95% t-interval over the runs, both students. Paper:
# Table 8's ViT-B/32 rows (its full row also uses the descriptions, ours does not).

# %%
ch.show_table(runs)

# %% [markdown]
# ## Paired effects
#
# Same seed and class split; the paper's differences are Table 8's, averaged over the datasets shown.

# %%
effects = ch.show_effects(runs)

# %% [markdown]
# ## The paper's claims, tested here

# %%
ch.show_claims(effects)

# %% [markdown]
# ## Reading

# %%
ch.show_reading(runs, effects)
