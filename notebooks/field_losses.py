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
# # The paper's losses beside the field's
#
# The paper {cite}`li2023distilling` distils with three terms of its own on top of L_cls: L_mse
# (copy each image feature), L_im-cst (contrast each student feature against the batch's teacher
# features) and L_vlprox (match the teacher's distribution over the class texts). Knowledge
# distillation has many other ways to copy a teacher. This chapter puts four of them on the same
# protocol, each added to L_cls:
#
# - **FD** (CLIP-KD, Yang et al., CVPR 2024 {cite}`yang2024clipkd`): mean squared error of the
#   normalised features, averaged over dimensions (L_mse divided by the dimension), with CLIP-KD's
#   weight 2000;
# - **ICL** (CLIP-KD's interactive contrastive learning) in a vision-only form: the student's
#   image features against the teacher's class-text features of the batch, both directions,
#   other same-class entries masked out;
# - **CRD-style affinity** (CLIP-KD): KL divergence between the teacher's and the student's
#   in-batch image-image affinity distributions;
# - **RKD** (Park et al., CVPR 2019 {cite}`park2019rkd`): distance and angle relations of the batch,
#   weights 25 and 50.
#
# The exact definitions, and where a vision-only student forced a choice, are in the docstrings
# of `vldlib.core.losses`. The analysis metrics (M_rel, M_neigh, M_vlalign, see the chapter on
# feature errors) show what each loss preserves of the teacher's space.

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
losses = None  # rows; None: all eight (L_cls alone, + each of the paper's three, + each of the field's four)
analysis = True  # compute the feature analyses too (shares the runs with feature_errors)

# %%
from vldlib.study.chapters import open_chapter

ch = open_chapter("field_losses", globals(), page=True)  # every parameter checked, the theme set

# %% [markdown]
# ## The runs

# %%
runs = ch.show_runs()

# %% [markdown]
# ## Accuracy, beside Table 1 where the paper has the row
#
# The paper reports L_cls alone, L_cls + L_mse and L_cls + L_im-cst; it has no row for
# L_cls + L_vlprox alone nor for the field's losses ("–").

# %%
ch.show_table(runs)

# %% [markdown]
# ## What each loss preserves of the teacher's space (X_ood)

# %%
ch.show_analysis(runs)

# %% [markdown]
# ## Reading
#
# Paired differences (same seed and class split) against L_cls alone and against L_cls + L_im-cst.

# %%
effects = ch.show_effects(runs)
ch.show_reading(runs, effects)
ch.show_claims(effects)
