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
dataset = None  # None: the profile's ("fashion-mnist" offline, "official" paper)
dataset_root = None  # data folder; required for "official"
teacher = None  # None: the profile's
student = None  # None: the profile's
epochs = None  # None: the profile's
per_class = None  # Fashion-MNIST images per class; None: the profile's
seeds = None  # training seeds; None: the profile's replicates
split_seeds = None  # Fashion-MNIST class splits; None: the profile's
losses = None  # rows; None: all eight (L_cls alone, + each of the paper's three, + each of the field's four)
analysis = True  # compute the analysis metrics (needed for the second table)
paper_dataset = None  # the paper's column; None: matching folder, else the Table 1 average
overrides = {}  # any other TrainConfig fields

# %%
from vldlib.study.parameters import check_parameters

globals().update(check_parameters(globals()))  # every parameter against its declared type, before anything runs
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from vldlib.study import report
from vldlib.study.chapters import open_chapter

sns.set_theme(style="whitegrid", context="notebook")
pd.set_option("display.max_colwidth", 200)

# %% [markdown]
# ## The runs

# %%
ch = open_chapter("field_losses", globals())
runs = ch.train()
display(Markdown(ch.proxy_note()))

# %% [markdown]
# ## Accuracy, beside Table 1 where the paper has the row
#
# The paper reports L_cls alone, L_cls + L_mse and L_cls + L_im-cst; it has no row for
# L_cls + L_vlprox alone nor for the field's losses ("–").

# %%
table = ch.table(runs)
display(table, ch.csv(table, 'table'))
ch.figure(runs)
plt.show()
display(ch.runs_csv(runs))

# %% [markdown]
# ## What each loss preserves of the teacher's space (X_ood)

# %%
analysis = ch.analysis_table(runs)
display(analysis, ch.csv(analysis, 'analysis'))

# %% [markdown]
# ## Reading
#
# Paired differences (same seed and class split) against L_cls alone and against L_cls + L_im-cst.

# %%
effects = ch.effects(runs)
display(report.effects_table(effects), ch.csv(effects, 'effects'))
display(Markdown(ch.reading(runs, effects)))
display(*ch.publish_claims(effects))  # the paper's claims tested here, glued for the front page
