"""Sphinx extension of vldbook: keep the HTML free of remote resources.

Jupyter Book 1 always loads ``sphinx-thebe``, whose page scripts name the thebe bundle on a CDN
(``THEBE_JS_URL``); vldbook has no launch buttons, so those scripts are dropped from every page.
MathJax is served locally by ``sphinx-mathjax-offline``.
"""
from __future__ import annotations

from typing import Any

DROP_FILES = ("sphinx-thebe.js",)
DROP_BODY_MARKERS = ("THEBE_JS_URL",)


def _keep(script: Any) -> bool:
    filename = str(getattr(script, "filename", script) or "")
    body = str(getattr(script, "attributes", {}).get("body", ""))
    if any(filename.endswith(name) for name in DROP_FILES):
        return False
    return not any(marker in body for marker in DROP_BODY_MARKERS)


def _strip_remote_scripts(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    if "script_files" in context:
        context["script_files"] = [s for s in context["script_files"] if _keep(s)]


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", _strip_remote_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
