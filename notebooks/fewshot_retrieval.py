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
# # Few-shot by retrieval: is a cache of the support set as good as fine-tuning?
#
# Once the student is trained, five labelled images of each unseen class arrive. The paper
# {cite}`li2023distilling` fine-tunes the student on them (§3.6) and, in Table 10, compares that
# with a training-free alternative in the style of Tip-Adapter (Zhang et al., ECCV 2022
# {cite}`zhang2022tipadapter`): keep the support images' features in a cache and add to the
# zero-shot score of each class an affinity to its cached images,
# `cos(s, t_y) + alpha * sum_m exp(-beta (1 - cos(s, k_m)))` over the class's keys. The paper finds
# retrieval far worse (about 24% against 36-40% for fine-tuning).
#
# Both here use the same support images (the first five per unseen class) and the same
# evaluation images (the rest of X_ood). The cache is applied to the very students whose 5-shot
# fine-tuning is reported, before that fine-tuning, so it costs no training. Keys are the
# teacher's image features (as in the official code) or the student's (as the paper's text says).

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
student = None  # the CNN student; None: the profile's ("small" offline, "resnet18" paper)
epochs = None  # None: the profile's
per_class = None  # Fashion-MNIST images per class; None: the profile's
seeds = None  # training seeds; None: the profile's replicates
split_seeds = None  # Fashion-MNIST class splits; None: the profile's
retrieval_alpha = 1.0  # weight of the cache (Tip-Adapter's default and the official code's)
retrieval_beta = 5.5  # sharpness of the affinity (same)
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
# ## The runs and the cache

# %%
ch = open_chapter("fewshot_retrieval", globals())
acc = ch.train()
display(Markdown(ch.proxy_note()))

# %% [markdown]
# ## Table 10 beside the paper
#
# Ours: accuracy (%) on the same evaluation images, mean and 95% t-interval over the runs.

# %%
table = ch.table(acc)
display(table, ch.csv(table, 'table'))
ch.figure(acc)
plt.show()
display(ch.runs_csv(acc))

# %% [markdown]
# ## Paired effects
#
# Same run, same images: each difference is paired within a run.

# %%
effects = ch.effects(acc)
display(report.effects_table(effects), ch.csv(effects, 'effects'))
if not effects.empty:
    report.plot_effects(effects, title="Fine-tuning and retrieval: paired effects")
    plt.show()

# %% [markdown]
# ## The paper's claims, tested here

# %%
display(*ch.publish_claims(effects))  # the paper's claims tested here, glued for the front page

# %% [markdown]
# ## Reading

# %%
display(Markdown(ch.reading(effects)))
