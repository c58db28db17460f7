"""Transfer above chance: the share formula's known answers and edge cases, and the paper's
shares computed from its tables with each dataset's chance."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from vldlib.study.reference import paper_table
from vldlib.study.stats import above_chance_share
from vldlib.study.transfer import paper_chance, paper_transfer


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


def _runs(column: str, variants, teacher=(40.0, 50.0)):
    rows = []
    for v, (sid, sood) in variants.items():
        for split in (0, 1, 2):
            for seed in (0, 1):
                rows.append({column: v, "seed": seed, "split_seed": split, "acc_id": sid + split,
                             "acc_ood_zeroshot": sood + split, "teacher_acc_id": teacher[0] + split,
                             "teacher_acc_ood_zeroshot": teacher[1] + split, "n_seen": 5, "n_unseen": 5})
    return pd.DataFrame(rows)


def test_runs_get_their_share_above_chance_and_chapters_show_it_beside_the_papers(tmp_path):
    from vldlib.study.chapters import open_chapter
    from vldlib.study.stats import with_transfer

    runs = with_transfer(_runs("method", {"cls": (60.0, 30.0), "mse": (20.0, 20.0)}))
    first = runs.iloc[0]  # split 0: (60 - 20) / (40 - 20) = 2.0 on X_id, (30 - 20) / (50 - 20) on X_ood
    assert first.above_chance_acc_id == pytest.approx(2.0)
    assert first.above_chance_acc_ood_zeroshot == pytest.approx(1 / 3)
    assert (runs[runs.method == "mse"].above_chance_acc_id.abs() < 0.1).all()
    ch = open_chapter("main_results", profile="smoke", results_dir=str(tmp_path))
    table = ch.above_chance_table(runs)
    paper = paper_transfer(["cls"])
    paper_id = paper[paper.dataset == "Average"].id_acc.iloc[0]
    row = table.loc[ch.chapter.label("cls")]
    assert row[("X_id", "ours")].startswith("1.95 [")  # mean over splits of 40/20, 41/21, 42/22
    assert row[("X_id", "paper (Average)")] == f"{paper_id:.2f}"
    reading = ch.above_chance_reading(runs)
    assert f"(paper {paper_id:.2f} / " in reading and ch.chapter.label("mse") in reading
    assert ch.above_chance_table(runs.drop(columns=["above_chance_acc_id", "above_chance_acc_ood_zeroshot"])).empty


def test_a_record_row_carries_its_class_counts():
    from vldlib.runs import record_row

    row = record_row({"hash": "h", "config": {}, "final": {"acc_id": 50.0},
                      "dataset": {"seen_classes": ["a", "b", "c"], "unseen_classes": ["d", "e"]}})
    assert row["n_seen"] == 3 and row["n_unseen"] == 2
    assert "n_seen" not in record_row({"hash": "h", "config": {}, "final": {}})
