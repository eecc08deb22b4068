"""Notebooks with a bad parameter fail in their first cell, with the message.

Every notebook is checked statically: the code cell right after the ``parameters`` cell calls
``get_profile(profile)`` and uses every parameter (so it can validate it). Two notebooks are run
for real with papermill and a bad parameter: the error must come from that first cell, name the
bad value, and no later cell may run (nothing half-computed, no traceback soup from deep inside).
"""

import ast
import json
from pathlib import Path

import nbformat
import pytest

from zfcore.runner import list_notebooks

NOTEBOOKS = list_notebooks()


def _code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _parameters(path: Path) -> tuple[list[str], str]:
    cells = _code_cells(json.loads(path.read_text()))
    i = next(k for k, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
    tree = ast.parse("".join(cells[i]["source"]))
    names = []
    for node in tree.body:
        assert isinstance(node, ast.Assign), (
            f"{path.name}: the parameters cell may only assign values"
        )
        ast.literal_eval(node.value)  # plain values, so papermill can override them
        names += [t.id for t in node.targets]
    return names, "".join(cells[i + 1]["source"]) if i + 1 < len(cells) else ""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_first_cell_validates_every_parameter(path):
    names, first = _parameters(path)
    assert "profile" in names, f"{path.name}: no profile parameter"
    assert "get_profile(profile)" in first.replace(" ", ""), (
        f"{path.name}: the cell after the parameters must call get_profile(profile)"
    )
    used = {n.id for n in ast.walk(ast.parse(first)) if isinstance(n, ast.Name)}
    unchecked = [n for n in names if n not in used]
    assert not unchecked, f"{path.name}: parameters {unchecked} are not validated in the first cell"


def _run_bad(path: Path, tmp_path: Path, parameters: dict):
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    out = tmp_path / path.name
    with pytest.raises(PapermillExecutionError) as e:
        pm.execute_notebook(
            str(path),
            str(out),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(path.parent),
            progress_bar=False,
            log_output=False,
            execution_timeout=300,
        )
    nb = nbformat.read(out, as_version=4)
    cells = _code_cells(nb)
    injected = next(
        k for k, c in enumerate(cells) if "injected-parameters" in c["metadata"].get("tags", [])
    )
    failed = [
        k
        for k, c in enumerate(cells)
        if any(o.get("output_type") == "error" for o in c.get("outputs", []))
    ]
    assert failed == [injected + 1], f"{path.name}: failed in code cell(s) {failed}, not the first"
    assert all(c.get("execution_count") is None for c in cells[injected + 2 :]), (
        f"{path.name}: cells after the failing one ran"
    )
    return e.value


@pytest.mark.notebook
def test_bad_profile_fails_in_the_first_cell(tmp_path):
    path = next((p for p in NOTEBOOKS if p.stem.startswith("01_")), None) or NOTEBOOKS[0]
    err = _run_bad(path, tmp_path, {"profile": "nope"})
    assert err.ename == "ProfileError"
    assert "unknown profile 'nope'" in err.evalue and "tiny" in err.evalue


@pytest.mark.notebook
def test_bad_layer_fails_in_the_first_cell(tmp_path):
    path = next((p for p in NOTEBOOKS if p.stem.startswith("02_")), None)
    if path is None:
        pytest.skip("no 02 notebook")
    err = _run_bad(path, tmp_path, {"profile": "tiny", "layer": "layer9"})
    assert err.ename in ("ParameterError", "LayerError") and "layer9" in err.evalue
