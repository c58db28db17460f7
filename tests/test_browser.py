"""The built book in a real browser: headless Debian Chromium through playwright-python.

The smoke book (fixture ``smoke_book``) is served on 127.0.0.1 and every page is opened: figures
load (``naturalWidth > 0``), math renders (MathJax output, no MathJax errors), the navigation is
present and links every page of the toc, no request fails and no request leaves 127.0.0.1.
Uses the system Chromium (``/usr/bin/chromium``; never ``playwright install``).
"""
from __future__ import annotations

import functools
import http.server
import re
import shutil
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
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
TOC_PAGES = [book.contents.INTRO, *(page.doc for page in book.contents.pages())]


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


_REFRESH = re.compile(r"""<meta\s+http-equiv=["']refresh["']\s+content=["'][^"']*url=([^"']+)["']""", re.I)


def _redirect(html: Path, path: str) -> str | None:
    """The target of a page that is only a ``<meta http-equiv="refresh">`` (Sphinx's root index.html).

    Such a page navigates away as soon as it loads, so it is checked here, on disk, instead of in the
    browser (evaluating a script on it races the navigation).
    """
    match = _REFRESH.search((html / path).read_text(encoding="utf-8", errors="replace")[:2000])
    return match.group(1).strip() if match else None


def test_redirect_pattern_reads_sphinx_root_index(tmp_path):
    (tmp_path / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/intro.html" />\n')
    (tmp_path / "page.html").write_text("<html><body>no refresh</body></html>")
    assert _redirect(tmp_path, "index.html") == "book/intro.html"
    assert _redirect(tmp_path, "page.html") is None


def test_every_page_loads_offline_with_figures_math_and_navigation(served, browser):
    base, html = served
    pages = _pages(html)
    assert {f"{p}.html" for p in TOC_PAGES} <= set(pages), "a toc page was not built"
    problems = []
    for path in pages:
        target = _redirect(html, path)
        if target is not None:  # e.g. index.html -> book/intro.html, which is visited itself
            if str((Path(path).parent / target)) not in pages:
                problems.append(f"{path}: redirects to {target}, which was not built")
            continue
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


# ----------------------------------------------------------------------------- the book as a publication (issue 12)

CHAPTER_PAGES = [f"book/executed/{n}.html" for n in (*book.BOOK_ORDER, book.SUMMARY)]


def _open(browser, base: str, path: str):
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{base}/{path}", wait_until="load", timeout=60_000)
    page.wait_for_load_state("networkidle", timeout=30_000)
    return context, page


def test_no_chapter_page_shows_more_than_one_unfolded_code_cell(served, browser):
    base, _ = served
    problems = []
    for path in CHAPTER_PAGES:
        context, page = _open(browser, base, path)
        try:
            shown = page.evaluate("""() => Array.from(document.querySelectorAll('div.cell div.cell_input'))
                .filter(e => e.checkVisibility() && !e.closest('details:not([open])')).length""")
            total = page.evaluate("() => document.querySelectorAll('div.cell div.cell_input').length")
        finally:
            context.close()
        if total == 0:
            problems.append(f"{path}: no code cells at all")
        if shown > 1:
            problems.append(f"{path}: {shown} of {total} code cells shown unfolded")
    assert not problems, "\n".join(problems)


def _findings_rows(browser, base: str) -> list[dict]:
    context, page = _open(browser, base, "book/intro.html")
    try:
        return page.evaluate("""() => {
            const section = document.querySelector('section#findings-at-a-glance');
            return Array.from(section.querySelectorAll('table tbody tr')).map(tr => {
                const td = Array.from(tr.querySelectorAll('td'));
                return {source: td[0].innerText.trim(), claim: td[1].innerText.trim().replace(/\u2019/g, "'"), ours: td[2].innerText.trim(),
                        paper: td[3].innerText.trim(), verdict: td[4].innerText.trim(),
                        glued: tr.querySelectorAll('span.pasted-text').length,
                        link: (td[5].querySelector('a') || {}).href || ''};
            });
        }""")
    finally:
        context.close()


def test_front_page_glues_a_number_per_chapter_equal_to_the_run_store(served, browser, smoke_book):
    from vldlib.runs import RunStore, record_row
    from vldlib.study import report
    from vldlib.study.chapters import chapter, open_chapter

    base, _ = served
    rows = _findings_rows(browser, base)
    by_claim = {r["claim"]: r for r in rows}
    for name in book.CHAPTER_ORDER:  # the declared chapters
        mine = [r for r in rows if r["link"].endswith(f"executed/{name}.html")]
        assert any(r["glued"] >= 3 and any(ch.isdigit() for ch in r["ours"]) for r in mine), \
            f"the front page carries no glued number of chapter {name}: {mine}"
    store = RunStore(smoke_book.results)
    checked = 0
    for name in ("main_results", "feature_errors", "k_ablation"):
        ch = open_chapter(name, profile="smoke", results_dir=str(smoke_book.results))
        frame = pd.DataFrame([{**record_row(store.get(cfg)), **labels} for labels, cfg in ch.grid.configs])
        for claim in chapter(name).claims:
            row = by_claim[claim.statement]
            c = claim.comparison
            have = set(frame[ch.chapter.column])
            if c.treatment not in have or c.baseline not in have or c.metric not in frame.columns:
                assert row["ours"] == "not run", (claim.key, row)
                continue
            iv = report.paired_effect(frame, c.metric, column=ch.chapter.column, treatment=c.treatment,
                                      baseline=c.baseline)
            d = claim.digits
            expected = f"{iv.mean:+.{d}f}" + ("" if iv.n < 2 else f" [{iv.low:.{d}f}, {iv.high:.{d}f}]")
            assert row["ours"] == expected, (claim.key, row["ours"], expected)
            checked += 1
    assert checked >= 3


def test_csv_links_load_and_every_chapter_links_its_tables(served, browser):
    base, _ = served
    problems = []
    for path in ["book/intro.html", *CHAPTER_PAGES]:
        context, page = _open(browser, base, path)
        try:
            hrefs = page.evaluate("() => Array.from(document.querySelectorAll('a.vld-csv')).map(a => a.href)")
            if not hrefs:
                problems.append(f"{path}: no CSV link")
            for href in hrefs:
                assert urlparse(href).netloc == urlparse(base).netloc, href
                response = context.request.get(href)
                text = response.text() if response.ok else ""
                if not response.ok:
                    problems.append(f"{path}: {href} -> HTTP {response.status}")
                elif len(text.splitlines()) < 2 or "," not in text.splitlines()[0]:
                    problems.append(f"{path}: {href} is not a CSV table: {text[:80]!r}")
        finally:
            context.close()
    assert not problems, "\n".join(problems)


def test_references_page_renders_the_works(served, browser):
    base, _ = served
    context, page = _open(browser, base, "book/references.html")
    try:
        entries = page.evaluate("() => Array.from(document.querySelectorAll('main div.citation, main dl.citation > dt, "
                                "main .bibliography li, main dl.citation dd')).map(e => e.innerText)")
        text = page.evaluate("() => document.querySelector('main').innerText").lower()
    finally:
        context.close()
    assert len(entries) >= 14, entries
    for title in ("distilling large vision-language model", "learning transferable visual models",
                  "fashion-mnist", "relational knowledge distillation", "tip-adapter", "waffling around"):
        assert title in text, title
