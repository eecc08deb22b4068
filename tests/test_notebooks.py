"""Every notebook in notebooks/ runs on the tiny profile through papermill and leaves the
figures it promises (its metadata's ``zfcore.figures``) in figures/tiny/."""
import json

import pytest

from zfcore.profiles import get_profile
from zfcore.runner import NotebookFailed, list_notebooks, promised_figures, run_notebook

NOTEBOOKS = list_notebooks()


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_on_tiny(path):
    try:
        run_notebook(path, "tiny")
    except NotebookFailed as e:  # the failing cell's error, not papermill's traceback soup
        pytest.fail(str(e), pytrace=False)
    fig_dir = get_profile("tiny").figures_dir
    missing = [f for f in promised_figures(path)
               if not (fig_dir / f"{path.stem}_{f}.png").is_file()]
    assert not missing, f"{path.name} did not save {missing} in {fig_dir}"
    numbers = fig_dir / f"{path.stem}.json"
    assert numbers.is_file(), f"{path.name} did not write {numbers}"
    json.loads(numbers.read_text())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean(path):
    nb = json.loads(path.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    assert "profile" in "".join(tagged[0]["source"])
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            assert not c.get("outputs") and c.get("execution_count") is None, \
                f"{path.name} is committed with outputs; clear them"
    assert nb["cells"][0]["cell_type"] == "markdown"
    assert "figures" in nb["metadata"].get("zfcore", {}), f"{path.name}: metadata.zfcore.figures missing"


def test_runner_selects_by_number_and_name():
    if not NOTEBOOKS:
        pytest.skip("no notebooks")
    first = NOTEBOOKS[0]
    assert list_notebooks([first.stem.split("_")[0]]) == [first]
    assert list_notebooks([first.stem]) == [first]
    with pytest.raises(SystemExit, match="no notebook matches"):
        list_notebooks(["99_nothing"])


def test_runner_rejects_bad_profile():
    from zfcore.profiles import ProfileError
    if not NOTEBOOKS:
        pytest.skip("no notebooks")
    with pytest.raises(ProfileError, match="unknown profile"):
        run_notebook(NOTEBOOKS[0], "enormous")
