"""Faults of ``vldlib describe`` (``vldlib.text.llm``, ``vldlib.cli.describe``): an LLM server that
never answers is retried, said and stopped; an unwritable cache is one line. The server is a local
127.0.0.1 one (``tests/llm_server.py``)."""
from __future__ import annotations

import pytest


def test_describe_server_that_never_answers_says_each_retry_and_stops(tmp_path, monkeypatch):
    import sys
    import time
    from pathlib import Path

    from vldlib.text.llm import LLMResponseError, generate_descriptions

    sys.path.insert(0, str(Path(__file__).parent))
    from llm_server import ChatServer, completion

    monkeypatch.setenv("OPENAI_API_KEY", "k")
    lines: list[str] = []
    with ChatServer(respond=lambda body: (time.sleep(1), completion(body, ["late."]))[1]) as srv:
        t0 = time.perf_counter()
        with pytest.raises(LLMResponseError, match=r"never answered for class 'Bag': 3 attempts of 0.3 s"):
            generate_descriptions(["Bag"], dataset="toy", model="m", base_url=srv.base_url,
                                  out=tmp_path / "c.json", timeout=0.3, max_retries=2, base_delay=0.0,
                                  progress=False, log=lines.append)
        assert time.perf_counter() - t0 < 10
    assert [line.split(" after")[0] for line in lines] == [
        "describe: class 'Bag': retrying (1/2)", "describe: class 'Bag': retrying (2/2)"]
    assert all("no answer within 0.3 s" in line for line in lines)


def test_describe_cli_never_answering_server_is_exit_2_with_retry_lines(tmp_path, monkeypatch, capsys):
    import sys
    import time
    from pathlib import Path

    from vldlib.cli.describe import main

    sys.path.insert(0, str(Path(__file__).parent))
    from llm_server import ChatServer, completion

    monkeypatch.setenv("OPENAI_API_KEY", "k")
    with ChatServer(respond=lambda body: (time.sleep(1), completion(body, ["late."]))[1]) as srv:
        code = main(["--dataset", "toy", "--classes", "Bag", "--model", "m", "--base-url", srv.base_url,
                     "--out", str(tmp_path / "c.json"), "--timeout", "0.3", "--max-retries", "1",
                     "--base-delay", "0", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 2 and "retrying (1/1)" in err[0]
    assert err[1].startswith("vldlib describe: error:") and "never answered" in err[1]


def test_describe_cli_unwritable_cache_is_one_line(tmp_path, monkeypatch, capsys):
    import sys
    from pathlib import Path

    from vldlib.cli.describe import main

    sys.path.insert(0, str(Path(__file__).parent))
    from llm_server import ChatServer

    monkeypatch.setenv("OPENAI_API_KEY", "k")
    (tmp_path / "file").write_text("x")
    with ChatServer() as srv:
        code = main(["--dataset", "toy", "--classes", "Bag", "--model", "m", "--base-url", srv.base_url,
                     "--out", str(tmp_path / "file" / "c.json"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot write" in err[0] and "file" in err[0], err
