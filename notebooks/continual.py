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
dataset = None  # None: the profile's ("fashion-mnist" offline, "official" paper)
dataset_root = None  # data folder; required for "official"
teacher = None  # None: the profile's
student = None  # None: the profile's
epochs = None  # None: the profile's
per_class = None  # Fashion-MNIST images per class; None: the profile's
seeds = None  # training seeds; None: the profile's replicates
split_seeds = None  # Fashion-MNIST class splits; None: the profile's
paper_dataset = None  # the paper's column; None: matching folder, else every dataset of the paper's table
overrides = {}  # any other TrainConfig fields, e.g. {"num_workers": 0}

# %%
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from vldlib.study import report

from vldlib.study.chapters import open_chapter
from vldlib.study.parameters import check_parameters

sns.set_theme(style="whitegrid", context="notebook")
pd.set_option("display.max_colwidth", 200)
globals().update(check_parameters(globals()))  # every parameter against its declared type, before anything runs

# %% [markdown]
# ## The runs

# %%
ch = open_chapter("continual", globals())
acc = ch.train()
display(Markdown(ch.proxy_note()))

# %% [markdown]
# ## Table 11 beside the paper

# %%
table = ch.table(acc)
display(table, ch.csv(table, 'table'))
ch.figure(acc)
plt.show()
display(ch.runs_csv(acc))

# %% [markdown]
# ## What fine-tuning on X_ood1 changes
#
# After minus before, paired within each run.

# %%
effects = ch.effects(acc)
display(report.effects_table(effects), ch.csv(effects, 'effects'))
if not effects.empty:
    report.plot_effects(effects, title="After minus before fine-tuning on X_ood1")
    plt.show()

# %% [markdown]
# ## The paper's claims, tested here

# %%
display(*ch.publish_claims(effects))  # the paper's claims tested here, glued for the front page

# %% [markdown]
# ## Reading

# %%
display(Markdown(ch.reading(effects)))
