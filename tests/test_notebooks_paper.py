"""The chapter notebooks under the paper profile on tiny stand-ins (an official-format data root, a
tiny open_clip checkpoint), each executed with papermill. A file of its own so that ``make test``'s
workers (``--dist loadfile``) share the notebook executions evenly."""
from __future__ import annotations

import json

import pytest

from test_notebooks import ORDER, execute, outputs

@pytest.fixture(scope="module")
def paper_world(tmp_path_factory) -> dict:
    """A tiny stand-in for the paper profile: an official-format data root named like one of the
    paper's datasets, and a tiny open_clip checkpoint loaded through the user's code path."""
    from data_fixtures import write_tiny_official_root
    from model_fixtures import make_tiny_openclip_checkpoint, tiny_openclip_model

    base = tmp_path_factory.mktemp("paper")
    root = write_tiny_official_root(base / "data" / "Flower102", n_seen=3, n_unseen=3, per_class=8, size=40)
    ckpt = make_tiny_openclip_checkpoint(base / "tiny.pt")
    # the per-image caption file the paper profile's L_cap reads (keys: the listed train paths)
    from vldlib.data import load_dataset

    train_keys = load_dataset("official", root=str(root), load_size=40, crop_size=32).train.keys
    (root / "captions.json").write_text(json.dumps({k: f"a small photo, number {i}" for i, k in enumerate(train_keys)}))
    overrides = {
        "teacher_options": {"model": tiny_openclip_model(ckpt), "pretrained": str(ckpt), "device": "cpu"},
        "dataset_options": {"load_size": 40, "crop_size": 32},
        "device": "cpu", "num_workers": 0, "batch_size": 8, "eval_batch_size": 16,
    }
    (base / "results").mkdir()
    (base / "cache").mkdir()
    return {"params": {"profile": "paper", "smoke": True, "dataset_root": str(root), "overrides": overrides,
                       "results_dir": str(base / "results"), "cache_dir": str(base / "cache")},
            "results": base / "results"}


PAPER_EXTRA = {
    "main_results": {"methods": ["cls", "cls+imcst+vlprox(+mse)"]},
    "prompt_detail": {"variants": ["none", "main"]},  # the other prompt variants need an LLM cache
    "language_enrichment": {"enrichments": ["no_enrichment", "aux_captions", "semantics+prompt"], "n_ctx": 4},
    "field_losses": {"losses": ["cls", "cls+imcst", "cls+crd", "cls+rkd"]},
    # the paper's ViT-B/32 (88M parameters) would take ~2 min on a CPU; vit_b_32 itself is tested in
    # test_students.py, and its choice on photos in test_vit_student_defaults_to_vit_b_32_on_photos
    "vit_student": {"vit_model": "vit_tiny"},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", ORDER)
def test_notebook_runs_with_paper_profile_on_tiny_stand_ins(name, paper_world, tmp_path):
    """profile="paper": official data through vldlib.data, the openclip teacher, ResNet18 students."""
    nb = execute(name, {**paper_world["params"], **PAPER_EXTRA.get(name, {})}, tmp_path)
    outs = outputs(nb)
    assert not [o for o in outs if o["output_type"] == "error"]
    text = "".join("".join(o.get("text", "")) for o in outs if o.get("name") == "stdout")
    assert "profile paper" in text and "official" in text, text[:500]
    html = "".join("".join(o["data"]["text/html"]) for o in outs if "text/html" in o.get("data", {}))
    from vldlib.study.chapters import chapter
    from vldlib.study.reference import paper_table

    tables = chapter(name).paper_tables
    if any("Flower102" in set(paper_table(t)["dataset"]) for t in tables):
        assert "Flower102" in html, "the paper's Flower102 column is shown beside ours"
    elif tables:  # the paper's table has no Flower102 column: all of its datasets are shown
        assert "paper (" in html, "the paper's columns are shown beside ours"
    if name != "teacher_zero_shot":
        records = [json.loads(p.read_text()) for p in paper_world["results"].glob("*/record.json")]
        students = {r["config"]["student"] for r in records}
        assert records and "resnet18" in students and students <= {"resnet18", "vit_tiny"}, students
        assert {r["config"]["teacher"] for r in records} == {"openclip"}
