"""Transfer above chance: the share formula's known answers and edge cases, and the paper's
shares computed from its tables with each dataset's chance."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from vldlib.study.reference import paper_table
from vldlib.study.transfer import above_chance_share, paper_chance, paper_transfer


def test_share_known_answers_and_edge_cases():
    assert above_chance_share(40.0, 60.0, 20.0) == pytest.approx(0.5)
    assert above_chance_share(20.0, 60.0, 20.0) == 0.0
    assert above_chance_share(77.2, 42.1, 20.0) == pytest.approx(57.2 / 22.1)  # a student above its teacher
    assert math.isnan(above_chance_share(30.0, 20.0, 20.0))   # teacher at chance: undefined
    assert math.isnan(above_chance_share(30.0, 10.0, 20.0))   # teacher below chance
    assert math.isnan(above_chance_share(float("nan"), 50.0, 20.0))
    got = above_chance_share(np.array([20.0, 35.0]), np.array([50.0, 20.0]), 20.0)
    assert got[0] == 0.0 and math.isnan(got[1])
    series = above_chance_share(pd.Series([30.0, 40.0], index=["a", "b"], name="x"), 60.0, 20.0)
    assert list(series.index) == ["a", "b"] and series["b"] == pytest.approx(0.5)


def test_paper_chance_is_one_over_the_class_count():
    assert paper_chance("CaltechBirds", "id_acc") == pytest.approx(1.0)  # 100 seen classes
    assert paper_chance("Flower102", "ood_zero_shot_acc") == pytest.approx(100 / 51)
    with pytest.raises(ValueError, match="no chance level for field 'ood_5shot_acc'"):
        paper_chance("Flower102", "ood_5shot_acc")


def test_paper_shares_are_computed_from_the_published_rows():
    shares = paper_transfer(["cls", "mse"])
    t1 = paper_table("table1")

    def acc(key, ds, field):
        return float(t1[(t1.method_key == key) & (t1.dataset == ds)][field].iloc[0])

    row = shares[(shares.method_key == "mse") & (shares.dataset == "Food101")].iloc[0]
    chance = 100 / 51  # Food-101: 51 seen classes
    assert row.id_acc == pytest.approx((acc("mse", "Food101", "id_acc") - chance)
                                       / (acc("teacher_clip_vit_l14", "Food101", "id_acc") - chance))
    six = shares[(shares.method_key == "cls") & (shares.dataset != "Average")]
    avg = shares[(shares.method_key == "cls") & (shares.dataset == "Average")].iloc[0]
    assert len(six) == 6 and avg.id_acc == pytest.approx(six.id_acc.mean())
    assert avg.ood_zero_shot_acc == pytest.approx(six.ood_zero_shot_acc.mean())
    assert set(shares.method_key) == {"cls", "mse"} and shares.source.str.startswith("paper").all()
    # the reading: the paper's L_mse keeps about 0.4 of CLIP's above-chance X_id
    mse_avg = shares[(shares.method_key == "mse") & (shares.dataset == "Average")].iloc[0]
    assert 0.3 < mse_avg.id_acc < 0.55
