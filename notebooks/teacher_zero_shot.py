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
# Every student in this book learns from one frozen teacher, and the student can only be as good at
# unseen classes as the teacher's text space allows. The CLIP {cite}`radford2021clip` rows of the
# paper's Table 1 {cite}`li2023distilling` give the teacher's own accuracy: each image is assigned to
# the class whose text embedding (`a photo of {name}`) is closest to the teacher's image embedding,
# on held-out images of the seen classes (X_id, among the seen classes) and on the unseen classes
# (X_ood, zero-shot, among the unseen classes only).
#
# In the offline profile the teacher is **not CLIP** but a ConSE {cite}`norouzi2014conse` *proxy
# teacher*: an EfficientNet-Lite {cite}`liu2020efficientnetlite` ImageNet classifier whose image
# embedding is the probability-weighted mean of MiniLM {cite}`wang2020minilm` sentence embeddings of
# its top ImageNet class names, and whose text embedding is MiniLM's. It shares CLIP's interface
# (images and texts in one space) at a much lower quality. We also score it with enriched class
# texts (`a photo of {name} . {description}`), which the paper's Table 1 teacher rows do not use.

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
descriptions = "main"  # description set for the enriched texts; None: plain names only

# %%
from vldlib.study.chapters import open_chapter

ch = open_chapter("teacher_zero_shot", globals(), page=True)  # every parameter checked, the theme set

# %% [markdown]
# ## Teacher features
#
# Image features come from the same on-disk cache the trainer uses, so the teacher encodes each
# image once for the whole book.

# %%
acc = ch.show_runs()

# %% [markdown]
# ## The teacher rows of Table 1
#
# Ours: mean per-class accuracy (%) with its 95% t-interval over the class splits (the teacher is
# deterministic, so class splits are the only replicates). Paper: CLIP ViT-L/14 and RN50 for the
# column in the header.

# %%
ch.show_table(acc)

# %% [markdown]
# ## Reading

# %%
effects = ch.effects(acc)
ch.show_reading(acc, effects)

# %% [markdown]
# ## The paper's headline claims, tested here
#
# Each claim this chapter declares (`CHAPTER.claims`), with our paired effect and the paper's
# difference; the book's front page lists these lines for every chapter.

# %%
ch.show_claims(effects)
