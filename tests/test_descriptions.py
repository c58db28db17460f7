"""Tests of vldlib.text (descriptions, cache, llm, classifier): generation against a real local chat-completions server,
the cache, the official reader, the shipped Fashion-MNIST sets and the class text features."""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llm_server import ChatServer, completion, error, prompt_of  # noqa: E402

from vldlib.cli.describe import main  # noqa: E402
from vldlib.text import cache as describe_cache  # noqa: E402
from vldlib.text.descriptions import (  # noqa: E402
    FASHION_MNIST_CLASSES,
    PROMPTS,
    DescriptionsUnavailable,
    LLMResponseError,
    class_text_features,
    class_texts,
    descriptor_scores,
    generate_descriptions,
    load_descriptions,
    read_official,
    shipped_descriptions,
)

REPO = Path(__file__).resolve().parents[1]
PAPER_MD = REPO.parent / "shared" / "reference" / "paper.md"
OFFICIAL_SIZES = {"CaltechBirds": 200, "Flower102": 102, "Food101": 101, "SUN397": 397,
                  "StanfordCars": 196, "tiered-ImageNet": 1000}
ONE_SENTENCE = re.compile(r"^[A-Z][^\n]*[^.!?\s][.!?]$")


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("VLD_CACHE", str(tmp_path / "cache"))


def gen(server: ChatServer, classes, out, **kw):
    kw.setdefault("sleep", lambda s: None)
    kw.setdefault("progress", False)
    kw.setdefault("timeout", 10.0)
    return generate_descriptions(classes, dataset=kw.pop("dataset", "toy"),
                                 model=kw.pop("model", "test-model"), base_url=server.base_url,
                                 out=out, **kw)


# ------------------------------------------------------------------------------- prompts
def test_prompts_are_the_papers_exact_wordings():
    assert set(PROMPTS) == {"main", "succinct", "detailed", "distinct"}
    assert all(p.count("{cls}") == 1 for p in PROMPTS.values())
    if not PAPER_MD.is_file():
        pytest.skip(f"paper reference absent: {PAPER_MD}")
    text = " ".join(PAPER_MD.read_text(encoding="utf-8").split())
    for variant, prompt in PROMPTS.items():
        assert f'"{prompt}"' in text, variant


def test_resolve_prompt_custom_and_unknown():
    key, tpl = describe_cache.resolve_prompt("Describe {cls} in five words.")
    assert key == "custom-" + hashlib.sha1(tpl.encode()).hexdigest()[:8]
    assert describe_cache.resolve_prompt("distinct") == ("distinct", PROMPTS["distinct"])
    with pytest.raises(ValueError, match=r"\{cls\}"):
        describe_cache.resolve_prompt("Describe a thing.")


# ------------------------------------------------------------------------------- the server
def test_server_binds_loopback_and_stops_by_itself():
    srv = ChatServer(lifetime=0.3).__enter__()
    host, port = srv._server.server_address
    assert host == "127.0.0.1"
    deadline = time.monotonic() + 20  # it stops after 0.3 s; a loaded machine may take longer
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            break  # refused: it stopped by itself
        assert time.monotonic() < deadline, "the server did not stop by itself within 20 s"
        time.sleep(0.1)


# ------------------------------------------------------------------------------- generation
def test_generate_success_writes_cache_with_provenance(tmp_path):
    out = tmp_path / "d.json"
    with ChatServer() as srv:
        got = gen(srv, ["Trouser", "Bag"], out, n=2, temperature=0.3, prompt="succinct")
        bodies = list(srv.requests)
        auth = {h.get("authorization") or h.get("Authorization") for h in srv.headers}
        base_url = srv.base_url
    assert len(bodies) == 2 and auth == {"Bearer test-key"}
    for body in bodies:
        assert body["model"] == "test-model" and body["n"] == 2 and body["temperature"] == 0.3
    filled = {name: describe_cache.fill_prompt(PROMPTS["succinct"], name) for name in got}
    assert {prompt_of(b) for b in bodies} == set(filled.values())
    assert got == {n: [f"Answer 0 to: {filled[n]}", f"Answer 1 to: {filled[n]}"]
                   for n in ["Trouser", "Bag"]}
    assert list(got) == ["Trouser", "Bag"]
    data = json.loads(out.read_text())
    assert data["format"] == "vldbook-descriptions/1" and data["variant"] == "succinct"
    assert data["prompt"] == PROMPTS["succinct"] and data["classes"] == ["Trouser", "Bag"]
    prov = data["provenance"]["Bag"]
    assert prov["prompt"] == filled["Bag"] and prov["model"] == "test-model"
    assert prov["temperature"] == 0.3 and prov["base_url"] == base_url
    import openai

    assert prov["generator"] == f"vldlib 0.1.0 / openai {openai.__version__}"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", prov["time"])
    assert not list(tmp_path.glob("*.tmp"))  # atomic write left no temp file


def test_default_cache_location_under_vld_cache(tmp_path):
    with ChatServer() as srv:
        generate_descriptions(["Bag"], dataset="fashion-mnist", model="org/m:1",
                              base_url=srv.base_url, progress=False)
    path = tmp_path / "cache" / "descriptions" / "fashion-mnist_main_org--m-1.json"
    assert path.is_file()
    assert load_descriptions("fashion-mnist", "main", model="org/m:1")["Bag"][0].startswith(
        "Answer 0 to: Use a single sentence")


def test_429_then_success_respects_retry_after_and_backoff(tmp_path):
    sleeps: list[float] = []
    plan = [error(429, "slow down", {"Retry-After": "0.25"}), error(503, "busy"), None]
    with ChatServer(plan=plan) as srv:
        got = gen(srv, ["Coat"], tmp_path / "d.json", sleep=sleeps.append, base_delay=0.01)
        n_requests = len(srv.requests)
    assert n_requests == 3
    assert sleeps == [0.25, 0.02]  # Retry-After, then base_delay * 2**1
    assert got["Coat"][0].startswith("Answer 0 to:")


def test_retry_after_ms_header_is_used(tmp_path):
    sleeps: list[float] = []
    with ChatServer(plan=[error(429, headers={"retry-after-ms": "1500"})]) as srv:
        gen(srv, ["Coat"], tmp_path / "d.json", sleep=sleeps.append)
    assert sleeps == [1.5]


def test_repeated_500_ends_in_clear_error(tmp_path):
    sleeps: list[float] = []
    with ChatServer(respond=lambda body: error(500, "boom")) as srv:
        with pytest.raises(LLMResponseError, match=r"'Dress'.*after 3 attempts.*HTTP 500"):
            gen(srv, ["Dress"], tmp_path / "d.json", max_retries=2, base_delay=0.5,
                max_delay=0.75, sleep=sleeps.append)
        assert len(srv.requests) == 3
    assert sleeps == [0.5, 0.75]  # 0.5 * 2**0, min(0.75, 0.5 * 2**1)
    assert not (tmp_path / "d.json").exists()


def test_client_error_is_not_retried(tmp_path):
    with ChatServer(respond=lambda body: error(404, "model not found")) as srv:
        with pytest.raises(LLMResponseError, match=r"HTTP 404.*model not found"):
            gen(srv, ["Dress"], tmp_path / "d.json")
        assert len(srv.requests) == 1


@pytest.mark.parametrize("body,why", [
    (b"<html>oops</html>", "not JSON"),
    (b'{"choices": []}', "no 'choices'"),
    (b'{"choices": [{"message": {"content": null}}]}', "no text"),
    (b'{"object": "error", "message": "quota"}', "no 'choices'"),
])
def test_malformed_body_names_class_and_quotes_body(tmp_path, body, why):
    plan = [(200, {"Content-Type": "application/json"}, body)]
    with ChatServer(plan=plan) as srv:
        with pytest.raises(LLMResponseError) as info:
            gen(srv, ["Sandal"], tmp_path / "d.json")
    msg = str(info.value)
    assert "'Sandal'" in msg and why in msg and repr(body.decode()[:20])[1:-1] in msg


def test_finished_classes_are_saved_when_a_later_one_fails(tmp_path):
    out = tmp_path / "d.json"
    plan = [None] + [error(500)] * 10
    with ChatServer(plan=plan) as srv:
        with pytest.raises(LLMResponseError, match="'Shirt'"):
            gen(srv, ["Sneaker", "Shirt", "Bag"], out, concurrency=1, max_retries=1)
        assert len(srv.requests) == 3  # Sneaker, Shirt twice; Bag never started
    data = json.loads(out.read_text())
    assert list(data["descriptions"]) == ["Sneaker"]
    assert data["classes"] == ["Sneaker", "Shirt", "Bag"]


def test_resume_requests_only_missing_classes(tmp_path):
    out = tmp_path / "d.json"
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress"]
    with ChatServer() as srv:
        first = gen(srv, names[:2], out)
    with ChatServer() as srv:
        second = gen(srv, names, out, concurrency=3)
        asked = sorted(srv.prompts())
    assert asked == sorted(describe_cache.fill_prompt(PROMPTS["main"], c) for c in names[2:])
    assert {k: second[k] for k in names[:2]} == first
    assert list(second) == names
    assert json.loads(out.read_text())["classes"] == names


def test_complete_cache_makes_no_request_and_needs_no_key(tmp_path, monkeypatch):
    out = tmp_path / "d.json"
    with ChatServer() as srv:
        first = gen(srv, ["Bag", "Coat"], out, n=2)
    monkeypatch.delenv("OPENAI_API_KEY")
    with ChatServer() as srv:
        again = gen(srv, ["Coat", "Bag"], out, n=2)
        assert srv.requests == []
    assert again == {"Coat": first["Coat"], "Bag": first["Bag"]}
    assert generate_descriptions(["Bag"], dataset="toy", model="test-model", out=out, n=1,
                                 progress=False) == {"Bag": first["Bag"][:1]}


def test_more_descriptions_than_the_server_returns_per_request(tmp_path):
    with ChatServer(max_choices=1) as srv:
        got = gen(srv, ["Bag"], tmp_path / "d.json", n=3)
        assert len(srv.requests) == 3
    assert len(got["Bag"]) == 3


def test_concurrency_is_bounded(tmp_path):
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def slow(body):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return completion(body, ["A sentence."])

    with ChatServer(respond=slow) as srv:
        gen(srv, [f"class {i}" for i in range(8)], tmp_path / "d.json", concurrency=2)
        assert len(srv.requests) == 8
    assert 1 <= state["max"] <= 2


def test_missing_key_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    out = tmp_path / "d.json"
    with pytest.raises(DescriptionsUnavailable) as info:
        generate_descriptions(["Bag", "Coat"], dataset="fashion-mnist", model="m", out=out,
                              api_key_env="MY_LLM_KEY", progress=False)
    msg = str(info.value)
    for needle in ["'Bag'", "'Coat'", "MY_LLM_KEY", "--base-url", str(out), '"descriptions"']:
        assert needle in msg


def test_prompt_mismatch_with_existing_cache(tmp_path):
    out = tmp_path / "d.json"
    with ChatServer() as srv:
        gen(srv, ["Bag"], out, prompt="main")
        with pytest.raises(ValueError, match="different prompt"):
            gen(srv, ["Bag"], out, prompt="Describe {cls}.")


def test_custom_prompt_fills_cls_and_gets_its_own_cache(tmp_path):
    prompt = "Describe the silhouette of {cls} in one sentence."
    with ChatServer() as srv:
        generate_descriptions(["Sneaker"], dataset="fm", model="m", prompt=prompt,
                              base_url=srv.base_url, progress=False)
        assert srv.prompts() == ["Describe the silhouette of Sneaker in one sentence."]
    key = "custom-" + hashlib.sha1(prompt.encode()).hexdigest()[:8]
    assert (tmp_path / "cache" / "descriptions" / f"fm_{key}_m.json").is_file()


def test_bad_arguments():
    with pytest.raises(ValueError, match="n"):
        generate_descriptions(["a"], dataset="d", model="m", n=0)
    with pytest.raises(ValueError, match="class names"):
        generate_descriptions([], dataset="d", model="m")


def test_hand_written_cache_is_accepted(tmp_path):
    path = tmp_path / "cache" / "descriptions" / "mine_main_by-hand.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"descriptions": {"b": ["B."], "a": ["A.", "A2."]}}))
    assert load_descriptions("mine") == {"b": ["B."], "a": ["A.", "A2."]}
    path.write_text(json.dumps({"descriptions": {"b": []}}))
    with pytest.raises(ValueError, match="non-empty list"):
        load_descriptions("mine")


def test_load_descriptions_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m vldlib describe"):
        load_descriptions("CaltechBirds", "main", model="m")
    with ChatServer(plan=[None, error(400)]) as srv:
        with pytest.raises(LLMResponseError):
            generate_descriptions(["x", "y"], dataset="toy", model="m", base_url=srv.base_url,
                                  concurrency=1, progress=False)
    with pytest.raises(DescriptionsUnavailable, match="incomplete.*'y'"):
        load_descriptions("toy", "main", model="m")


# ------------------------------------------------------------------------------- official files
def test_read_official_six_datasets(official_data):
    for name, size in OFFICIAL_SIZES.items():
        folder = official_data / name
        got = read_official(folder)
        lines = [x for x in (folder / "chatgpt.txt").read_text(encoding="utf-8").splitlines()]
        rows = (folder / "label2text.txt").read_text().split("\n")
        assert len(got) == size, name
        assert all(len(v) == 1 and v[0].strip() for v in got.values()), name
        names = list(got)
        assert names[0] == rows[0].split()[2].replace("_", " ")  # label order, natural name
        assert got[names[0]][0] == lines[0].strip()
        assert got[names[-1]][0] == lines[size - 1].strip()
        assert all("_" not in n for n in names if "(" not in n)
    tiered = read_official(official_data / "tiered-ImageNet")
    assert "crane (n02012849)" in tiered and "crane (n03126707)" in tiered


def test_read_official_mismatch_and_missing(tmp_path):
    (tmp_path / "label2text.txt").write_text("001.A_b 1 A_b\n002.C 2 C\n")
    (tmp_path / "chatgpt.txt").write_text("Only one line.\n")
    with pytest.raises(ValueError, match="1 lines but .* 2 classes"):
        read_official(tmp_path)
    (tmp_path / "chatgpt.txt").write_text("First.\r\nSecond.")
    assert read_official(tmp_path) == {"A b": ["First."], "C": ["Second."]}
    (tmp_path / "label2text.txt").write_text("001.A_b 1\n")
    with pytest.raises(ValueError, match="3 space-separated tokens"):
        read_official(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_official(tmp_path / "nowhere")
    (tmp_path / "label2text.txt").unlink()
    with pytest.raises(FileNotFoundError, match="label2text.txt not found"):
        read_official(tmp_path)


# ------------------------------------------------------------------------------- shipped sets
@pytest.mark.parametrize("variant", ["main", "succinct", "detailed", "distinct"])
def test_shipped_sets_schema(variant):
    cache = shipped_descriptions(variant)
    assert cache.dataset == "fashion-mnist" and cache.variant == variant
    assert cache.prompt == PROMPTS[variant] and cache.model == "none (hand-written)"
    d = load_descriptions("fashion-mnist", variant)
    assert list(d) == list(FASHION_MNIST_CLASSES)
    for name, sentences in d.items():
        assert len(sentences) == 5 and len(set(sentences)) == 5, name
        for s in sentences:
            assert ONE_SENTENCE.match(s), s
            assert not re.search(r"[.!?]\s+[A-Z]", s), f"more than one sentence: {s}"
        prov = cache.provenance[name]
        assert prov["prompt"] == PROMPTS[variant].replace("{cls}", name)
        assert prov["model"] == "none (hand-written)"
        assert "not generated by ChatGPT" in prov["generator"]


def test_shipped_sets_follow_their_prompts():
    words = {v: [len(s.split()) for ss in load_descriptions("fashion-mnist", v).values()
                 for s in ss] for v in PROMPTS}
    assert max(words["succinct"]) < min(words["main"])  # "broadly ... not too much details"
    distinct = [s for ss in load_descriptions("fashion-mnist", "distinct").values() for s in ss]
    assert sum(bool(re.search(r"distinct|distinguish|unique|unlike|stands? out|recognised", s, re.I))
               for s in distinct) == len(distinct)


def test_shipped_sets_fit_clip_context():
    open_clip = pytest.importorskip("open_clip")
    tok = open_clip.get_tokenizer("ViT-L-14")
    for v in PROMPTS:
        d = load_descriptions("fashion-mnist", v)
        ids = tok([t for ts in class_texts(list(d), d) for t in ts])
        assert int((ids != 0).sum(1).max()) < 77, v  # no truncation of the enriched texts


# ------------------------------------------------------------------------------- text features
class FakeTeacher:
    """encode_text: a deterministic pseudo-random vector per string (seeded by its hash)."""

    embed_dim = 8

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode_text(self, texts):
        self.calls.append(list(texts))
        rows = []
        for t in texts:
            seed = int(hashlib.sha1(t.encode()).hexdigest()[:8], 16)
            rows.append(torch.randn(self.embed_dim, generator=torch.Generator().manual_seed(seed)))
        return torch.stack(rows) * 3.0


DESCS = {"Bag": ["A box.", "A pouch.", "A tote."], "Coat": ["Long.", "Warm.", "Buttoned."]}


def test_class_texts_plain_and_enriched():
    assert class_texts(["Bag", "Coat"]) == [["a photo of Bag"], ["a photo of Coat"]]
    assert class_texts(["Bag"], DESCS)[0] == [
        "a photo of Bag . A box.", "a photo of Bag . A pouch.", "a photo of Bag . A tote."]
    assert class_texts(["Coat"], DESCS, enriched_template="{name}: {description}")[0][1] == \
        "Coat: Warm."
    assert class_texts(["Coat"], template="a photo of a {name}") == [["a photo of a Coat"]]
    with pytest.raises(ValueError, match="no descriptions.*Dress"):
        class_texts(["Bag", "Dress"], DESCS)
    with pytest.raises(ValueError, match="only use the fields"):
        class_texts(["Bag"], template="a photo of {name} {c}")


def test_class_text_features_modes():
    t = FakeTeacher()
    names = ["Bag", "Coat"]
    first = class_text_features(t, names, DESCS, mode="first")
    assert first.shape == (2, 8)
    assert torch.allclose(first, t.encode_text(["a photo of Bag . A box.",
                                                "a photo of Coat . Long."]))
    avg = class_text_features(t, names, DESCS, mode="average")
    raw = t.encode_text([s for ss in class_texts(names, DESCS) for s in ss]).reshape(2, 3, 8)
    expect = torch.nn.functional.normalize(
        torch.nn.functional.normalize(raw, dim=-1).mean(1), dim=-1)
    assert avg.shape == (2, 8) and torch.allclose(avg, expect, atol=1e-6)
    assert not torch.allclose(avg, torch.nn.functional.normalize(first, dim=-1))
    per = class_text_features(t, names, DESCS, mode="per_descriptor")
    assert per.shape == (2, 3, 8)
    assert torch.allclose(per, torch.nn.functional.normalize(raw, dim=-1), atol=1e-6)
    chunked = class_text_features(t, names, DESCS, mode="average", batch_size=2)
    assert torch.allclose(chunked, avg, atol=1e-6)
    plain = class_text_features(t, names, None, mode="average")
    assert torch.allclose(plain, torch.nn.functional.normalize(
        t.encode_text(["a photo of Bag", "a photo of Coat"]), dim=-1), atol=1e-6)
    with pytest.raises(ValueError, match="same number"):
        class_text_features(t, names, {"Bag": ["x"], "Coat": ["y", "z"]}, mode="per_descriptor")
    with pytest.raises(ValueError, match="mode"):
        class_text_features(t, names, DESCS, mode="sum")


def test_descriptor_scores_is_mean_cosine():
    g = torch.Generator().manual_seed(0)
    img = torch.randn(5, 8, generator=g)
    per = torch.randn(3, 4, 8, generator=g)
    scores = descriptor_scores(img, per)
    assert scores.shape == (5, 3)
    cos = torch.nn.functional.cosine_similarity
    for n in range(5):
        for c in range(3):
            want = torch.stack([cos(img[n], per[c, m], dim=0) for m in range(4)]).mean()
            assert torch.isclose(scores[n, c], want, atol=1e-6)
    with pytest.raises(ValueError, match="dimensions"):
        descriptor_scores(img, torch.randn(3, 4, 7))


# ------------------------------------------------------------------------------- command line
def test_cli_end_to_end(tmp_path, capsys):
    folder = tmp_path / "MyData"
    folder.mkdir()
    (folder / "label2text.txt").write_text("a.Red_fox 1 Red_fox\nb.Owl 2 Owl\nc.Ant 3 Ant\n")
    out = tmp_path / "out.json"
    with ChatServer() as srv:
        argv = ["--dataset", "mydata", "--prompt", "detailed", "--model", "m",
                "--base-url", srv.base_url, "--out", str(out), "--n", "2",
                "--temperature", "0.5", "--classes-from", str(folder), "--concurrency", "2",
                "--no-progress"]
        assert main(argv) == 0
        assert len(srv.requests) == 3
        assert main(argv) == 0  # complete cache: nothing requested
        assert len(srv.requests) == 3
    assert "3 classes, 6 descriptions" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["classes"] == ["Red fox", "Owl", "Ant"] and data["variant"] == "detailed"
    assert data["provenance"]["Owl"]["temperature"] == 0.5


def test_cli_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    assert main(["--dataset", "fashion-mnist", "--model", "m", "--out",
                 str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "10 class(es)" in err and "OPENAI_API_KEY" in err
    assert main(["--dataset", "CUB", "--model", "m"]) == 2
    assert "--classes-from" in capsys.readouterr().err


def test_python_m_vldlib_describe(tmp_path):
    out = tmp_path / "fm.json"
    with ChatServer(lifetime=300) as srv:  # the child's cold start (torch, openai) may be slow
        proc = subprocess.run(
            [sys.executable, "-m", "vldlib", "describe", "--dataset", "fashion-mnist",
             "--prompt", "distinct", "--model", "m", "--base-url", srv.base_url,
             "--out", str(out), "--concurrency", "3", "--no-progress"],
            capture_output=True, text=True, timeout=120, cwd=REPO,
            env={**os.environ, "OPENAI_API_KEY": "", "HF_HUB_OFFLINE": "1"})
        assert proc.returncode == 0, proc.stderr
        assert len(srv.requests) == 10
    data = json.loads(out.read_text())
    assert data["classes"] == list(FASHION_MNIST_CLASSES)
    assert all(len(v) == 1 for v in data["descriptions"].values())


# ------------------------------------------------------------------------------- issue 19: runs sharing a cache
def _run_in_thread(target, *args, **kwargs):
    box: dict = {}

    def run():
        try:
            box["result"] = target(*args, **kwargs)
        except BaseException as err:  # noqa: BLE001 - handed to the test
            box["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_two_runs_filling_one_cache_keep_each_others_descriptions(tmp_path):
    """Both runs read the (empty) file before either writes; the file ends with every class of
    both, and the class both described keeps the first set, the other saved under alternates."""
    out = tmp_path / "d.json"
    gate = threading.Barrier(2, timeout=20)
    lock = threading.Lock()
    count = [0]
    firsts = {describe_cache.fill_prompt(PROMPTS["main"], c) for c in ("a", "c")}

    def respond(body):
        if prompt_of(body) in firsts:
            gate.wait()  # each run has read the file and sent its first request
        with lock:
            count[0] += 1
            k = count[0]
        return completion(body, [f"Sentence number {k}."])

    lines: list[str] = []
    with ChatServer(respond=respond) as srv:
        runs = [_run_in_thread(gen, srv, classes, out, concurrency=1, log=lines.append)
                for classes in (["a", "b", "shared"], ["c", "d", "shared"])]
        for thread, _ in runs:
            thread.join(60)
        assert len(srv.requests) == 6
    boxes = [box for _, box in runs]
    assert all("error" not in box for box in boxes), boxes
    data = json.loads(out.read_text())
    assert set(data["descriptions"]) == {"a", "b", "c", "d", "shared"}
    assert set(data["classes"]) == {"a", "b", "c", "d", "shared"}
    kept = data["descriptions"]["shared"]
    [aside] = data["alternates"]["shared"]
    assert len(kept) == 1 and len(aside["descriptions"]) == 1 and kept != aside["descriptions"]
    assert aside["provenance"]["model"] == "test-model"
    assert all(box["result"]["shared"] == kept for box in boxes)  # both runs report what is on disk
    assert len([line for line in lines if "alternates" in line]) == 1
    assert describe_cache.read_cache(out).alternates["shared"][0]["descriptions"] == aside["descriptions"]


def test_cache_lock_held_too_long_is_one_line(tmp_path, monkeypatch, capsys):
    import fcntl

    from vldlib.cli import describe as describe_cli

    out = tmp_path / "d.json"
    with open(tmp_path / "d.json.lock", "a") as held, ChatServer() as srv:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        t0 = time.monotonic()
        with pytest.raises(describe_cache.CacheBusy, match=r"d\.json\.lock for over 0\.3 s") as info:
            gen(srv, ["Bag"], out, lock_timeout=0.3)
        assert time.monotonic() - t0 < 10
    assert "\n" not in str(info.value) and not out.exists()
    monkeypatch.setattr(describe_cli, "generate_descriptions",
                        lambda *a, **k: (_ for _ in ()).throw(describe_cache.CacheBusy("busy lock")))
    assert describe_cli.main(["--dataset", "toy", "--classes", "Bag", "--model", "m", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == "vldlib describe: error: busy lock"


# ------------------------------------------------------------------------------- issue 19: slow and unwilling servers
@pytest.mark.parametrize("drip_from", ["status", "body"])
def test_dripping_server_is_bounded_by_the_request_deadline(tmp_path, capsys, drip_from):
    """One byte every 0.5 s never trips a per-read timeout; the whole request must end at --timeout."""
    with ChatServer(drip=0.5, drip_from=drip_from, lifetime=20) as srv:
        url = srv.base_url
        t0 = time.monotonic()
        code = main(["--dataset", "toy", "--classes", "Bag", "--model", "slow-model", "--base-url", srv.base_url,
                     "--out", str(tmp_path / "d.json"), "--timeout", "1.5", "--max-retries", "1",
                     "--base-delay", "0", "--no-progress"])
        took = time.monotonic() - t0
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and took < 9, took
    assert len(err) == 2 and "retrying (1/1)" in err[0] and "1.5 s" in err[0]
    assert err[1].startswith(f"vldlib describe: error: {url} never answered for class 'Bag'")
    assert "'slow-model'" in err[1] and "--timeout" in err[1]


@pytest.mark.parametrize("module", ["httpx", "httpx2"])
def test_deadline_transport_of_either_http_library(module):
    """openai 1.x sends through httpx, later versions through its fork httpx2: both get the deadline."""
    from vldlib.text.deadline import _transport_class

    http = pytest.importorskip(module)
    with ChatServer(drip=0.2, drip_from="body", lifetime=20) as srv:
        client = http.Client(transport=_transport_class(http)(1.0), timeout=5.0)
        t0 = time.monotonic()
        with pytest.raises(http.ReadTimeout, match="no complete answer within 1 s"):
            client.post(srv.base_url + "/chat/completions", json={"model": "m", "messages": [
                {"role": "user", "content": "hi"}]})
        assert time.monotonic() - t0 < 4
        client.close()
        fast = http.Client(transport=_transport_class(http)(5.0))
        with ChatServer() as quick:
            reply = fast.post(quick.base_url + "/chat/completions", json={"model": "m", "messages": [
                {"role": "user", "content": "hi"}]})
        fast.close()
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] == "Answer 0 to: hi"


def test_retry_after_beyond_the_cap_is_try_again_later_without_sleeping(tmp_path, capsys):
    from llm_server import retry_after

    sleeps: list[float] = []
    with ChatServer(plan=[retry_after(86400)]) as srv:
        with pytest.raises(LLMResponseError) as info:
            gen(srv, ["Coat"], tmp_path / "d.json", sleep=sleeps.append)
        assert len(srv.requests) == 1
        assert str(info.value) == f"server {srv.base_url} asks to retry after 86400 s; try again later"
    assert sleeps == []
    with ChatServer(plan=[retry_after(60)]) as srv:  # at the cap: waited as asked
        gen(srv, ["Coat"], tmp_path / "e.json", sleep=sleeps.append)
    assert sleeps == [60.0]
    capsys.readouterr()
    with ChatServer(respond=lambda body: retry_after(86400)) as srv:  # the command line: exit 2, no sleep
        thread, box = _run_in_thread(main, ["--dataset", "toy", "--classes", "Coat", "--model", "m",
                                            "--base-url", srv.base_url, "--out", str(tmp_path / "f.json"),
                                            "--no-progress"])
        thread.join(15)
        url = srv.base_url
    assert not thread.is_alive(), "describe slept on Retry-After: 86400"
    assert box.get("result") == 2
    assert capsys.readouterr().err.strip() == \
        f"vldlib describe: error: server {url} asks to retry after 86400 s; try again later"


# ------------------------------------------------------------------------------- issue 19: bounded, clean text
MAX_CHARS = 500  # vldlib.text.clean.MAX_CHARS, the longest description or caption kept


def test_answers_are_cleaned_and_cut_to_length(tmp_path):
    huge = "word " * 4_000_000  # a 20 MB "sentence"
    dirty = ' "A\x00 long\tdress\r\nwith\x07 sleeves.\u200b" '
    answers = {"Dress": dirty, "Bag": huge}

    def respond(body):
        name = next(c for c in answers if describe_cache.fill_prompt(PROMPTS["main"], c) == prompt_of(body))
        return completion(body, [answers[name]])

    out = tmp_path / "d.json"
    with ChatServer(respond=respond) as srv:
        got = gen(srv, ["Dress", "Bag"], out)
    assert got["Dress"] == ["A long dress with sleeves."]
    [bag] = got["Bag"]
    assert MAX_CHARS - 5 <= len(bag) <= MAX_CHARS and bag.endswith("word") and "  " not in bag
    data = json.loads(out.read_text())
    assert data["provenance"]["Bag"]["cut"] == [0] and "cut" not in data["provenance"]["Dress"]
    assert out.stat().st_size < 10_000


def test_an_answer_empty_after_cleaning_is_retried_then_an_error_naming_the_class(tmp_path):
    empty = completion({"model": "test-model"}, ["\x00 \x01\u200b\t"])
    sleeps: list[float] = []
    lines: list[str] = []
    with ChatServer(plan=[empty, None]) as srv:
        got = gen(srv, ["Coat"], tmp_path / "d.json", sleep=sleeps.append, base_delay=0.01, log=lines.append)
        assert len(srv.requests) == 2
    assert got["Coat"][0].startswith("Answer 0 to:") and len(sleeps) == 1
    assert "'Coat'" in lines[0] and "empty" in lines[0]
    with ChatServer(respond=lambda body: empty) as srv:
        with pytest.raises(LLMResponseError, match=r"class 'Coat' after 2 attempts.*empty"):
            gen(srv, ["Coat"], tmp_path / "e.json", max_retries=1, log=lines.append)
    assert not (tmp_path / "e.json").exists()


def test_descriptions_per_class_are_capped(tmp_path):
    with ChatServer() as srv:
        with pytest.raises(ValueError, match="between 1 and 50, got 51"):
            gen(srv, ["Coat"], tmp_path / "d.json", n=51)
        assert srv.requests == []


@pytest.mark.parametrize("bad,why", [
    ("A" * 20_000_000, "is 20000000 characters long"),
    ("A coat\x1b[31m.", "control character U+001B"),
    (["One."] * 51, "51 descriptions"),
])
def test_hand_edited_cache_with_bad_text_is_refused_in_one_line(tmp_path, bad, why):
    path = tmp_path / "cache" / "descriptions" / "mine_main_by-hand.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"descriptions": {"Bag": ["A bag."], "Coat": bad if isinstance(bad, list) else [bad]}}))
    with pytest.raises(ValueError) as info:
        load_descriptions("mine")
    msg = str(info.value)
    assert str(path) in msg and "'Coat'" in msg and why in msg
    assert "\n" not in msg and len(msg) < 400


def test_captions_are_cleaned_and_cut_to_length(tmp_path):
    from vldlib.text.llm_captions import generate_captions

    answers = iter(["a\x00 cat\ton a\x1b mat", "pixel " * 3_000_000])
    out = tmp_path / "caps.json"
    with ChatServer(respond=lambda body: completion(body, [next(answers)])) as srv:
        got = generate_captions(["k0", "k1"], lambda pos: torch.rand(len(pos), 3, 8, 8), model="m", out=out,
                                base_url=srv.base_url, concurrency=1, progress=False, timeout=10.0)
    assert got["k0"] == "a cat on a mat"
    assert len(got["k1"]) <= MAX_CHARS and got["k1"].endswith("pixel")
    prov = json.loads(out.read_text())["provenance"]
    assert prov["k1"]["cut"] is True and "cut" not in prov["k0"]
