"""Faults of the declared notebook parameters (``vldlib.study.parameters``): every notebook
parameter is declared and its default fits; a notebook checks its parameters itself."""
from __future__ import annotations

import pytest


def test_every_notebook_parameter_is_declared_and_its_default_fits():
    from vldlib import book
    from vldlib.study.chapters import CHAPTERS
    from vldlib.study.parameters import PARAMETERS, check_value

    for src in book.notebook_sources():
        for name, default in src.parameters.items():
            assert name in PARAMETERS, f"{src.name}: parameter {name!r} has no declared type"
            check_value(name, default, base=book.ROOT)
        text = src.path.read_text()
        first_code = text.split('tags=["parameters"]', 1)[1].split("\n# %%", 1)[1]
        opens = (f'open_chapter("{src.name}", globals(), page=True)' if src.name in CHAPTERS
                 else "globals().update(check_parameters(globals()))")
        assert opens in first_code.split("\n# %%", 1)[0], src.name


def test_notebook_parameters_checked_in_the_notebook_too():
    from vldlib.study.parameters import ParameterError, check_parameters

    with pytest.raises(ParameterError, match=r"^parameter epochs = 'abc': expected an integer >= 1 or None; "
                                             r"for example epochs = 10$"):
        check_parameters({"profile": "smoke", "epochs": "abc", "overrides": {}})
    with pytest.raises(ValueError, match=r"give no valid config: unknown config key"):
        check_parameters({"profile": "smoke", "overrides": {"nope": 1}})
    assert check_parameters({"profile": "smoke", "seeds": (0, 1), "weights": {"cls": 1}, "overrides": {}}) == {
        "profile": "smoke", "seeds": [0, 1], "weights": {"cls": 1.0}, "overrides": {}}
