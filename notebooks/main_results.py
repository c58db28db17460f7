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
# Table 1 of the paper {cite}`li2023distilling` asks which training losses turn a small vision-only
# student into a classifier for classes it never saw. Every student is scored the same way: its
# image embedding is compared with the teacher's text embedding of each class name, on held-out
# images of the seen classes (X_id), on the unseen classes without any of their images (zero-shot
# X_ood), and after fine-tuning on five images per unseen class (5-shot X_ood).
#
# The naive baseline L_cls only matches student images to the seen classes' texts. The paper adds
# L_mse (copy the teacher's image feature), L_im-cst (contrastive imitation of the teacher's image
# space, Eq. 3) and L_vlprox (match the teacher's vision-language proximities, Eq. 6) and reports
# that imitating the teacher's visual space and its vision-language alignment raises zero-shot and
# few-shot accuracy on unseen classes.
#
# The experimental unit is the **class split** (which classes are seen): effects vary far more
# between splits than between seeds. Every setting is trained on several test class splits (the
# three rows of the main comparisons on more of them); tables give the mean over splits with a 95%
# t-interval over splits, and effects are paired differences (same seed and class split) averaged
# within a split, with their interval over splits.

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
dataset_roots = None  # several data folders (official or image folders): a Table 1 column each and their Average
methods = None  # Table 1 rows to run (keys of vldlib.study.reference.TABLE1_METHODS); None: all
extra_methods = {}  # more rows: {"label": {"cls": 1.0, "vlprox": 1.0}} (loss weights by name)
analysis = True  # compute the feature analyses too (shares the runs with feature_errors)

# %%
from vldlib.study.chapters import open_chapter

ch = open_chapter("main_results", globals(), page=True)  # every parameter checked, the theme set

# %% [markdown]
# ## The runs
#
# Each row of Table 1 is a set of loss weights (declared in `vldlib.study.chapters.main_results`);
# the run store trains only the runs it has not seen (runs shared with another chapter are reused).

# %%
runs = ch.show_runs()

# %% [markdown]
# ## Table 1 beside the paper
#
# Ours: mean per-class accuracy (%) with its 95% t-interval over the runs. Paper: the published
# single-run value for the column named in the header (the paper's datasets and CLIP teacher, so
# compare directions and orderings, not levels).

# %%
ch.show_table(runs)

# %% [markdown]
# ## What changes what: paired effects
#
# Each effect is the mean difference between two settings run on the same seed and class split,
# with its 95% t-interval; the paper's difference is taken from the same column of Table 1. A
# verdict "not seen here" means our interval includes 0.

# %%
effects = ch.show_effects(runs)

# %% [markdown]
# ## How much of the teacher's zero-shot accuracy each student transfers
#
# Raw accuracy mixes the student with the teacher's own ability on each class split. Below: the
# teacher's zero-shot X_ood accuracy on the same images with the same class texts, the student's, and
# the share of the teacher's that the student reaches (mean over class splits, 95% interval).

# %%
ch.show_transfer(runs)

# %% [markdown]
# ## Which unseen classes gain
#
# Per unseen class, the paired difference in its zero-shot accuracy, over the class splits where that
# class is unseen (grey dots: one split each).

# %%
ch.show_per_class(runs)

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
