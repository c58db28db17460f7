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
# ## The teacher and the runs

# %%
ch = open_chapter("description_controls", globals())
acc = ch.train()
display(Markdown(ch.proxy_note()))

# %% [markdown]
# ## Accuracy per class-text set
#
# Mean per-class accuracy (%) with its 95% t-interval: the teacher over class splits, the students
# over runs. The paper has no such controls, so there is no paper column.

# %%
table = ch.table(acc)
display(table, ch.csv(table, 'table'))
ch.figure(acc)
plt.show()
display(ch.runs_csv(acc))

# %% [markdown]
# ## Real descriptions against each control
#
# Paired differences: the teacher per class split, the students per seed and class split.

# %%
effects = ch.effects(acc)
display(report.effects_table(effects), ch.csv(effects, 'effects'))
if not effects.empty:
    report.plot_effects(effects, title="Real descriptions minus each control")
    plt.show()

# %% [markdown]
# ## The paper's claims, tested here

# %%
display(*ch.publish_claims(effects))  # the paper's claims tested here, glued for the front page

# %% [markdown]
# ## Reading

# %%
display(Markdown(ch.reading(effects)))
