"""zfcore.paper.ITEMS, the one notebook-to-paper map: every notebook is on it, every module it
names exists and every notebook imports its paper side from that module."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from zfcore.paper import ITEMS, PaperError, item_for, items_table
from zfcore.paper.readme import MAP_BEGIN, MAP_END, ReportError, render_paper_map

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def test_every_notebook_is_on_the_map_in_order():
    stems = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert [it.notebook for it in ITEMS] == stems


@pytest.mark.parametrize("item", ITEMS, ids=[it.notebook for it in ITEMS])
def test_each_notebook_imports_its_paper_module(item):
    importlib.import_module(f"zfcore.paper.{item.module}")
    nb = json.loads((NOTEBOOKS / f"{item.notebook}.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert f"zfcore.paper.{item.module}" in code or f"paper import {item.module}" in code


def test_lookup_by_stem_file_or_number():
    assert item_for("07").module == "fig7_occlusion"
    assert item_for("notebooks/07_occlusion.ipynb").item == "Fig. 7"
    with pytest.raises(PaperError, match="no paper item"):
        item_for("99_nothing")


def test_the_map_block_is_regenerated_and_must_be_closed():
    text = f"intro\n{MAP_BEGIN}\nstale\n{MAP_END}\ntail\n"
    out = render_paper_map(text)
    assert out == f"intro\n{MAP_BEGIN}\n{items_table()}\n{MAP_END}\ntail\n"
    assert "stale" not in out and "`07_occlusion` | section 4.2, Fig. 7" in out
    assert render_paper_map("no markers") == "no markers"
    with pytest.raises(ReportError, match="without"):
        render_paper_map(f"{MAP_BEGIN} never closed")
