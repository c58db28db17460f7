"""vldlib.data: official format (real split files + tiny roots), Fashion-MNIST, transforms."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from data_fixtures import tiny_plan, write_tiny_official_root, write_tiny_original_root
from vldlib.data import (DatasetSplits, ImageSplit, class_split, load_dataset, read_chatgpt,
                         read_label2text, read_official_splits, student_eval_transform,
                         student_train_transform)
from vldlib.data import fashion_mnist as fm
from vldlib.data.transforms import (StudentTrainTransform, resized_crop, resized_crop_grid,
                                    resized_crop_loop, sample_crop_params)

# ----------------------------------------------------------------------------- official format
TABLE13 = {  # paper Table 13: X_train, X_id, X_ood, Y_id, Y_ood
    "CaltechBirds": (4122, 1740, 5926, 100, 100),
    "StanfordCars": (2874, 1164, 4106, 98, 98),
    "Flower102": (3112, 1303, 3774, 51, 51),
    "Food101": (35700, 15300, 50000, 51, 50),
    "SUN397": (38663, 16444, 53647, 200, 197),
    "tiered-ImageNet": (314108, 134587, 124261, 351, 97),
}


@pytest.mark.parametrize("dataset", sorted(TABLE13))
def test_official_split_files_give_table13_sizes(official_data, dataset):
    folder = official_data / dataset
    if not (folder / "train_data.txt").is_file():
        pytest.skip(f"{dataset}: split lists not shipped in {folder}")
    info = read_official_splits(folder)
    s = info.sizes()
    assert (s["X_train"], s["X_id"], s["X_ood"], s["Y_id"], s["Y_ood"]) == TABLE13[dataset]
    assert info.layout == "lists"
    # labels index the seen (train, val_on_train) or unseen (val) class lists
    assert {lab for _, lab in info.train} == set(range(len(info.seen)))
    assert {lab for _, lab in info.val} == set(range(len(info.unseen)))
    assert not set(info.seen_classes) & set(info.unseen_classes)
    # label order = label2text order restricted to each set; names from the third column
    assert info.seen == sorted(info.seen) and info.unseen == sorted(info.unseen)
    rel, lab = info.train[0]
    folder_name = rel.split("/")[1]
    entry = info.classes[info.seen[lab]]
    assert entry.folder == folder_name
    assert info.seen_classes[lab] == entry.name and "_" not in entry.name
    assert info.descriptions is not None and len(info.descriptions) == s["Y_id"] + s["Y_ood"]


def test_official_cub_label_order_and_names(official_data):
    info = read_official_splits(official_data / "CaltechBirds")
    # paper §4.3: the CUB Y_id starts 002, 004, 006, 007, ...
    assert [info.classes[i].folder[:3] for i in info.seen[:4]] == ["002", "004", "006", "007"]
    assert info.seen_classes[0] == "Laysan Albatross"
    assert info.descriptions["Laysan Albatross"][0].startswith("The Laysan Albatross")


def test_official_tiered_descriptions_disambiguate_duplicate_names(official_data):
    from vldlib.data import read_descriptions

    d = read_descriptions(official_data / "tiered-ImageNet")
    assert len(d) == 1000
    assert sum(name.startswith("crane (") for name in d) == 2


def _assert_tiny_dataset(ds: DatasetSplits, n_seen=3, n_unseen=3, per_class=6, size=32):
    plan = tiny_plan(n_seen, n_unseen, per_class)
    seen = [c for c in plan if c.seen]
    unseen = [c for c in plan if not c.seen]
    assert ds.seen_classes == [c.name for c in seen]
    assert ds.unseen_classes == [c.name for c in unseen]
    n_id = round(0.3 * per_class)
    assert (len(ds.train), len(ds.id), len(ds.ood)) == (
        n_seen * (per_class - n_id), n_seen * n_id, n_unseen * per_class)
    for split, official in ((ds.train, "train"), (ds.id, "val_on_train"), (ds.ood, "val")):
        classes = seen if official != "val" else unseen
        expected = {f"{official}/{c.folder}/{f}": c.label for c in classes for f in c.files[official]}
        assert dict(zip(split.keys, split.labels)) == expected
    assert ds.descriptions is not None
    assert set(ds.descriptions) == {c.name for c in plan}
    assert ds.descriptions["Blue Sky"] == [
        "A blue sky is a tiny test class with stripes of period 4."]
    img, label = ds.ood[0]
    assert img.shape == (3, ds.load_size, ds.load_size) and img.dtype == torch.float32
    assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0
    # the class colour survives loading (Green Leaf is the first unseen class)
    assert ds.unseen_classes[label] == "Green Leaf"
    mean_rgb = img.mean(dim=(1, 2))
    assert int(mean_rgb.argmax()) == 1


def test_tiny_official_split_layout(tmp_path):
    root = write_tiny_official_root(tmp_path / "tiny")
    ds = load_dataset("official", root, load_size=40, crop_size=36)
    _assert_tiny_dataset(ds)
    assert ds.name == "official/tiny" and ds.channels == 3 and ds.load_size == 40
    assert ds.mean == (0.485, 0.456, 0.406)
    info = read_official_splits(root)
    assert info.layout == "folders"


@pytest.mark.parametrize("layout", ["cub", "plain", "flat", "sun"])
def test_tiny_original_layout_with_split_lists(tmp_path, layout):
    root = write_tiny_original_root(tmp_path / f"orig-{layout}", layout=layout)
    ds = load_dataset("official", root, load_size=32, crop_size=28)
    if layout == "sun":  # class folders are the nested paths joined by '_'
        assert ds.train.keys[0].split("/")[1].endswith("_outdoor")
        assert len(ds.train) == 12 and len(ds.ood) == 18
        assert Path(ds.train.paths[0]).parent.name == "outdoor"
        assert ds.train[0][0].shape == (3, 32, 32)
    else:
        _assert_tiny_dataset(ds)


def test_split_lists_in_a_separate_folder(tmp_path):
    root = write_tiny_official_root(tmp_path / "images", write_lists=True)
    lists = tmp_path / "lists"
    lists.mkdir()
    for name in ("label2text.txt", "chatgpt.txt", "train_data.txt", "val_data.txt",
                 "val_on_train_data.txt"):
        shutil.move(root / name, lists / name)
    ds = load_dataset("official", root, splits=lists, load_size=32, crop_size=28)
    _assert_tiny_dataset(ds)
    assert ds.name == "official/lists"


def test_missing_images_give_one_error_with_count_paths_and_layout(tmp_path):
    root = write_tiny_original_root(tmp_path / "orig", layout="cub")
    gone = sorted((root / "CUB_200_2011" / "images").rglob("*.jpg"))[:3]
    for p in gone:
        p.unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("official", root)
    msg = str(err.value)
    assert msg.startswith("3 of 36 images listed in the split lists were not found")
    assert "(train: 1 of 12, val_on_train: 2 of 6)" in msg and "layout 'CUB'" in msg
    assert "Expected one of these layouts" in msg and "R/train/<class_folder>/<file>" in msg
    assert str(gone[0]) in msg  # shown where it was expected, in the layout in use


def test_missing_images_counted_in_one_message(tmp_path):
    root = write_tiny_original_root(tmp_path / "orig", layout="plain", per_class=10)
    val = [line for line in (root / "val_data.txt").read_text().splitlines()]
    for rel in val[:7]:
        cls, name = rel.split("/")[1:]
        (root / cls / name).unlink()
    with pytest.raises(FileNotFoundError, match=r"7 of 60 images listed .* \(val: 7 of 30\)") as err:
        load_dataset("official", root)
    shown = [line for line in str(err.value).splitlines() if line.startswith("  ") and ".jpg" in line]
    assert len(shown) == 5  # the first few paths, not all seven


def test_other_extensions_are_accepted(tmp_path):
    from PIL import Image

    root = write_tiny_original_root(tmp_path / "orig", layout="plain")
    for i, p in enumerate(sorted(root.glob("*/*.jpg"))[:4]):
        new = p.with_suffix([".png", ".JPEG", ".jpeg", ".png"][i])
        Image.open(p).save(new, format="PNG" if new.suffix == ".png" else "JPEG")
        p.unlink()
    ds = load_dataset("official", root, load_size=32, crop_size=28)
    suffixes = {Path(p).suffix for s in ds.splits.values() for p in s.paths}
    assert {".png", ".JPEG", ".jpeg", ".jpg"} <= suffixes
    assert all(s[0][0].shape == (3, 32, 32) for s in ds.splits.values())
    # and in the split layout without lists
    root2 = write_tiny_official_root(tmp_path / "tiny")
    p = sorted((root2 / "val").rglob("*.jpg"))[0]
    Image.open(p).save(p.with_suffix(".png"))
    p.unlink()
    ds2 = load_dataset("official", root2)
    assert any(k.endswith(".png") for k in ds2.ood.keys) and len(ds2.ood) == 18


def test_chatgpt_line_count_mismatch_is_a_clear_error(tmp_path):
    root = write_tiny_official_root(tmp_path / "tiny", per_class=2)
    lines = (root / "chatgpt.txt").read_text().splitlines()
    (root / "chatgpt.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match="5 lines but label2text.txt has 6 classes"):
        read_official_splits(root)
    assert len(read_chatgpt(root / "chatgpt.txt")) == 5


def test_label2text_format_errors(tmp_path):
    p = tmp_path / "label2text.txt"
    p.write_text("001.A 1 A\n002.B 2 Big Bird\n")
    with pytest.raises(ValueError, match=r"label2text.txt:2: expected 3 space-separated tokens"):
        read_label2text(p)
    p.write_text("001.A one A\n")
    with pytest.raises(ValueError, match="not an integer"):
        read_label2text(p)
    p.write_text("001.Black_footed_Albatross 1 Black_footed_Albatross\n\n")
    assert read_label2text(p)[0] == ("001.Black_footed_Albatross", 1, "Black footed Albatross")


def test_official_format_errors(tmp_path):
    root = write_tiny_official_root(tmp_path / "tiny", per_class=2, write_lists=True)
    (root / "val_data.txt").unlink()
    with pytest.raises(FileNotFoundError, match="missing: val_data.txt"):
        read_official_splits(root)
    root = write_tiny_official_root(tmp_path / "tiny2", per_class=2, write_lists=True)
    with open(root / "val_data.txt", "a") as fh:
        fh.write("\nval/001.Red_Apple/Red_Apple_0000.jpg")  # a seen class listed as unseen
    with pytest.raises(ValueError, match="both in train/val_on_train and in val"):
        read_official_splits(root)
    with pytest.raises(FileNotFoundError, match="no label2text.txt"):
        read_official_splits(tmp_path)
    with pytest.raises(ValueError, match="root=<data folder>"):
        load_dataset("official")
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="unknown option"):
        load_dataset("official", root, load_sise=3)


def test_image_split_subset_and_batch(tmp_path):
    ds = load_dataset("official", write_tiny_official_root(tmp_path / "tiny"), load_size=24,
                      crop_size=20)
    sub = ds.ood.subset([3, 1])
    assert isinstance(sub, ImageSplit) and sub.keys == [ds.ood.keys[3], ds.ood.keys[1]]
    imgs, labels = sub.get_batch([0, 1])
    assert imgs.shape == (2, 3, 24, 24) and labels.tolist() == [ds.ood.labels[3], ds.ood.labels[1]]
    assert torch.equal(imgs[1], ds.ood[1][0])
    with pytest.raises(ValueError, match="out of range"):
        ds.ood.subset([99])


# ------------------------------------------------------------------------------ Fashion-MNIST
def _write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


@pytest.fixture(scope="module")
def fake_fmnist(tmp_path_factory) -> Path:
    """Synthetic idx files: 30 train + 10 t10k images per class, pixel value encodes identity."""
    root = tmp_path_factory.mktemp("fmnist")
    rng = np.random.default_rng(0)
    for part, per, gz in (("train", 30, True), ("t10k", 10, False)):
        labels = np.repeat(np.arange(10), per)
        rng.shuffle(labels)
        images = rng.integers(0, 256, size=(len(labels), 28, 28))
        images[:, 0, 0] = labels * 20
        _write_idx(root / f"{part}-images-idx3-ubyte", images, gz)
        _write_idx(root / f"{part}-labels-idx1-ubyte", labels, gz)
    return root


def test_fashion_mnist_splits(fake_fmnist):
    ds = load_dataset("fashion-mnist", fake_fmnist, per_class=20)
    seen, unseen = class_split(0)
    assert ds.seen_classes == [fm.CLASS_NAMES[c] for c in seen]
    assert ds.unseen_classes == [fm.CLASS_NAMES[c] for c in unseen]
    assert (len(ds.train), len(ds.id), len(ds.ood)) == (5 * 14, 5 * 6, 5 * 20)
    assert ds.name == "fashion-mnist/s0/n20" and ds.channels == 1 and ds.mean == (0.2862,)
    tr, idk, ood = set(ds.train.keys), set(ds.id.keys), set(ds.ood.keys)
    assert not tr & idk and not (tr | idk) & ood
    assert all(k.startswith(("train/", "t10k/")) for k in tr | idk | ood)
    pool, pool_labels, keys = fm.load_pool(fake_fmnist)
    pos = {k: i for i, k in enumerate(keys)}
    for split, classes in ((ds.train, seen), (ds.id, seen), (ds.ood, unseen)):
        originals = [int(pool_labels[pos[k]]) for k in split.keys]
        assert originals == [classes[lab] for lab in split.labels]  # labels index the class lists
    img, _ = ds.train[0]
    assert img.shape == (1, 32, 32) and 0 <= float(img.min()) and float(img.max()) <= 1
    # the same 20 images per class whatever the class split
    ds7 = load_dataset("fashion-mnist", fake_fmnist, per_class=20, split_seed=7)
    assert set(ds7.train.keys) | set(ds7.id.keys) | set(ds7.ood.keys) == tr | idk | ood
    assert ds7.seen_classes != ds.seen_classes
    # determinism: the same config gives the same lists; another seed another X_train/X_id cut
    again = load_dataset("fashion-mnist", fake_fmnist, per_class=20)
    assert again.train.keys == ds.train.keys and again.id.keys == ds.id.keys
    assert torch.equal(again.train.get_batch(range(5))[0], ds.train.get_batch(range(5))[0])
    other = load_dataset("fashion-mnist", fake_fmnist, per_class=20, seed=1)
    assert set(other.train.keys) | set(other.id.keys) == tr | idk and other.id.keys != ds.id.keys
    full = load_dataset("fashion-mnist", fake_fmnist, per_class=None, load_size=28, crop_size=28)
    assert len(full.train) + len(full.id) + len(full.ood) == 400
    assert full.train[0][0].shape == (1, 28, 28)


def test_class_split_rule():
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(3))
    assert class_split(3) == (sorted(perm[:5].tolist()), sorted(perm[5:].tolist()))


def test_fashion_mnist_real_files(fashion_mnist_root):
    ds = load_dataset("fashion-mnist", fashion_mnist_root)
    assert (len(ds.train), len(ds.id), len(ds.ood)) == (2100, 900, 3000)
    pool, labels, keys = fm.load_pool(fm.find_fashion_mnist(fashion_mnist_root))
    assert pool.shape == (70000, 28, 28) and keys[60000] == "t10k/0"
    assert np.bincount(labels.numpy()).tolist() == [7000] * 10


def test_fashion_mnist_not_found_lists_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.delenv("VLD_DATA", raising=False)
    monkeypatch.setattr(fm, "SYSTEM_ROOT", tmp_path / "system")

    def no_network(cache_dir, timeout=20.0):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(fm, "_download", no_network)
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("fashion-mnist", None, cache_dir=tmp_path / "cache")
    msg = str(err.value)
    for expected in ("system package", "torchvision download", "name resolution",
                     "apt-get install dataset-fashion-mnist", "VLD_DATA=<folder>"):
        assert expected in msg
    with pytest.raises(FileNotFoundError, match="skipped"):
        load_dataset("fashion-mnist", None, cache_dir=tmp_path / "c", download=False)
    # an explicit root (or $VLD_DATA) is the only place looked at (tests/test_faults.py)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("fashion-mnist", tmp_path / "given", cache_dir=tmp_path / "cache")


def test_fashion_mnist_bad_options_and_files(fake_fmnist, tmp_path):
    with pytest.raises(ValueError, match="per_class"):
        load_dataset("fashion-mnist", fake_fmnist, per_class=1)
    with pytest.raises(ValueError, match="id_fraction"):
        load_dataset("fashion-mnist", fake_fmnist, id_fraction=1.5)
    bad = tmp_path / "bad-idx"
    bad.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 9, 1, 2]))
    with pytest.raises(ValueError, match="truncated"):
        fm.read_idx(bad)


# -------------------------------------------------------------------------------- transforms
@pytest.fixture()
def tiny_ds(fake_fmnist) -> DatasetSplits:
    return load_dataset("fashion-mnist", fake_fmnist, per_class=10)


def test_eval_transform_is_centre_crop_and_normalise(tiny_ds):
    x = tiny_ds.id.get_batch(range(4))[0]
    out = student_eval_transform(tiny_ds)(x)
    assert out.shape == (4, 1, 28, 28)
    expected = (x[:, :, 2:30, 2:30] - 0.2862) / 0.3529
    assert torch.allclose(out, expected)
    assert torch.equal(student_eval_transform(tiny_ds)(x[0]), out[0])


def test_train_transform_shapes_and_per_image_vs_per_batch(tiny_ds):
    one = tiny_ds.train.get_batch([0])[0]
    batch = one.expand(16, -1, -1, -1).contiguous()  # 16 copies of one image
    per_image = student_train_transform(tiny_ds)(batch, generator=torch.Generator().manual_seed(0))
    per_batch = student_train_transform(tiny_ds, per_image=False)(
        batch, generator=torch.Generator().manual_seed(0))
    assert per_image.shape == per_batch.shape == (16, 1, 28, 28)
    # official quirk: one draw for the whole batch -> identical outputs for identical inputs
    assert all(torch.equal(per_batch[0], per_batch[i]) for i in range(16))
    distinct = {tuple(per_image[i].flatten()[:50].tolist()) for i in range(16)}
    assert len(distinct) > 8


def test_train_transform_is_reproducible_under_a_seed(tiny_ds):
    x = tiny_ds.train.get_batch(range(8))[0]
    t = student_train_transform(tiny_ds)
    a = t(x, generator=torch.Generator().manual_seed(5))
    b = t(x, generator=torch.Generator().manual_seed(5))
    c = t(x, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(11)
    d = t(x)
    torch.manual_seed(11)
    assert torch.equal(d, t(x))  # global RNG path, seeded by the trainer
    loop = StudentTrainTransform(28, tiny_ds.mean, tiny_ds.std, method="loop")
    assert torch.allclose(loop(x, generator=torch.Generator().manual_seed(5)), a, atol=1e-5)


def test_resized_crop_matches_interpolate_and_flip():
    x = torch.rand(3, 2, 20, 24, dtype=torch.float64)
    boxes = torch.tensor([[0, 0, 20, 24], [3, 5, 10, 12], [7, 1, 13, 9]])
    flip = torch.tensor([False, True, False])
    out = resized_crop(x, boxes, 16, flip)
    grid = resized_crop_grid(x, boxes, 16, flip)
    for b, (i, j, h, w) in enumerate(boxes.tolist()):
        ref = F.interpolate(x[b:b + 1, :, i:i + h, j:j + w], size=(16, 16), mode="bilinear",
                            align_corners=False)[0]
        if b == 1:
            ref = ref.flip(-1)
        assert torch.allclose(out[b], ref, atol=1e-10)
        # grid_sample agrees inside; at an upsampled crop's border it sees outside pixels
        assert torch.allclose(grid[b, :, 1:-1, 1:-1], ref[:, 1:-1, 1:-1], atol=1e-10)
    assert torch.allclose(resized_crop_loop(x, boxes, 16, flip), out, atol=1e-10)
    # one box broadcasts to the batch (the official once-per-batch draw)
    same = resized_crop(x, boxes[1:2], 16, torch.tensor([True]))
    assert torch.allclose(same[1], out[1]) and torch.allclose(same[0].flip(-1), resized_crop(
        x[:1], boxes[1:2], 16)[0])


def test_crop_params_follow_torchvision_bounds():
    boxes = sample_crop_params(4000, 32, 32, generator=torch.Generator().manual_seed(0))
    i, j, h, w = boxes.T
    assert bool(((i >= 0) & (j >= 0) & (i + h <= 32) & (j + w <= 32) & (h > 0) & (w > 0)).all())
    area = (h * w).double() / 1024
    assert 0.07 < float(area.min()) and float(area.max()) <= 1.0
    assert 0.45 < float(area.mean()) < 0.6  # E[U(0.08, 1)] = 0.54, slightly less from clipping
    ratio = (w.double() / h.double())
    assert float(ratio.min()) > 0.6 and float(ratio.max()) < 1.7


def test_real_flowers_lists_resolve_in_the_flat_original_layout(official_data, tmp_path):
    """The official Flower102 lists against an original 102flowers layout (R/jpg/image_XXXXX.jpg)."""
    folder = official_data / "Flower102"
    rels = [line for s in ("train", "val_on_train", "val")
            for line in (folder / f"{s}_data.txt").read_text().splitlines() if line.strip()]
    (tmp_path / "jpg").mkdir()
    for rel in rels:
        (tmp_path / "jpg" / rel.split("/")[-1]).touch()  # names only; images are opened lazily
    ds = load_dataset("official", tmp_path, splits=folder)
    assert (len(ds.train), len(ds.id), len(ds.ood)) == (3112, 1303, 3774)
    assert all(Path(p).parent == tmp_path / "jpg" for p in ds.ood.paths)
    assert ds.name == "official/Flower102" and len(ds.descriptions) == 102
    (tmp_path / "jpg" / rels[-1].split("/")[-1]).unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 8189 .*\(val: 1 of 3774\).*layout 'flat jpg/'"):
        load_dataset("official", tmp_path, splits=folder)


def test_official_module_split_by_job_keeps_every_name():
    """official.py (format readers, load_official) and official_images.py (finding the listed images
    on disk), each under 450 lines; every name stays importable from vldlib.data.official."""
    from vldlib.data import official, official_images

    for name in ("resolve_images", "EXPECTED_LAYOUT", "IMAGE_EXTENSIONS", "load_official", "read_label2text",
                 "read_chatgpt", "unique_names", "read_descriptions", "read_official_splits", "OfficialSplits",
                 "ClassEntry", "OFFICIAL_SPLITS", "SPLIT_TO_PAPER", "IMAGENET_MEAN", "IMAGENET_STD"):
        assert name in official.__all__ and hasattr(official, name), name
    assert official.resolve_images is official_images.resolve_images
    for mod in (official, official_images):
        assert len(Path(mod.__file__).read_text(encoding="utf-8").splitlines()) <= 450, mod.__name__
