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
# # Do the descriptions help because of what they say?
#
# The paper {cite}`li2023distilling` enriches each class name with sentences written by a language
# model and finds that the student's zero-shot accuracy on unseen classes rises (Tables 5 and 7). It
# does not test whether the *content* of the sentences is what helps. Roth et al. (WaffleCLIP, ICCV
# 2023 {cite}`roth2023waffle`) found that for CLIP {cite}`radford2021clip`, random-word descriptors
# do about as well as LLM descriptions (classification by description {cite}`menon2023visual`),
# which points at averaging several prompts rather than at the knowledge in them.
#
# Here five class-text sets are compared on the same protocol, for the teacher (zero-shot) and
# for students trained with the full method: plain names; the real descriptions; the same
# descriptions shuffled across classes (every class gets another class's sentences); WaffleCLIP
# random descriptors (the same for every class); and CLIP's name-only template ensemble. Every
# enriched set is used as the mean feature over its strings.

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

ch = open_chapter("description_controls", globals(), page=True)  # every parameter checked, the theme set

# %% [markdown]
# ## The teacher and the runs

# %%
acc = ch.show_runs()

# %% [markdown]
# ## Accuracy per class-text set
#
# Mean per-class accuracy (%) with its 95% t-interval: the teacher over class splits, the students
# over runs. The paper has no such controls, so there is no paper column.

# %%
ch.show_table(acc)

# %% [markdown]
# ## Real descriptions against each control
#
# Paired differences: the teacher per class split, the students per seed and class split.

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
