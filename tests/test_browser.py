"""The explorer and the static site in a real browser: Voila + Playwright + Debian's Chromium.

The explorer test serves ``notebooks/12_explorer.ipynb`` (parameters set to the tiny profile) with
Voila on 127.0.0.1, drives it like a user (choose a layer, click a cell of the activation grid,
switch the projection rule, upload a photo, upload a file that is not an image) and checks that the
images change by comparing their bytes; the site test opens the built site's index and a notebook
page and checks that the figures load. Screenshots go to ``build/screenshots/``.

Chromium is Debian's (``chromium`` or ``chromium-browser`` on the PATH; ``.ci/run`` installs it
with ``apt-get install chromium``); Playwright never downloads a browser. Without it the tests are
skipped with the reason on a developer's machine, and FAIL under ``CI=true``, so CI cannot pass
without ever opening a browser.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_NAMES = ("chromium", "chromium-browser")
INSTALL = "apt-get install chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(os.environ.get("ZFCORE_BUILD", ROOT / "build")) / "screenshots"
# The notebook's last sentence: once it is on the page the kernel is idle and the widgets respond.
NOTEBOOK_DONE = "layer-5 features respond to the object"
LOAD_TIMEOUT_MS = 300_000


def in_ci(env=None) -> bool:
    """``CI`` set to a true value (GitHub Actions, GitLab and .ci/run set ``CI=true``)."""
    return (env if env is not None else os.environ).get("CI", "").strip().lower() in (
        "1",
        "true",
        "yes",
    )


def find_chromium() -> str | None:
    """Debian's Chromium on the PATH (``chromium``, or ``chromium-browser`` on Ubuntu)."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _missing(reason: str) -> None:
    """Skip on a developer's machine; fail under CI, where a missing browser means the browser
    tests never ran."""
    if in_ci():
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def _require_browser() -> str:
    chromium = find_chromium()
    if chromium is None:
        _missing(
            f"no Chromium on the PATH (looked for {', '.join(CHROMIUM_NAMES)}): install Debian's "
            f"Chromium ({INSTALL}; .ci/run does it) to run the browser tests"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("playwright is not installed: pip install -r requirements.txt")
    return chromium


@pytest.fixture(scope="module")
def browser():
    chromium = _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _offline_page(browser, **kwargs):
    """A page that may only reach 127.0.0.1 (CDN scripts fail fast, as on an offline machine)."""
    page = browser.new_page(viewport={"width": 1400, "height": 2000}, **kwargs)

    def route(r):
        host = re.match(r"^[a-z]+://([^/:]+)", r.request.url)
        if host and host.group(1) not in ("127.0.0.1", "localhost"):
            return r.abort()
        return r.continue_()

    page.route(re.compile(r"^https?://"), route)
    return page


def _shot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# ---------------------------------------------------------------------------------------------
# Voila server
# ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VoilaServer:
    """``voila <notebook>`` on 127.0.0.1 and a free port, stopped (with its kernels) on exit."""

    def __init__(self, notebook: Path, log: Path, env: dict, start_timeout: float = 60):
        self.notebook, self.log_path, self.env, self.start_timeout = (
            notebook,
            log,
            env,
            start_timeout,
        )
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def log(self, tail: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.is_file() else ""

    def __enter__(self) -> "VoilaServer":
        for _attempt in range(3):  # a port taken between choosing and binding: retry
            port = _free_port()
            self.url = f"http://127.0.0.1:{port}/"
            cmd = [
                sys.executable,
                "-m",
                "voila",
                str(self.notebook),
                "--no-browser",
                f"--port={port}",
                "--Voila.ip=127.0.0.1",
                "--Voila.port_retries=0",
                "--show_tracebacks=True",
            ]
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    cmd,
                    cwd=self.notebook.parent,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return self
                time.sleep(0.2)
            if self.proc.poll() is None:
                self._stop()
                raise RuntimeError(
                    f"voila did not listen on {self.url} within "
                    f"{self.start_timeout:.0f} s; log:\n{self.log()}"
                )
        raise RuntimeError(f"voila exited (code {self.proc.returncode}); log:\n{self.log()}")

    def _stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # voila and the kernels it started
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def __exit__(self, *exc) -> None:
        self._stop()


@pytest.fixture(scope="module")
def explorer_server(tmp_path_factory):
    _require_browser()
    try:
        import voila  # noqa: F401
    except ImportError:
        _missing("voila is not installed: pip install -r requirements.txt")
    import papermill as pm

    work = tmp_path_factory.mktemp("voila")
    notebook = work / "12_explorer.ipynb"
    # The committed notebook with the tiny profile injected (papermill's parameters, not run).
    pm.execute_notebook(
        str(ROOT / "notebooks" / "12_explorer.ipynb"),
        str(notebook),
        parameters={"profile": "tiny", "focus_images": 4, "tour_steps": 3},
        prepare_only=True,
        progress_bar=False,
    )
    env = dict(
        os.environ, ZFCORE_FIGURES=str(work / "figures"), MPLBACKEND="Agg", ZFCORE_DOWNLOAD="0"
    )
    with VoilaServer(notebook, work / "voila.log", env) as server:
        yield server


# ---------------------------------------------------------------------------------------------
# Reading the page
# ---------------------------------------------------------------------------------------------

_DIGEST_JS = """async (el) => {
    const data = await (await fetch(el.src)).arrayBuffer();
    const hash = await crypto.subtle.digest('SHA-256', data);
    return Array.from(new Uint8Array(hash)).map(b => b.toString(16).padStart(2, '0')).join('')
        + ':' + data.byteLength;
}"""

PANELS = (
    "zf-image",
    "zf-grid-image",
    "zf-map",
    "zf-projection",
    "zf-top-projections",
    "zf-top-patches",
)


def _digests(page) -> dict[str, str]:
    """SHA-256 of the bytes each panel image shows (its blob or data URL, fetched in the page)."""
    return {name: page.locator(f"img.{name}").first.evaluate(_DIGEST_JS) for name in PANELS}


def _status(page) -> str:
    return page.locator(".zf-status").first.inner_text()


def _wait_status(page, pattern: str, timeout: float = 30_000) -> str:
    """Wait until the status line reports the finished action ``pattern`` (a regex)."""
    try:
        page.wait_for_function(
            "([re]) => { const s = document.querySelector('.zf-status');"
            " return s && new RegExp(re).test(s.innerText); }",
            arg=[pattern],
            timeout=timeout,
        )
    except Exception:
        _shot(page, "explorer_failure")
        raise AssertionError(
            f"the explorer never reported {pattern!r}; status line: "
            f"{_status(page)!r} (screenshot in {SCREENSHOTS})"
        ) from None
    return _status(page)


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if before[k] != after[k]}


def test_explorer_in_voila(browser, explorer_server):
    page = _offline_page(browser)
    page.set_default_timeout(30_000)
    try:
        page.goto(explorer_server.url, wait_until="commit", timeout=60_000)
        try:
            # generous: the kernel imports torch and runs the whole notebook first (about 100 s
            # on two cores shared with other work); a slow machine must not turn into a skip
            page.wait_for_selector(".zf-explorer img.zf-grid-image", timeout=LOAD_TIMEOUT_MS)
            page.get_by_text(NOTEBOOK_DONE).first.wait_for(timeout=LOAD_TIMEOUT_MS)
        except Exception:
            _shot(page, "explorer_failure")
            raise AssertionError(
                f"the explorer did not finish loading in Voila; page text:\n"
                f"{page.inner_text('body')[-1500:]}\nvoila log:\n"
                f"{explorer_server.log()}"
            ) from None
        body = page.inner_text("body")
        assert "Traceback" not in body, f"a notebook cell failed in Voila:\n{body[-2000:]}"
        _shot(page, "explorer_1_loaded")
        d0 = _digests(page)

        # 1. choose layer 3 in the layer buttons: the grid and the map change
        page.locator(".zf-layer").get_by_role("button", name="3", exact=True).click()
        _wait_status(page, r"show layer3 in")
        d1 = _digests(page)
        assert {"zf-grid-image", "zf-map", "zf-projection", "zf-top-patches"} <= _changed(d0, d1), (
            f"choosing layer 3 did not redraw the layer's panels: changed {_changed(d0, d1)}"
        )
        _shot(page, "explorer_2_layer3")

        # 2. click cell 5 of the activation grid (the image, where the user sees map 5)
        grid = page.locator("img.zf-grid-image").first.bounding_box()
        first_cell = page.locator(".zf-grid-cells button").first.bounding_box()
        cells = page.locator(".zf-grid-cells button").count()
        assert cells > 5, f"the grid shows only {cells} cells"
        cell = first_cell["width"]
        assert abs(first_cell["x"] - grid["x"]) < 2 and abs(first_cell["y"] - grid["y"]) < 2, (
            f"the clickable cells are not over the grid image: cells at {first_cell}, image at "
            f"{grid}"
        )
        target = 5 if page.locator(".zf-unit input").input_value() != "5" else 6
        page.mouse.click(grid["x"] + (target + 0.5) * cell, grid["y"] + 0.5 * cell)
        _wait_status(page, rf"select map {target} in")
        assert page.locator(".zf-unit input").input_value() == str(target)
        d2 = _digests(page)
        assert {"zf-grid-image", "zf-map", "zf-projection"} <= _changed(d1, d2), (
            f"clicking map {target} did not redraw: changed {_changed(d1, d2)}"
        )
        _shot(page, "explorer_3_map_clicked")

        # 3. switch the projection rule: only the projections change
        page.locator(".zf-rule").get_by_role("button", name="guided", exact=True).click()
        _wait_status(page, r"guided rule in")
        d3 = _digests(page)
        assert "zf-projection" in _changed(d2, d3) and "zf-grid-image" not in _changed(d2, d3)

        # 4. upload a photo: the input image and everything computed from it change
        photo = _photo(explorer_server.log_path.parent / "my_photo.png")
        with page.expect_file_chooser() as chooser:
            page.locator(".zf-upload").first.click()
        chooser.value.set_files(str(photo))
        _wait_status(page, r"upload my_photo\.png in", timeout=60_000)
        d4 = _digests(page)
        assert {"zf-image", "zf-grid-image", "zf-map", "zf-projection"} <= _changed(d3, d4), (
            f"uploading a photo did not redraw: changed {_changed(d3, d4)}"
        )
        _shot(page, "explorer_4_uploaded")

        # 5. a file that is not an image: explained in the status line, panels untouched
        bad = explorer_server.log_path.parent / "notes.png"
        bad.write_text("these are my notes, not a picture")
        with page.expect_file_chooser() as chooser:
            page.locator(".zf-upload").first.click()
        chooser.value.set_files(str(bad))
        status = _wait_status(page, r"\u26a0")
        assert "notes.png" in status, f"the error does not name the file: {status!r}"
        assert _digests(page) == d4
        _shot(page, "explorer_5_bad_upload")
    finally:
        page.close()


def _photo(path: Path) -> Path:
    """A real photo (scikit-image's astronaut, bundled) saved as PNG for the upload."""
    import skimage.data
    from PIL import Image

    Image.fromarray(skimage.data.astronaut()).save(path)
    return path


# ---------------------------------------------------------------------------------------------
# The static site
# ---------------------------------------------------------------------------------------------


def _figure_png(color: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [0, 1, 0], color=color)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def test_site_index_and_page_show_their_figures(browser, tmp_path, monkeypatch):
    import nbformat

    from zfcore import site
    from zfcore.profiles import get_profile

    monkeypatch.setenv("ZFCORE_BUILD", str(tmp_path / "build"))
    P = get_profile("tiny", figures_root=tmp_path / "figures")
    P.figures_dir.mkdir(parents=True)
    executed = tmp_path / "build" / "notebooks" / "tiny"
    executed.mkdir(parents=True)
    sources = []
    for stem, color in (("02_deconvnet", "C0"), ("07_occlusion", "C3")):
        nb = nbformat.v4.new_notebook()
        nb.metadata["zfcore"] = {"figures": ["main"]}
        cell = nbformat.v4.new_code_cell("fig")
        cell.outputs = [
            nbformat.v4.new_output(
                "display_data",
                data={
                    "image/png": base64.b64encode(_figure_png(color)).decode(),
                    "text/plain": "<Figure>",
                },
            )
        ]
        nb.cells = [nbformat.v4.new_markdown_cell(f"# {stem}\n\nA notebook."), cell]
        src = tmp_path / f"{stem}.ipynb"
        nbformat.write(nb, src)
        nbformat.write(nb, executed / src.name)
        (P.figures_dir / f"{stem}_main.png").write_bytes(_figure_png(color))
        sources.append(src)
    index = site.build_site(P, tmp_path / "site", notebooks=sources, progress=False)

    page = _offline_page(browser)
    try:
        page.goto(index.as_uri(), wait_until="load", timeout=30_000)
        thumbs = page.locator("img.zf-thumb")
        assert thumbs.count() == 2
        widths = thumbs.evaluate_all("els => els.map(e => e.complete ? e.naturalWidth : 0)")
        assert all(w > 0 for w in widths), f"index thumbnails did not load: naturalWidth {widths}"
        _shot(page, "site_1_index")

        page.locator("a.zf-page", has_text="07_occlusion").click()
        page.wait_for_load_state("load")
        assert page.url.endswith("07_occlusion.html")
        figures = page.locator(".jp-OutputArea-output img")
        assert figures.count() >= 1, "the notebook page shows no figure"
        widths = figures.evaluate_all("els => els.map(e => e.complete ? e.naturalWidth : 0)")
        assert all(w > 0 for w in widths), f"figures did not load: naturalWidth {widths}"
        paper = page.locator("a.zf-paper")
        assert paper.get_attribute("href") == "https://ar5iv.labs.arxiv.org/html/1311.2901#S4.SS2"
        assert "Section 4.2, Fig. 7" in paper.inner_text()
        _shot(page, "site_2_page")
        page.locator("a.zf-index").click()
        page.wait_for_load_state("load")
        assert page.url.endswith("index.html")
    finally:
        page.close()


# ---------------------------------------------------------------------------------------------
# No silent skips: a missing browser fails under CI
# ---------------------------------------------------------------------------------------------


def test_missing_chromium_fails_under_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(
        pytest.fail.Exception, match=r"CI=true but no Chromium .*apt-get install chromium"
    ):
        _require_browser()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        _require_browser()
    assert (
        in_ci({"CI": "1"})
        and in_ci({"CI": "True"})
        and not in_ci({})
        and not in_ci({"CI": "false"})
    )


def test_chromium_is_found_on_the_path_under_either_name(monkeypatch):
    where = {"chromium-browser": "/opt/bin/chromium-browser"}
    monkeypatch.setattr(shutil, "which", lambda name: where.get(name))
    assert find_chromium() == "/opt/bin/chromium-browser"
    where["chromium"] = "/snap/bin/chromium"
    assert find_chromium() == "/snap/bin/chromium"


def _figures_state() -> tuple[str, dict]:
    """``git status --porcelain figures/`` and every ``12_explorer*`` file under figures/ (size,
    mtime)."""
    status = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=all", "figures/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    files = {
        str(p.relative_to(ROOT)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in (ROOT / "figures").rglob("12_explorer*")
    }
    return status, files


def test_serving_the_explorer_leaves_the_figures_alone(browser, tmp_path):
    """``voila notebooks/12_explorer.ipynb`` as the README says (no ZFCORE_FIGURES, no
    ZFCORE_SAVE_FIGURES): the notebook runs in the page and saves its numbers under build/, and
    the checkout's figures/ stay as they were."""
    try:
        import voila  # noqa: F401
    except ImportError:
        _missing("voila is not installed: pip install -r requirements.txt")
    import papermill as pm

    notebook = tmp_path / "12_explorer.ipynb"
    pm.execute_notebook(
        str(ROOT / "notebooks" / "12_explorer.ipynb"),
        str(notebook),
        parameters={"profile": "tiny", "focus_images": 4, "tour_steps": 3},
        prepare_only=True,
        progress_bar=False,
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("ZFCORE_FIGURES", "ZFCORE_SAVE_FIGURES")
    }
    env.update(MPLBACKEND="Agg", ZFCORE_DOWNLOAD="0", ZFCORE_BUILD=str(tmp_path / "build"))
    before = _figures_state()
    with VoilaServer(notebook, tmp_path / "voila.log", env) as server:
        page = _offline_page(browser)
        try:
            page.goto(server.url, wait_until="commit", timeout=60_000)
            page.get_by_text(NOTEBOOK_DONE).first.wait_for(timeout=LOAD_TIMEOUT_MS)
        except Exception:
            _shot(page, "explorer_figures_failure")
            raise AssertionError(
                f"the explorer did not finish loading in Voila; voila log:\n{server.log()}"
            ) from None
        finally:
            page.close()
    drafts = tmp_path / "build" / "figures" / "tiny"
    assert (drafts / "12_explorer.json").is_file(), f"the notebook saved nothing in {drafts}"
    assert _figures_state() == before, "serving the explorer changed figures/"
