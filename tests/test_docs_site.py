"""The documentation site, built strict and looked at in a real browser.

The site is built once per session with ``mkdocs build --strict`` (a broken link, an
unresolved cross-reference, a missing page or a docstring the parser warns about fails), or
taken from ``UCAG_DOCS_SITE`` when ``./dev test`` has just built it. It is served on
127.0.0.1 and opened in headless Chromium (Debian's ``chromium``), driven over the DevTools
protocol: the home page, the UCAG API page and a notebook page must render with every image
loaded, and the site's own search must find ``UCAG``, ``deletion`` and
``suggest_target_layer``. Screenshots of the three pages are saved under
``test-artifacts/docs/`` (``UCAG_TEST_ARTIFACTS`` moves them) for a person to look at.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.docs
pytest.importorskip("mkdocs", reason="the docs extra (requirements-dev.txt)")
websocket = pytest.importorskip("websocket", reason="websocket-client (requirements-dev.txt)")

ROOT = Path(__file__).resolve().parent.parent
#: Pages checked in the browser: (name of the screenshot, path under the site, text the page must show)
PAGES = (
    ("home", "", "In ten lines"),
    ("api-ucag", "api/ucag/", "ucag.explainer"),
    ("notebook-quickstart", "notebooks/01_quickstart/", "UCAG quick start"),
)
#: What the site's search must find, and a page each must lead to.
SEARCHES = {
    "UCAG": "api/ucag/",
    "deletion": "api/eval/",
    "suggest_target_layer": "api/models/#ucag.models.suggest_target_layer",
}
WAIT_S = 30.0


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("UCAG_DOCS_SITE")
    if given:
        path = Path(given)
        assert (path / "index.html").is_file(), f"UCAG_DOCS_SITE={given} holds no built site"
        return path
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-4000:]}"
    return out


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def site_url(site_dir: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(site_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class Browser:
    """One headless Chromium page, driven over the DevTools protocol."""

    def __init__(self, executable: str, profile: Path) -> None:
        self.process = subprocess.Popen(
            [
                executable,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1280,1600",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + WAIT_S
        while not port_file.is_file() or not port_file.read_text(encoding="utf-8").strip():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text(encoding="utf-8").split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            pages = [target for target in json.load(response) if target["type"] == "page"]
        self.socket = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=WAIT_S)
        self.next_id = 0
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str) -> Any:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {expression}")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for(f"document.readyState === 'complete' && location.href === {json.dumps(url)}")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("Browser.close")
        with contextlib.suppress(Exception):
            self.socket.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = _chromium()
    if executable is None:
        pytest.skip("no chromium (Debian's chromium package; .ci/run installs it)")
    with tempfile.TemporaryDirectory(prefix="ucag-chromium-", ignore_cleanup_errors=True) as profile:
        page = Browser(executable, Path(profile))
        try:
            yield page
        finally:
            page.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    folder = Path(os.environ.get("UCAG_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "docs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


#: Every image of the page: whether it loaded, and its natural size (0 when broken).
IMAGES = (
    "Array.from(document.images).map(i => ({src: i.src.slice(0, 80), complete: i.complete, width: i.naturalWidth}))"
)


@pytest.mark.parametrize(("name", "path", "text"), PAGES, ids=[page[0] for page in PAGES])
def test_page_renders_with_its_images(
    browser: Browser, site_url: str, artifacts: Path, name: str, path: str, text: str
) -> None:
    browser.open(site_url + path)
    # material's theme has laid out the page: its header and the article are there
    browser.wait_for(
        "!!(document.querySelector('header.md-header') && document.querySelector('article.md-content__inner'))"
    )
    article = browser.evaluate("document.querySelector('article.md-content__inner').innerText")
    assert text in article, f"{path or 'home'}: {text!r} not shown"
    # images below the fold load when scrolled to
    browser.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    browser.wait_for("Array.from(document.images).every(i => i.complete)")
    images = browser.evaluate(IMAGES)
    broken = [image["src"] for image in images if image["width"] == 0]
    assert not broken, f"{path or 'home'}: broken images {broken}"
    if name != "api-ucag":
        assert images, f"{path or 'home'}: no image at all"
    styled = browser.evaluate("getComputedStyle(document.querySelector('header.md-header')).position")
    assert styled in ("sticky", "fixed"), "the theme's stylesheet did not load"
    browser.evaluate("window.scrollTo(0, 0)")
    shot = artifacts / f"{name}.png"
    browser.screenshot(shot)
    assert shot.stat().st_size > 20_000, f"{shot}: the screenshot is nearly empty"


def test_api_page_shows_signatures_and_sections(browser: Browser, site_url: str) -> None:
    browser.open(site_url + "api/ucag/")
    browser.wait_for("!!document.querySelector('article.md-content__inner')")
    headings = browser.evaluate("Array.from(document.querySelectorAll('[id]')).map(e => e.id)")
    for anchor in ("ucag.explainer.UCAG", "ucag.explainer.UCAG.explain", "ucag.explainer.Explanation"):
        assert anchor in headings, f"api/ucag/: no anchor {anchor}"
    article = browser.evaluate("document.querySelector('article.md-content__inner').innerText")
    # the docstrings' sections render as sections, not as raw Google-style text
    assert "Parameters:" in article or "PARAMETER" in article.upper()
    assert ":class:" not in article and ":func:" not in article, "a Sphinx role rendered literally"


def test_formulas_render_as_mathml(browser: Browser, site_url: str) -> None:
    browser.open(site_url + "algorithm/")
    browser.wait_for("!!document.querySelector('article.md-content__inner')")
    count = browser.evaluate("document.querySelectorAll('article math').length")
    assert count >= 10, f"algorithm/: {count} MathML formulas"
    # the browser lays MathML out (a formula has a size), it is not shown as source
    width = browser.evaluate("document.querySelector('article math[display=block]').getBoundingClientRect().width")
    assert width > 20


@pytest.mark.parametrize("query", list(SEARCHES))
def test_search_finds(browser: Browser, site_url: str, query: str) -> None:
    browser.open(site_url + "?q=" + urllib.request.quote(query))
    # material's search worker indexes search/search_index.json, then lists the results
    links = browser.wait_for(
        "(() => { const items = Array.from(document.querySelectorAll('.md-search-result__item a'));"
        " return items.length ? items.map(a => a.getAttribute('href')) : null; })()"
    )
    wanted = SEARCHES[query]
    # material appends ?h=QUERY (the highlight) before the anchor
    pages = [urllib.parse.urlsplit(link)._replace(query="").geturl() for link in links if link]
    assert any(wanted in page for page in pages), f"search {query!r}: {wanted} not among {pages[:10]}"
