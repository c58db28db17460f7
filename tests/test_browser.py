"""The built book in a real browser: headless Debian Chromium through playwright-python.

The smoke book (fixture ``smoke_book``) is served on 127.0.0.1 and every page is opened: figures
load (``naturalWidth > 0``), math renders (MathJax output, no MathJax errors), the navigation is
present and links every page of the toc, no request fails and no request leaves 127.0.0.1.
Uses the system Chromium (``/usr/bin/chromium``; never ``playwright install``).
"""
from __future__ import annotations

import functools
import http.server
import shutil
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

from vldlib import book

pytest_plugins = ["book_fixtures"]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists() and shutil.which("chromium") is None,
                       reason="needs Debian chromium at /usr/bin/chromium (apt-get install chromium)"),
]
TOC_PAGES = ["book/intro", "book/method", "book/offline",
             *(f"book/executed/{n}" for n in (*book.BOOK_ORDER, book.SUMMARY)), "book/paper_profile",
             "book/references", f"book/executed/{book.BUILD_INFO}"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A browser that navigates away mid-download closes its socket: not a failure of the book.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def served(smoke_book):
    smoke_book.require_success()
    handler = functools.partial(_QuietHandler, directory=str(smoke_book.html))
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", smoke_book.html
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _visit(browser, base: str, path: str) -> dict:
    """Open one page; return what it loaded, what failed, and what it rendered."""
    origin = urlparse(base).netloc
    context = browser.new_context()
    page = context.new_page()
    remote, failed, errors = [], [], []

    def route(r):
        if urlparse(r.request.url).netloc != origin and not r.request.url.startswith(("data:", "blob:")):
            remote.append(r.request.url)
            r.abort()
        else:
            r.continue_()

    page.route("**/*", route)
    page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
    page.on("response", lambda r: failed.append(f"{r.url} (HTTP {r.status})") if r.status >= 400 else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{base}/{path}", wait_until="load", timeout=60_000)
        refresh = page.locator('meta[http-equiv="refresh"]')
        if refresh.count():  # index.html redirects to the root page
            target = refresh.first.get_attribute("content").split("url=", 1)[-1].strip()
            page.wait_for_url(f"**/{target}", timeout=30_000)
            page.wait_for_load_state("load")
        if page.evaluate("() => Boolean(window.MathJax && window.MathJax.startup)"):
            page.wait_for_function("() => window.MathJax.startup.promise !== undefined", timeout=30_000)
            page.evaluate("() => window.MathJax.startup.promise")
        page.wait_for_load_state("networkidle", timeout=30_000)
        info = page.evaluate("""() => ({
            images: Array.from(document.querySelectorAll('main img, article img')).map(
                i => ({src: i.currentSrc || i.src, w: i.naturalWidth, complete: i.complete})),
            math: document.querySelectorAll('.math').length,
            mjx: document.querySelectorAll('mjx-container').length,
            merror: document.querySelectorAll('mjx-merror').length,
            nav: Array.from(document.querySelectorAll('nav.bd-docs-nav a.reference, a.navbar-brand')).map(a => a.href),
            title: document.title,
        })""")
    finally:
        context.close()
    return {**info, "remote": remote, "failed": failed, "errors": errors}


def _pages(html: Path) -> list[str]:
    return sorted(str(p.relative_to(html)) for p in html.rglob("*.html") if "_static" not in p.parts)


def test_every_page_loads_offline_with_figures_math_and_navigation(served, browser):
    base, html = served
    pages = _pages(html)
    assert {f"{p}.html" for p in TOC_PAGES} <= set(pages), "a toc page was not built"
    problems = []
    for path in pages:
        info = _visit(browser, base, path)
        if info["remote"]:
            problems.append(f"{path}: requests leaving 127.0.0.1: {info['remote']}")
        if info["failed"]:
            problems.append(f"{path}: failed requests: {info['failed']}")
        if info["errors"]:
            problems.append(f"{path}: JavaScript errors: {info['errors']}")
        bad = [i["src"] for i in info["images"] if not i["complete"] or i["w"] <= 0]
        if bad:
            problems.append(f"{path}: images that did not load: {bad}")
        if info["math"] and info["mjx"] < info["math"]:
            problems.append(f"{path}: {info['math']} math elements but {info['mjx']} rendered by MathJax")
        if info["merror"]:
            problems.append(f"{path}: {info['merror']} MathJax errors")
        if path.startswith("book/"):
            targets = {urlparse(h).path.lstrip("/") for h in info["nav"]}
            missing = [p for p in TOC_PAGES if f"{p}.html" not in targets and f"{p}.html" != path]
            if missing:
                problems.append(f"{path}: navigation lacks links to {missing}")
        generated = (f"{book.SUMMARY}.html", f"{book.BUILD_INFO}.html")  # pages without a figure
        if path.startswith("book/executed/") and not path.endswith(generated) and not info["images"]:
            problems.append(f"{path}: an experiment page without a figure")
    assert not problems, "\n".join(problems)


def test_method_page_renders_its_formulas(served, browser):
    base, _ = served
    info = _visit(browser, base, "book/method.html")
    assert info["math"] >= 10 and info["mjx"] >= info["math"] and info["merror"] == 0
    assert not info["remote"] and not info["failed"]
