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
# # Continual adaptation: does learning half of the new classes cost the rest?
#
# Table 11 of the paper {cite}`li2023distilling` splits the unseen classes of Flower102 in half,
# fine-tunes the student on five images per class of the first half only, and scores both halves
# before and after. X_ood1 jumps (25% to 63%) while X_ood2 stays where it was (18%): fine-tuning on
# some new classes neither helps nor harms the others.
#
# Here the student of the full method is fine-tuned on the first half of Y_ood (in label order),
# with the texts of Y_id and Y_ood1 only. X_ood1 (its images less the support set) is scored among
# Y_ood1, X_ood2 among Y_ood2 and X_id among Y_id, before and after.

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

# %%
from vldlib.study.chapters import open_chapter

ch = open_chapter("continual", globals(), page=True)  # every parameter checked, the theme set

# %% [markdown]
# ## The runs

# %%
acc = ch.show_runs()

# %% [markdown]
# ## Table 11 beside the paper

# %%
ch.show_table(acc)

# %% [markdown]
# ## What fine-tuning on X_ood1 changes
#
# After minus before, paired within each run.

# %%
effects = ch.show_effects(acc)

# %% [markdown]
# ## The paper's claims, tested here

# %%
ch.show_claims(effects)

# %% [markdown]
# ## Reading

# %%
ch.show_reading(acc, effects)
