"""Datasets and teachers as specs: the registries answer what the rest of vldlib asks, and no
module outside ``vldlib/data/`` and ``vldlib/models/`` compares a dataset's or a teacher's name."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from vldlib.data import DATASETS, ROOTED_DATASETS, load_dataset
from vldlib.data.specs import DATASET_SPECS, DatasetSpec, dataset_spec, register_dataset
from vldlib.models.specs import TEACHER_SPECS, TeacherSpec, register_teacher, teacher_spec
from vldlib.models.teachers import TEACHERS

PKG = Path(__file__).resolve().parents[1] / "vldlib"
NAMES = {*DATASET_SPECS, *TEACHER_SPECS}


def _name_comparisons(path: Path, label: str = "") -> list[str]:
    """``x == "name"``, ``x != "name"``, ``x in ("name", ...)`` with a dataset or teacher name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        literals = []
        for op in operands:
            if isinstance(op, ast.Constant):
                literals.append(op.value)
            elif isinstance(op, (ast.Tuple, ast.List, ast.Set)):
                literals += [e.value for e in op.elts if isinstance(e, ast.Constant)]
        hits = [v for v in literals if isinstance(v, str) and v in NAMES]
        # "official" is also a description variant (descriptions="official"): a comparison of a
        # variable named for descriptions is about the variant, not the dataset
        if hits == ["official"] and any(isinstance(o, ast.Name) and o.id in ("which", "variant", "desc", "descriptions")
                                        or isinstance(o, ast.Attribute) and o.attr == "descriptions"
                                        for o in operands):
            continue
        if hits:
            found.append(f"{label or path.relative_to(PKG.parent)}:{node.lineno} {hits}")
    return found


def test_no_dataset_or_teacher_name_is_compared_outside_data_and_models():
    found = [hit for path in sorted(PKG.rglob("*.py"))
             if path.relative_to(PKG).parts[0] not in ("data", "models")
             for hit in _name_comparisons(path)]
    assert found == [], found


def test_the_name_scan_finds_a_comparison(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('if cfg.teacher == "conse":\n    pass\nif d in ("folder", "x"):\n    pass\n'
                     'if which == "official":\n    pass\n')
    assert _name_comparisons(probe, "probe") == ["probe:1 ['conse']", "probe:3 ['folder']"]


def test_registries_derive_the_lists_and_answer_aliases():
    assert DATASETS == tuple(DATASET_SPECS) and set(ROOTED_DATASETS) == {"official", "folder"}
    assert dataset_spec("Fashion_MNIST") is dataset_spec("fmnist") is DATASET_SPECS["fashion-mnist"]
    assert set(TEACHERS) == set(TEACHER_SPECS)
    assert teacher_spec("ConSE").proxy and not teacher_spec("openclip").proxy
    assert teacher_spec("openclip").downloads_weights and teacher_spec("openclip").prompt_learning


@pytest.mark.parametrize("call", [lambda: dataset_spec("imagenet"), lambda: load_dataset("imagenet"),
                                  lambda: teacher_spec("clip")])
def test_an_unknown_name_is_one_line_naming_the_known(call):
    with pytest.raises(ValueError) as err:
        call()
    text = str(err.value)
    assert "\n" not in text and "unknown" in text and ("fashion-mnist" in text or "conse" in text)


def test_a_registered_dataset_is_loaded_through_its_spec():
    seen: dict = {}

    def load_toy(root=None, *, split_seed: int = 0, crop_size: int = 8):
        seen.update(root=root, split_seed=split_seed)
        return "splits"

    spec = DatasetSpec(name="toy-test", loader=load_toy, summary="a test dataset", split_seed_required=True)
    register_dataset(spec)
    try:
        assert load_dataset("toy_test", split_seed=3) == "splits" and seen == {"root": None, "split_seed": 3}
        assert spec.option_default("crop_size") == 8 and spec.description_key({}) == "toy-test"
        with pytest.raises(ValueError, match="unknown option.*'per_class'"):
            load_dataset("toy-test", per_class=3)
        with pytest.raises(ValueError, match="registered already"):
            register_dataset(spec)
        with pytest.raises(ValueError, match="declares no data identity"):
            spec.data_identity({})
    finally:
        DATASET_SPECS.pop("toy-test")


def test_rooted_specs_key_descriptions_by_the_folder_and_read_their_own(tmp_path):
    folder = dataset_spec("folder")
    root = tmp_path / "Birds"
    root.mkdir()
    assert folder.description_key({"root": str(root)}) == "Birds"
    assert folder.description_key({"root": str(root), "name": "CUB"}) == "CUB"
    assert not folder.ships_descriptions({"root": str(root)})
    (root / folder.own_descriptions_file).write_text("{}")
    assert folder.ships_descriptions({"root": str(root)})
    assert dataset_spec("official").ships_descriptions({}) and not dataset_spec("fashion-mnist").ships_descriptions({})
    with pytest.raises(ValueError, match="needs dataset_options"):
        folder.description_key({})


def test_a_registered_teacher_is_built_through_its_spec():
    spec = TeacherSpec(name="toy-teacher", factory="collections:OrderedDict", label="toy")
    register_teacher(spec)
    try:
        assert teacher_spec("TOY-teacher").cls().__name__ == "OrderedDict"
        with pytest.raises(ValueError, match="registered already"):
            register_teacher(spec)
    finally:
        TEACHER_SPECS.pop("toy-teacher")
