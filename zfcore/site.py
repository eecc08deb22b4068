"""A static, readable website of the executed notebooks: one HTML page per notebook and an index.

    python -m zfcore.runner --profile mini       # execute the notebooks (build/notebooks/mini/)
    python -m zfcore.site --profile mini         # -> build/site/mini/index.html
    python -m zfcore.site --profile mini --run-missing   # execute what is missing first

The pages are made by nbconvert's ``lab`` HTML template from the executed copies that
:mod:`zfcore.runner` leaves in ``build/notebooks/<profile>/``; figures are embedded in the pages
(nbconvert inlines image outputs as data URIs), so a page is one self-contained file a course site
can host as is. Each page opens with a bar that links back to the index, to the previous and next
notebook, and to the section of Zeiler & Fergus (2014, arXiv:1311.2901) it reproduces. The index
lists the notebooks in paper order (the order of ``notebooks/``) with the paper item, a thumbnail
of the first figure the notebook saved (copied from ``figures/<profile>/``) and, for a notebook not
executed yet, the command that executes it.

Which part of the paper a notebook reproduces comes from its metadata
(``metadata.zfcore.paper = {"section": "4.2", "item": "Fig. 7"}``) or, failing that, from
:data:`PAPER_ITEMS`, derived from :data:`zfcore.paper.ITEMS`.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from .cache import atomic_write_text
from .errors import ZFCoreError
from .locations import build_root
from .paper import ITEMS
from .profiles import PROFILES, Profile, get_profile
from .runner import build_dir, import_extra, list_notebooks, promised_figures

__all__ = [
    "PaperRef",
    "PAPER_ITEMS",
    "ARXIV_ID",
    "NotebookPage",
    "SiteError",
    "paper_ref",
    "site_dir",
    "collect_pages",
    "render_notebook",
    "render_index",
    "build_site",
    "main",
]

ARXIV_ID = "1311.2901"
ARXIV_ABS = f"https://arxiv.org/abs/{ARXIV_ID}"
#: ar5iv renders arXiv papers as HTML with one anchor per section (``#S4``) and subsection
#: (``#S4.SS2``), so a link can open the paper at the section a notebook reproduces.
AR5IV_HTML = f"https://ar5iv.labs.arxiv.org/html/{ARXIV_ID}"


class SiteError(ZFCoreError, RuntimeError):
    """The site cannot be built (no executed notebooks, a notebook nbconvert cannot read)."""


@dataclass(frozen=True)
class PaperRef:
    """The part of the paper a notebook reproduces: a section number and the figures/tables."""

    section: str = ""  # "4.2"; "" for notebooks that reproduce no single section
    item: str = ""  # "Fig. 7"

    @property
    def anchor(self) -> str:
        """ar5iv's anchor for the section: ``S4`` for "4", ``S4.SS2`` for "4.2"."""
        if not self.section:
            return ""
        parts = self.section.split(".")
        return "S" + parts[0] + "".join(f".SS{p}" for p in parts[1:])

    @property
    def url(self) -> str:
        """The paper, opened at the section where there is one."""
        return f"{AR5IV_HTML}#{self.anchor}" if self.anchor else ARXIV_ABS

    @property
    def label(self) -> str:
        bits = [f"Section {self.section}" if self.section else "", self.item]
        return ", ".join(b for b in bits if b) or "the paper as a whole"


#: The notebook map of CONTRIBUTING.md: notebook number -> the part of the paper it reproduces.
#: Sections of arXiv:1311.2901v3: 2.1 deconvnet (Fig. 1); 3 training details (Fig. 3); 4 convnet
#: visualisation (Figs. 2, 4, 5); 4.1 architecture selection (Fig. 6); 4.2 occlusion sensitivity
#: (Fig. 7); 4.3 correspondence analysis (Fig. 8, Table 1); 5.1 ImageNet 2012 (Tables 2, 3);
#: 5.2 feature generalisation (Tables 4-6, Fig. 9); 5.3 feature analysis (Table 7).
#: The paper reference of each notebook number, from :data:`zfcore.paper.ITEMS` (the one map).
PAPER_ITEMS: dict[str, PaperRef] = {it.number: PaperRef(it.section, it.item) for it in ITEMS}


def paper_ref(notebook: "str | Path", metadata: "dict | None" = None) -> PaperRef:
    """The :class:`PaperRef` of a notebook: its metadata's ``zfcore.paper``, else the table."""
    meta = (metadata or {}).get("zfcore", {}).get("paper")
    if isinstance(meta, dict) and (meta.get("section") or meta.get("item")):
        return PaperRef(str(meta.get("section", "")), str(meta.get("item", "")))
    number = Path(notebook).stem.split("_")[0]
    return PAPER_ITEMS.get(number, PaperRef())


def site_dir(profile: str) -> Path:
    """``<build>/site/<profile>/`` (:func:`zfcore.locations.build_root`: ``$ZFCORE_BUILD``, the
    checkout's ``build/``, else the user cache's)."""
    return build_root() / "site" / profile


@dataclass
class NotebookPage:
    """One notebook of the site: its source, its executed copy (if any) and where it goes."""

    stem: str  # "07_occlusion"
    title: str  # from the notebook's first heading
    paper: PaperRef
    source: Path  # notebooks/07_occlusion.ipynb
    executed: Path | None  # build/notebooks/<profile>/07_occlusion.ipynb, None if not run
    thumbnail: Path | None  # figures/<profile>/07_occlusion_<first figure>.png, if saved
    summary: str = ""  # the first sentence of the notebook's introduction

    @property
    def html_name(self) -> str:
        return f"{self.stem}.html"


def _read_notebook(path: Path):
    """``path`` as an nbformat v4 node; :class:`SiteError` naming the file when it is unreadable."""
    nbformat = import_extra("nbformat")

    try:
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SiteError(
            f"{path}: not a readable notebook ({type(e).__name__}: {msg}); execute it "
            f"again with python -m zfcore.runner"
        ) from None
    return nb


def _heading_and_summary(nb: dict, stem: str) -> tuple[str, str]:
    """The first markdown heading (the title) and the first sentence of prose after it."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        text = "".join(cell.get("source", ""))
        title, prose = "", []
        for line in text.splitlines():
            m = re.match(r"\s*#+\s+(.*)", line)
            if m and not title:
                title = m.group(1).strip()
            elif line.strip():
                prose.append(line.strip())
        return title or stem, _markdown_to_text(_first_sentence(" ".join(prose)))
    return stem, ""


_ABBREVIATIONS = ("Fig.", "Figs.", "al.", "e.g.", "i.e.", "vs.", "Sec.", "cf.", "Eq.", "approx.")


def _first_sentence(text: str) -> str:
    """Up to the first full stop that ends a sentence (not "Fig. 3", "et al. (2012)", "e.g. X")."""
    for m in re.finditer(r"[.!?](?=\s+[A-Z(\"'*_\[]|$)", text):
        head = text[: m.end()]
        if not head.endswith(_ABBREVIATIONS):
            return head
    return text


def _markdown_to_text(s: str) -> str:
    s = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", s)  # [text](link) -> text
    return re.sub(r"[*_`]", "", s)


def collect_pages(
    profile: "str | Profile", notebooks: "list[Path] | None" = None
) -> list[NotebookPage]:
    """Every notebook of ``notebooks/`` (or ``notebooks``) in paper order, with its executed copy
    (``build/notebooks/<profile>/``) and thumbnail (``figures/<profile>/``)."""
    P = get_profile(profile)
    pages = []
    for src in notebooks if notebooks is not None else list_notebooks():
        src = Path(src)
        executed = build_dir(P.name) / src.name
        nb = _read_notebook(executed if executed.is_file() else src)
        title, summary = _heading_and_summary(nb, src.stem)
        thumb = None
        for name in promised_figures(src) if src.is_file() else []:
            candidate = P.figures_dir / f"{src.stem}_{name}.png"
            if candidate.is_file():
                thumb = candidate
                break
        pages.append(
            NotebookPage(
                stem=src.stem,
                title=title,
                paper=paper_ref(src, nb.get("metadata")),
                source=src,
                executed=executed if executed.is_file() else None,
                thumbnail=thumb,
                summary=summary,
            )
        )
    return pages


_STYLE = """
<style type="text/css">
.zf-widget-note { padding: 0.6em 1em; border-left: 3px solid #888; background: #f4f4f4;
  font: 14px/1.4 system-ui, sans-serif; }
.zf-nav { position: sticky; top: 0; z-index: 10; display: flex; flex-wrap: wrap; gap: 0.4em 1.4em;
  align-items: center; padding: 0.6em 1em; margin: 0 0 1em 0; font: 14px/1.4 system-ui, sans-serif;
  background: #f4f1ea; border-bottom: 1px solid #d8d2c4; }
.zf-nav a { color: #1d4f91; text-decoration: none; } .zf-nav a:hover { text-decoration: underline; }
.zf-nav .zf-paper { font-weight: 600; } .zf-nav .zf-profile { color: #666; margin-left: auto; }
</style>
"""


def _nav_bar(
    page: NotebookPage, prev: NotebookPage | None, nxt: NotebookPage | None, profile: str
) -> str:
    e = html.escape
    links = ['<a class="zf-index" href="index.html">&#8592; all notebooks</a>']
    if prev is not None:
        links.append(f'<a class="zf-prev" href="{e(prev.html_name)}">&#8249; {e(prev.stem)}</a>')
    if nxt is not None:
        links.append(f'<a class="zf-next" href="{e(nxt.html_name)}">{e(nxt.stem)} &#8250;</a>')
    links.append(
        f'<span>Reproduces <a class="zf-paper" href="{e(page.paper.url)}">'
        f"{e(page.paper.label)}</a> of Zeiler &amp; Fergus (2014), "
        f'<a href="{ARXIV_ABS}">arXiv:{ARXIV_ID}</a></span>'
    )
    links.append(f'<span class="zf-profile">profile <b>{e(profile)}</b></span>')
    return f'<nav class="zf-nav">{"".join(links)}</nav>'


def _exporter():
    import_extra("nbconvert")
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    # The lab template, with a slot after <main> for the navigation bar.
    page = (
        "{%- extends 'index.html.j2' -%}\n"
        "{%- block body_header -%}{{ super() }}{{ resources.zf_nav }}{%- endblock body_header -%}\n"
        "{%- block extra_css -%}{{ resources.zf_style }}{%- endblock extra_css -%}\n"
    )
    return HTMLExporter(
        template_name="lab",
        extra_loaders=[DictLoader({"zfcore_page.html.j2": page})],
        template_file="zfcore_page.html.j2",
    )


_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_WIDGET_NOTE = (
    '<div class="zf-widget-note">An interactive widget stands here: it needs a running '
    "Python kernel. Open this notebook in JupyterLab, or serve it with <code>voila</code> "
    "(see the README); the figures on this page show the same panels.</div>"
)


def _without_live_widgets(nb) -> int:
    """Replace every widget view in ``nb`` by a note, and drop the saved widget state.

    A static page cannot run the widgets' Python callbacks, and nbconvert would load the widget
    manager from a CDN (unpkg.com) to draw them, which leaves a blank area offline. Returns the
    number of views replaced.
    """
    replaced = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if _WIDGET_VIEW in data:
                out["data"] = {"text/html": _WIDGET_NOTE, "text/plain": "[interactive widget]"}
                replaced += 1
    nb.metadata.pop("widgets", None)
    return replaced


def render_notebook(
    page: NotebookPage,
    prev: NotebookPage | None,
    nxt: NotebookPage | None,
    profile: str,
    exporter=None,
) -> str:
    """The HTML page of one executed notebook (figures inlined), with the navigation bar."""
    if page.executed is None:
        raise SiteError(
            f"{page.stem} has not been executed: run "
            f"python -m zfcore.runner --profile {profile} {page.stem.split('_')[0]}"
        )
    exporter = exporter or _exporter()
    nb = _read_notebook(page.executed)
    _without_live_widgets(nb)
    nb.metadata["title"] = f"{page.title} - zfcore ({profile})"
    resources = {
        "zf_nav": _nav_bar(page, prev, nxt, profile),
        "zf_style": _STYLE,
        "metadata": {"name": page.stem},
    }
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return body


def render_index(pages: list[NotebookPage], profile: str, thumbnails: dict[str, str]) -> str:
    """The index page: every notebook in paper order, with its paper item and a thumbnail."""
    e = html.escape
    rows = []
    for p in pages:
        number = p.stem.split("_")[0]
        if p.executed is not None:
            title = f'<a class="zf-page" href="{e(p.html_name)}">{e(p.title)}</a>'
        else:
            title = (
                f'{e(p.title)}<div class="zf-missing">not executed yet: '
                f"<code>python -m zfcore.runner --profile {e(profile)} {e(number)}</code></div>"
            )
        thumb = (
            f'<a href="{e(p.html_name)}"><img class="zf-thumb" src="{e(thumbnails[p.stem])}" '
            f'alt="{e(p.stem)} figure"></a>'
            if p.stem in thumbnails and p.executed is not None
            else (
                f'<img class="zf-thumb" src="{e(thumbnails[p.stem])}" alt="{e(p.stem)} figure">'
                if p.stem in thumbnails
                else ""
            )
        )
        rows.append(
            f'<tr><td class="zf-num">{e(number)}</td><td>{title}'
            f'<div class="zf-summary">{e(p.summary)}</div></td>'
            f'<td><a href="{e(p.paper.url)}">{e(p.paper.label)}</a></td><td>{thumb}</td></tr>'
        )
    n_done = sum(p.executed is not None for p in pages)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>zfcore: Visualizing and Understanding Convolutional Networks, reproduced
({e(profile)})</title>
<style type="text/css">
body {{ font: 15px/1.5 system-ui, sans-serif; max-width: 1100px; margin: 2em auto;
  padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ padding: 0.5em; border-bottom: 1px solid #ddd; vertical-align: top; text-align: left; }}
.zf-num {{ font-weight: 700; color: #888; }} .zf-thumb {{ max-width: 220px; max-height: 140px; }}
.zf-summary {{ color: #555; font-size: 13px; }} .zf-missing {{ color: #a33; font-size: 13px; }}
a {{ color: #1d4f91; }}
</style></head>
<body>
<h1>Visualizing and Understanding Convolutional Networks, reproduced</h1>
<p>The notebooks of <b>zfcore</b>, executed on the <b>{e(profile)}</b> profile, in the order of
the paper:
M. D. Zeiler and R. Fergus, <i>Visualizing and Understanding Convolutional Networks</i>, ECCV 2014,
<a href="{ARXIV_ABS}">arXiv:{ARXIV_ID}</a>. Each page links to the section it reproduces.
{n_done} of {len(pages)} notebooks executed.</p>
<table>
<thead><tr><th>#</th><th>notebook</th><th>paper</th><th>figure</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
<p>Regenerate: <code>python -m zfcore.runner --profile {e(profile)}</code> then
<code>python -m zfcore.site --profile {e(profile)}</code>.</p>
</body></html>
"""


def _publish(path: Path, text: str) -> Path:
    """Write ``path`` atomically, readable by a web server (temporary files are created 0600)."""
    atomic_write_text(path, text)
    os.chmod(path, 0o644)
    return path


def build_site(
    profile: "str | Profile" = "mini",
    out: "str | Path | None" = None,
    notebooks: "list[Path] | None" = None,
    progress: bool = True,
) -> Path:
    """Write the site of ``profile``'s executed notebooks to ``out`` and return its index path.

    Raises :class:`SiteError` when no notebook of the profile has been executed yet.
    """
    from tqdm.auto import tqdm

    P = get_profile(profile)
    out = Path(out) if out is not None else site_dir(P.name)
    pages = collect_pages(P, notebooks)
    done = [p for p in pages if p.executed is not None]
    if not done:
        raise SiteError(
            f"no executed notebooks in {build_dir(P.name)}: run "
            f"python -m zfcore.runner --profile {P.name} first "
            f"(or python -m zfcore.site --profile {P.name} --run-missing)"
        )
    out.mkdir(parents=True, exist_ok=True)
    thumbs_dir = out / "figures"
    thumbnails: dict[str, str] = {}
    for p in pages:
        if p.thumbnail is not None:
            thumbs_dir.mkdir(exist_ok=True)
            shutil.copyfile(p.thumbnail, thumbs_dir / p.thumbnail.name)
            os.chmod(thumbs_dir / p.thumbnail.name, 0o644)
            thumbnails[p.stem] = f"figures/{p.thumbnail.name}"
    exporter = _exporter()
    for i, p in enumerate(tqdm(done, desc=f"site ({P.name})", unit="page", disable=not progress)):
        prev = done[i - 1] if i > 0 else None
        nxt = done[i + 1] if i + 1 < len(done) else None
        _publish(out / p.html_name, render_notebook(p, prev, nxt, P.name, exporter))
    index = _publish(out / "index.html", render_index(pages, P.name, thumbnails))
    return index


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m zfcore.site",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--profile", default="mini", choices=list(PROFILES))
    ap.add_argument("--out", default=None, help="output folder (default build/site/<profile>)")
    ap.add_argument(
        "--run-missing",
        action="store_true",
        help="execute the notebooks that have no executed copy yet first",
    )
    args = ap.parse_args(argv)
    if args.run_missing:
        from .runner import NotebookFailed, run_notebook

        for p in collect_pages(args.profile):
            if p.executed is None:
                print(f"executing {p.stem} ...", flush=True)
                try:
                    run_notebook(p.source, args.profile)
                except NotebookFailed as e:
                    print(f"FAILED: {e}", file=sys.stderr)
                    return 1
    try:
        index = build_site(args.profile, args.out)
    except SiteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"site: {index}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
