"""The static site (zfcore.site): pages from executed notebooks, an index in paper order, paper
links."""

import base64
import io
import json
import re

import nbformat
import pytest
from PIL import Image

from zfcore import site
from zfcore.profiles import get_profile
from zfcore.runner import list_notebooks


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buf, format="PNG")
    return buf.getvalue()


def _notebook(title: str, figures: list[str], paper: dict | None = None, png: bytes | None = None):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["zfcore"] = {"figures": figures, **({"paper": paper} if paper else {})}
    code = nbformat.v4.new_code_cell("profile = 'tiny'")
    code.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# {title}\n\nWhat the [reader](x) sees first. More text."),
        code,
        nbformat.v4.new_code_cell("show()"),
    ]
    if png is not None:
        nb.cells[2].outputs = [
            nbformat.v4.new_output(
                "display_data",
                data={"image/png": base64.b64encode(png).decode(), "text/plain": "<Figure>"},
            ),
            nbformat.v4.new_output("stream", name="stdout", text="claim held: yes\n"),
        ]
        nb.cells[2].execution_count = 1
    return nb


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """Two source notebooks, the first executed with a figure, the second never run."""
    monkeypatch.setenv("ZFCORE_BUILD", str(tmp_path / "build"))
    src = tmp_path / "notebooks"
    src.mkdir()
    figure = _png((200, 30, 30))
    nbformat.write(_notebook("07 · Occlusion (Fig. 7)", ["panels"]), src / "07_occlusion.ipynb")
    nbformat.write(
        _notebook("08 · Correspondence", ["table"], paper={"section": "4.3", "item": "Table 1"}),
        src / "08_correspondence.ipynb",
    )
    executed = tmp_path / "build" / "notebooks" / "tiny"
    executed.mkdir(parents=True)
    nbformat.write(
        _notebook("07 · Occlusion (Fig. 7)", ["panels"], png=figure),
        executed / "07_occlusion.ipynb",
    )
    P = get_profile("tiny", figures_root=tmp_path / "figures")
    P.figures_dir.mkdir(parents=True)
    thumb = _png((10, 120, 10))
    (P.figures_dir / "07_occlusion_panels.png").write_bytes(thumb)
    return dict(
        profile=P,
        notebooks=sorted(src.glob("*.ipynb")),
        figure=figure,
        thumb=thumb,
        out=tmp_path / "site",
    )


def test_paper_ref_anchors_and_labels():
    assert site.PaperRef("4.2", "Fig. 7").anchor == "S4.SS2"
    assert site.PaperRef("3", "Fig. 3").anchor == "S3"
    assert (
        site.PaperRef("4.2", "Fig. 7").url == "https://ar5iv.labs.arxiv.org/html/1311.2901#S4.SS2"
    )
    assert site.PaperRef().url == "https://arxiv.org/abs/1311.2901"
    assert site.PaperRef("5.3", "Table 7").label == "Section 5.3, Table 7"
    # metadata wins over the table; the table is keyed by the notebook's number
    assert site.paper_ref("07_occlusion.ipynb") == site.PaperRef("4.2", "Fig. 7")
    assert (
        site.paper_ref("07_x", {"zfcore": {"paper": {"section": "9", "item": "Fig. 9"}}}).section
        == "9"
    )
    assert site.paper_ref("99_unknown") == site.PaperRef()


def test_every_repository_notebook_links_to_the_paper():
    for nb in list_notebooks():
        ref = site.paper_ref(nb, json.loads(nb.read_text()).get("metadata"))
        assert ref.section or ref.item, f"{nb.name}: add it to zfcore.paper.ITEMS"


@pytest.mark.slow
def test_build_site_pages_index_and_figures(tree):
    index = site.build_site(
        tree["profile"], tree["out"], notebooks=tree["notebooks"], progress=False
    )
    assert index == tree["out"] / "index.html"
    text = index.read_text()
    # paper order, the executed notebook linked, the other one with the command that executes it
    assert text.index("07 · Occlusion") < text.index("08 · Correspondence")
    assert 'href="07_occlusion.html"' in text
    assert "08_correspondence.html" not in text
    assert "python -m zfcore.runner --profile tiny 08" in text
    assert "https://ar5iv.labs.arxiv.org/html/1311.2901#S4.SS3" in text  # from metadata
    assert "What the reader sees first." in text  # summary, links stripped
    # the thumbnail is the saved figure, copied next to the index
    m = re.search(r'<img class="zf-thumb" src="([^"]+)"', text)
    assert m and (tree["out"] / m.group(1)).read_bytes() == tree["thumb"]

    page = (tree["out"] / "07_occlusion.html").read_text()
    assert 'href="index.html"' in page
    assert "Section 4.2, Fig. 7" in page and "#S4.SS2" in page
    assert "claim held: yes" in page
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert any(base64.b64decode(e) == tree["figure"] for e in embedded), "figure not inlined"
    assert not (tree["out"] / "08_correspondence.html").exists()
    for f in [index, tree["out"] / "07_occlusion.html", tree["out"] / m.group(1)]:
        assert f.stat().st_mode & 0o444 == 0o444, f"{f.name} is not readable by a web server"


def test_prev_next_links(tree, tmp_path):
    executed = tmp_path / "build" / "notebooks" / "tiny"
    nbformat.write(
        _notebook("08 · Correspondence", ["table"], png=_png((0, 0, 0))),
        executed / "08_correspondence.ipynb",
    )
    site.build_site(tree["profile"], tree["out"], notebooks=tree["notebooks"], progress=False)
    first = (tree["out"] / "07_occlusion.html").read_text()
    second = (tree["out"] / "08_correspondence.html").read_text()
    assert 'class="zf-next" href="08_correspondence.html"' in first and "zf-prev" not in first
    assert 'class="zf-prev" href="07_occlusion.html"' in second and "zf-next" not in second


def test_no_executed_notebooks_is_a_clear_error(tree, tmp_path):
    (tmp_path / "build" / "notebooks" / "tiny" / "07_occlusion.ipynb").unlink()
    with pytest.raises(site.SiteError, match="python -m zfcore.runner --profile tiny"):
        site.build_site(tree["profile"], tree["out"], notebooks=tree["notebooks"], progress=False)


def test_corrupt_executed_notebook_names_the_file(tree, tmp_path):
    bad = tmp_path / "build" / "notebooks" / "tiny" / "07_occlusion.ipynb"
    bad.write_text('{"cells": "not a list"}')
    with pytest.raises(site.SiteError, match="07_occlusion.ipynb"):
        site.build_site(tree["profile"], tree["out"], notebooks=tree["notebooks"], progress=False)


def test_cli_rejects_unknown_profile(capsys):
    with pytest.raises(SystemExit):
        site.main(["--profile", "enormous"])
    assert "invalid choice" in capsys.readouterr().err


def test_summary_is_the_first_sentence_not_an_abbreviation():
    f = site._first_sentence
    assert f("Section 3 and Fig. 3: the network. More.") == "Section 3 and Fig. 3: the network."
    assert f("Adebayo et al. (2018) test it. Then more.") == "Adebayo et al. (2018) test it."
    assert f("Peers, e.g. Captum, exist. More.") == "Peers, e.g. Captum, exist."
    assert f("See Figs. 1 and 2. Next.") == "See Figs. 1 and 2."
    assert f("no full stop") == "no full stop"


def test_widget_views_become_a_note_and_nothing_loads_from_a_cdn(tree):
    """Offline, nbconvert's widget manager (fetched from unpkg.com) would leave a blank area."""
    nb = nbformat.read(
        str(tree["out"].parent / "build" / "notebooks" / "tiny" / "07_occlusion.ipynb"),
        as_version=4,
    )
    view = {"model_id": "abc", "version_major": 2, "version_minor": 0}
    nb.cells[2].outputs.append(
        nbformat.v4.new_output(
            "display_data",
            data={"application/vnd.jupyter.widget-view+json": view, "text/plain": "Explorer()"},
        )
    )
    nb.metadata["widgets"] = {
        "application/vnd.jupyter.widget-state+json": {
            "state": {},
            "version_major": 2,
            "version_minor": 0,
        }
    }
    nbformat.write(
        nb, str(tree["out"].parent / "build" / "notebooks" / "tiny" / "07_occlusion.ipynb")
    )
    site.build_site(tree["profile"], tree["out"], notebooks=tree["notebooks"], progress=False)
    html = (tree["out"] / "07_occlusion.html").read_text()
    assert "An interactive widget stands here" in html
    assert "unpkg.com" not in html and "widget-view+json" not in html
    assert "claim held: yes" in html  # the rest of the page is untouched
