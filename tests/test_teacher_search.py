"""The proxy-teacher search (vldlib.study.teacher_search): grid, criterion, the recorded result."""
from __future__ import annotations

import pytest

from vldlib.study import teacher_search as ts
from vldlib.train.profiles import profile_config


def test_grid_and_names():
    cands = ts.candidates()
    names = [ts.candidate_name(c) for c in cands]
    assert len(set(names)) == len(names)
    # temperature only with probabilities: 3 backbones x 2 templates x 2 centring x (3 + 1) x 4 top-T
    assert len(cands) == 3 * 2 * 2 * 4 * 4
    assert ts.candidate_name(ts.BASELINE) in names


def test_teacher_options_name_a_candidate_one_way():
    base = ts.base_options("offline")
    assert base == {"backend": "openvino"}  # the search varies everything else
    assert ts.teacher_options(ts.BASELINE, base) == {"backbone": "lite0", "backend": "openvino"}  # the old default
    opts = {**ts.BASELINE, "centre": True, "top_t": 50}
    assert ts.teacher_options(opts, base) == {"backbone": "lite0", "backend": "openvino", "centre": True, "top_t": 50}
    # options of the profile that the search varies never leak into another candidate
    assert ts.teacher_options(ts.BASELINE, profile_config("offline")["teacher_options"]) == \
        {"backbone": "lite0", "backend": "openvino"}


def test_the_offline_profile_uses_the_searchs_winner():
    result = ts.load_result()
    teacher = profile_config("offline")["teacher_options"]
    assert teacher == result["winner_teacher_options"]
    assert teacher == ts.teacher_options(result["winner_options"], ts.base_options("offline"))


def _row(name, split, ood, acc_id, cos):
    return {"candidate": name, "split_seed": split, "acc_ood_zeroshot": ood, "acc_id": acc_id, "mean_cos": cos}


def test_choose_applies_the_declared_criterion():
    rows = []
    for s in (1, 2, 3):
        rows += [_row("default", s, 40, 42, 0.7),
                 _row("better", s, 48, 41, 0.3),
                 _row("best-but-loses-X_id", s, 55, 30, 0.2),  # X_id drop over MAX_ID_DROP: not eligible
                 _row("best-but-narrower", s, 56, 45, 0.8),    # narrower cone than the default: not eligible
                 _row("tie-wider", s, 48.04, 45, 0.25)]        # ties with "better" (0.1 point), lower cosine wins
    winner, table = ts.choose(rows, default="default")
    assert winner == "tie-wider"
    ranks = {t["candidate"]: t for t in table}
    assert not ranks["best-but-loses-X_id"]["eligible"] and not ranks["best-but-narrower"]["eligible"]
    assert ranks["better"]["rank"] == 2
    with pytest.raises(ValueError, match="default candidate"):
        ts.choose(rows, default="missing")


def test_recorded_result_matches_this_version():
    result = ts.load_result()
    assert result["criterion"] == ts.CRITERION
    assert result["dev_splits"] == list(ts.DEV_SPLITS)
    assert set(result["candidates"]) == {ts.candidate_name(c) for c in ts.candidates()}
    winner, _ = ts.choose(result["rows"])
    assert winner == result["winner"]
