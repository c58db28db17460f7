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
# # Language enrichment: descriptions, captions or learned prompts?
#
# Table 5 of the paper {cite}`li2023distilling` asks which way of bringing more language into
# training helps the student recognise unseen classes, on top of the best Table 1 setting (L_cls +
# L_im-cst + L_vlprox + L_mse):
#
# - **semantic details**: each class name enriched with an LLM description
#   (`a photo of {name} . {description}`), as in classification by description
#   {cite}`menon2023visual` and CuPL {cite}`pratt2023cupl`;
# - **auxiliary captions** (L_cap, Eq. 8): each training image's caption, encoded by the teacher's
#   text encoder, as an extra in-batch target: logits cos(student_i, caption_j) *without* a
#   temperature (as the official code computes it), the other same-class captions masked out,
#   cross-entropy to the image's own caption;
# - **prompt learning** (CoOp {cite}`zhou2022coop`): 8 learned context vectors replace "a photo of",
#   trained with the student through the frozen teacher text encoder;
#
# and the paper's combinations. The paper finds that the descriptions help zero-shot accuracy on
# unseen classes while the learned prompt hurts it (it overfits to the seen classes).

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
enrichments = None  # Table 5 rows; None: all seven
n_ctx = 8  # CoOp context vectors (the paper: 8)
analysis = True  # compute the feature analyses too (shares the runs with feature_errors)

# %%
from vldlib.study.chapters import open_chapter

ch = open_chapter("language_enrichment", globals(), page=True)  # every parameter checked, the theme set

# %% [markdown]
# ## The runs
#
# Declared in `vldlib.study.chapters.language_enrichment`; the rows without enrichment and with
# descriptions are the same runs as in the main-results and prompt-detail chapters.

# %%
runs = ch.show_runs()

# %% [markdown]
# ## Table 5 beside the paper
#
# Ours: mean per-class accuracy (%) with its 95% t-interval. Paper: the published values for the
# datasets named in the header.

# %%
ch.show_table(runs)

# %% [markdown]
# ## Each strategy against no enrichment
#
# Paired differences (same seed and class split); the paper's difference is its mean over the
# datasets shown above.

# %%
effects = ch.show_effects(runs)

# %% [markdown]
# ## The paper's claims, tested here
#
# Each claim this chapter declares, with our paired effect and the paper's difference (its mean
# over the datasets shown above).

# %%
ch.show_claims(effects)

# %% [markdown]
# ## Reading

# %%
ch.show_reading(runs, effects)
