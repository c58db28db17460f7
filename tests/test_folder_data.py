"""Your own data: the ``folder`` dataset (``root/<class>/<images>``), seeded class splits of image
folders and of official datasets, and their one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import shutil
from pathlib import Path

import pytest

from data_fixtures import write_image_folder, write_tiny_official_root
from vldlib.cli.train import main as train_main
from vldlib.data import DATASETS, load_dataset
from vldlib.data.protocol import seeded_class_split
from vldlib.train.config import TrainConfig, config_hash
from vldlib.train.profiles import profile_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "imgs", n_classes=10, per_class=8)


def test_folder_is_registered_and_splits_by_the_protocol(folder):
    assert "folder" in DATASETS
    ds = load_dataset("folder", root=str(folder), load_size=32, crop_size=28)
    assert ds.summary() == {"X_train": 30, "X_id": 10, "X_ood": 40, "Y_id": 5, "Y_ood": 5}
    seen, unseen = seeded_class_split(10, 0, 0.5)
    assert ds.seen_classes == [sorted(os.listdir(folder))[c].replace("_", " ") for c in seen]
    assert not set(ds.seen_classes) & set(ds.unseen_classes)
    # X_train and X_id: the same seen classes, disjoint images; X_ood: every image of the unseen ones, key order
    assert set(ds.train.labels) == set(ds.id.labels) == set(range(5))
    assert not set(ds.train.keys) & set(ds.id.keys)
    assert ds.ood.keys == sorted(ds.ood.keys) and len(ds.ood) == 5 * 8
    assert ds.descriptions is None and ds.train.source.startswith("folder:")
    images, labels = ds.train.get_batch([0, 1])
    assert tuple(images.shape) == (2, 3, 32, 32) and 0.0 <= float(images.min()) <= float(images.max()) <= 1.0


def test_folder_split_seed_and_seen_change_the_split_not_the_cut(folder):
    a = load_dataset("folder", root=str(folder), split_seed=0)
    b = load_dataset("folder", root=str(folder), split_seed=1)
    c = load_dataset("folder", root=str(folder), split_seed=1, seen=3)
    d = load_dataset("folder", root=str(folder), split_seed=1, seen=0.3)
    assert a.seen_classes != b.seen_classes
    assert len(c.seen_classes) == len(d.seen_classes) == 3
    assert load_dataset("folder", root=str(folder), split_seed=1).id.keys == b.id.keys  # same seed, same draw
    # a class seen in both splits keeps its X_id images (the cut depends on the class, not the split)
    both = set(a.seen_classes) & set(b.seen_classes)
    assert both
    for name in both:
        la, lb = a.seen_classes.index(name), b.seen_classes.index(name)
        assert ({k for k, y in zip(a.id.keys, a.id.labels) if y == la}
                == {k for k, y in zip(b.id.keys, b.id.labels) if y == lb})
    assert a.name != b.name != c.name


def test_folder_classes_file_and_descriptions(tmp_path):
    root = write_image_folder(tmp_path / "named", n_classes=4, per_class=6, classes_file=True, descriptions=True)
    ds = load_dataset("folder", root=str(root))
    assert sorted(ds.seen_classes + ds.unseen_classes) == sorted(["Red Apple", "Green Leaf", "Blue Sky", "Yellow Sun"])
    assert set(ds.descriptions) == set(ds.seen_classes + ds.unseen_classes)
    assert load_dataset("folder", root=str(root), descriptions=False).descriptions is None


@pytest.mark.parametrize("case, message", [
    ("one_class", "holds 1 class folder"),
    ("no_class", "holds 0 class folder"),
    ("empty_class", "holds no images"),
    ("unreadable", "unreadable image"),
    ("classes_tab", "separate the folder and the name by one tab"),
    ("classes_unknown", "is not a class folder"),
    ("descriptions_unknown", "is not a class name of this folder"),
    ("missing", "image folder not found"),
])
def test_folder_bad_inputs_name_the_problem_and_the_fix(tmp_path, case, message):
    root = write_image_folder(tmp_path / "imgs", n_classes=3, per_class=4)
    classes = sorted(p.name for p in root.iterdir())
    if case == "one_class":
        for c in classes[1:]:
            for f in (root / c).iterdir():
                f.unlink()
            (root / c).rmdir()
    elif case == "no_class":
        root = tmp_path / "nothing"
        root.mkdir()
    elif case == "empty_class":
        (root / "zz_empty").mkdir()
    elif case == "unreadable":
        (root / classes[1] / "img_999.png").write_bytes(b"not a png at all")
    elif case == "classes_tab":
        (root / "classes.txt").write_text(f"{classes[0]} Red Apple\n", encoding="utf-8")
    elif case == "classes_unknown":
        (root / "classes.txt").write_text("no_such_folder\tA name\n", encoding="utf-8")
    elif case == "descriptions_unknown":
        (root / "descriptions.json").write_text(json.dumps({"descriptions": {"Zebra": ["x"]}}), encoding="utf-8")
    elif case == "missing":
        root = tmp_path / "absent"
    with pytest.raises((ValueError, FileNotFoundError), match=message) as info:
        load_dataset("folder", root=str(root))
    text = str(info.value)
    assert "\n" not in text and str(root) in text  # one line, naming the folder or file
    if case == "unreadable":
        assert "img_999.png" in text and "replace it" in text
    if case == "empty_class":
        assert "zz_empty" in text and "add images" in text


@pytest.mark.parametrize("seen, message", [(10, "at least one class must be seen and one unseen"),
                                           (1.5, "must lie in \\(0, 1\\)"), ("half", "a count")])
def test_folder_bad_seen(folder, seen, message):
    with pytest.raises(ValueError, match=message):
        load_dataset("folder", root=str(folder), seen=seen)


def test_folder_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "one" / "only").mkdir(parents=True)
    code = train_main(["--profile", "smoke", "--dataset", "folder", "--data-root", str(tmp_path / "one"),
                       "--out", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "at least two classes" in err
    code = train_main(["--profile", "smoke", "--dataset", "folder", "--print-config"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "needs dataset_options={'root'" in err and "--data-root" in err


def test_folder_options_are_in_the_run_hash(folder):
    base = profile_config("smoke", dataset="folder", **{"dataset_options.root": str(folder)})
    other_split = profile_config("smoke", dataset="folder", **{"dataset_options.root": str(folder),
                                                               "dataset_options.split_seed": 1})
    other_root = profile_config("smoke", dataset="folder", **{"dataset_options.root": str(folder) + "2"})
    assert len({config_hash(base), config_hash(other_split), config_hash(other_root)}) == 3
    # the folder is named by its content, not its path: a copy elsewhere shares the hash,
    # one more image (or different images) gives another
    copy = shutil.copytree(folder, folder.parent / "copy")
    at_copy = profile_config("smoke", dataset="folder", **{"dataset_options.root": str(copy)})
    assert config_hash(at_copy) == config_hash(base)
    other = write_image_folder(folder.parent / "other", n_classes=10, per_class=9)
    at_other = profile_config("smoke", dataset="folder", **{"dataset_options.root": str(other)})
    assert config_hash(at_other) != config_hash(base)
    first = sorted(p for p in copy.iterdir() if p.is_dir())[0]
    shutil.copy(first / "img_000.png", first / "img_999.png")
    assert config_hash(at_copy) != config_hash(base)
    TrainConfig.from_dict(base).validate()


def test_official_seeded_class_split(tmp_path):
    root = write_tiny_official_root(tmp_path / "Flower102", n_seen=3, n_unseen=3, per_class=6)
    fixed = load_dataset("official", root=str(root))
    a = load_dataset("official", root=str(root), split_seed=0)
    b = load_dataset("official", root=str(root), split_seed=1)
    assert fixed.name == "official/Flower102"  # the lists' split: unchanged
    assert len(a.seen_classes) == len(fixed.seen_classes) == 3  # seen defaults to the lists' count
    assert a.seen_classes != b.seen_classes or a.unseen_classes != b.unseen_classes
    everything = sorted(fixed.train.keys + fixed.id.keys + fixed.ood.keys)
    assert sorted(a.train.keys + a.id.keys + a.ood.keys) == everything  # the same images, redrawn
    assert a.train.source == fixed.train.source  # teacher features shared with the fixed split
    assert len(load_dataset("official", root=str(root), split_seed=0, seen=2).seen_classes) == 2
    with pytest.raises(ValueError, match="needs split_seed"):
        load_dataset("official", root=str(root), seen=2)


@pytest.mark.slow
def test_folder_trains_through_the_cli(tmp_path, folder):
    """``python -m vldlib train --profile smoke --dataset folder --data-root DIR``: a record, reused the second time."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "vldlib", "train", "--profile", "smoke", "--dataset", "folder", "--data-root",
           str(folder), "--out", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache"), "--quiet",
           "--set", "dataset_options.load_size=32", "--set", "dataset_options.crop_size=28"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = list((tmp_path / "res").glob("*/record.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["config"]["dataset"] == "folder" and record["dataset"]["name"].startswith("folder/imgs/s0")
    assert record["dataset"]["Y_id"] == record["dataset"]["Y_ood"] == 5
    assert record["final"]["acc_ood_5shot"] is not None
