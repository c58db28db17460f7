"""The jupytext pairing JupyterLab users rely on: a Jupyter server opens ``notebooks/*.py`` as notebooks.

A ``jupyter server`` (with jupytext's contents manager, enabled by the jupytext install) runs on
127.0.0.1 with a token, rooted at a temporary copy of ``notebooks/``, ``book/summary.py`` and
``pyproject.toml`` (its ``[tool.jupytext]`` section). Through the REST contents API each ``.py``
must come back as a notebook model whose cells match ``jupytext.read`` and whose first code cell
is tagged ``parameters``; saving a model back must keep the file a percent-format ``.py`` with the
tag (what happens when a user edits a notebook in JupyterLab).
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import pytest

REPO = Path(__file__).resolve().parents[1]
requests = pytest.importorskip("requests")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sources() -> list[Path]:
    return sorted((REPO / "notebooks").glob("*.py")) + [REPO / "book" / "summary.py"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("jupyter_root")
    (root / "notebooks").mkdir()
    (root / "book").mkdir()
    for path in _sources():
        shutil.copy2(path, root / path.relative_to(REPO))
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    token, port = secrets.token_hex(16), _free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(root / ".jupyter-config"),
           "JUPYTER_RUNTIME_DIR": str(root / ".jupyter-runtime"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "jupyter_server", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI containers run as root
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    session = requests.Session()
    session.headers["Authorization"] = f"token {token}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if session.get(f"{base}/api/status", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"jupyter server did not start:\n{(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield base, session, root
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_the_server_needs_the_token(server):
    base, _, _ = server
    assert requests.get(f"{base}/api/contents/notebooks", timeout=10).status_code == 403


@pytest.mark.parametrize("path", [str(p.relative_to(REPO)) for p in _sources()])
def test_each_py_notebook_opens_as_a_notebook(server, path):
    base, session, _ = server
    r = session.get(f"{base}/api/contents/{path}", params={"type": "notebook", "content": 1}, timeout=60)
    assert r.status_code == 200, r.text[:500]
    model = r.json()
    assert model["type"] == "notebook" and model["format"] == "json"
    cells = model["content"]["cells"]
    expected = jupytext.read(REPO / path).cells
    assert [c["cell_type"] for c in cells] == [c.cell_type for c in expected]
    assert ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells] == \
        [c.source for c in expected]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert "parameters" in code[0]["metadata"].get("tags", []), f"{path}: first code cell not tagged parameters"
    assert "profile" in code[0]["source"] and "results_dir" in code[0]["source"]


def test_saving_from_jupyterlab_keeps_a_percent_py_with_the_parameters_tag(server):
    base, session, root = server
    src = _sources()[0].relative_to(REPO)
    model = session.get(f"{base}/api/contents/{src}", params={"type": "notebook", "content": 1}, timeout=60).json()
    model["content"]["cells"].append({"cell_type": "markdown", "metadata": {}, "source": "An added note."})
    copy = "notebooks/saved_copy.py"
    r = session.put(f"{base}/api/contents/{copy}", json={"type": "notebook", "format": "json",
                                                            "content": model["content"]}, timeout=60)
    assert r.status_code in (200, 201), r.text[:500]
    text = (root / copy).read_text(encoding="utf-8")
    assert '# %% tags=["parameters"]' in text and "# An added note." in text
    assert "format_name: percent" in text
    assert not (root / "notebooks" / "saved_copy.ipynb").exists()  # no .ipynb twin written
    again = jupytext.read(root / copy)
    assert [c.source for c in again.cells[:-1]] == [c.source for c in jupytext.read(REPO / src).cells]
