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
# # What should the student copy: the teacher's centre crop or its own view?
#
# The paper {cite}`li2023distilling` embeds each training image once with the teacher, on the
# official centre-crop view, and trains the student on random crops and flips of the image. So
# L_mse and L_im-cst ask the student's feature of a small crop to match the teacher's feature of
# the whole centred image. Dataset reinforcement, as in MobileCLIP {cite}`vasu2024mobileclip`,
# does otherwise: it stores K augmented views of each image with the teacher's embedding of each.
# The student then imitates the teacher on the very view it sees.
#
# This chapter compares the two targets for L_mse alone, L_im-cst alone and the full method. The
# centre-crop rows are the main-results chapter's runs; the own-view rows change only the target.
# **The paper does not ask this question**, so this page has no paper numbers; the paper's own
# setting is the centre-crop target. The experimental unit is the class split: effects are paired
# differences (own view minus centre crop, same seed and split) with a 95% interval over splits.

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
teacher_views = 2  # stored augmented views per X_train image for the own-view rows (2: sized by the teacher's cost)

# %%
from vldlib.study.chapters import open_chapter

ch = open_chapter("teacher_view", globals(), page=True)  # every parameter checked, the theme set

# %% [markdown]
# ## The runs
#
# Three Table 1 rows, each with the centre-crop target (the main-results chapter's runs, reused from
# the run store) and with the own-view target (`teacher_views` = K stored views per image).

# %%
data = ch.show_runs()

# %% [markdown]
# ## The two targets side by side
#
# Mean per-class accuracy (%) with its 95% t-interval over class splits, for each method and target.

# %%
ch.show_table(data)

# %% [markdown]
# ## Own view minus centre crop: paired effects
#
# Per method and metric, the mean paired difference over class splits with its 95% interval, and the
# L_im-cst minus L_mse difference with the own-view target. There is no paper column: the paper
# trains with the centre-crop target only.

# %%
effects = ch.show_effects(data)

# %% [markdown]
# ## Reading

# %%
ch.show_reading(data, effects)

# %% [markdown]
# ## The paper's principle with the own-view target
#
# The paper's Table 1 finds L_im-cst above L_mse on unseen classes with the centre-crop target. The
# claim below tests the same ordering with the own-view target (the paper gives its direction only).

# %%
ch.show_claims(effects)
