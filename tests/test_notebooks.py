"""Every notebook in notebooks/ runs on the tiny profile through papermill and leaves the
figures it promises (its metadata's ``zfcore.figures``) in figures/tiny/, and a JSON of numbers
that says where they came from (its ``provenance``) and, for the notebooks that test the paper's
claims, at least one verdict in the three words of ``zfcore.paper.verdicts``."""

import datetime as dt
import json
import re

import pytest

from zfcore import __version__
from zfcore.paper.verdicts import VERDICTS
from zfcore.profiles import get_profile
from zfcore.report import profile_hash
from zfcore.runner import NotebookFailed, list_notebooks, promised_figures, run_notebook

NOTEBOOKS = list_notebooks()

#: Notebooks that test comparison claims of the paper: each records at least one verdict_<claim>.
#: (00 is a tour, 01 checks sizes exactly, 02 checks the deconvnet's mechanism by exact equalities,
#: 12 is the explorer: they may record none.)
CLAIM_NOTEBOOKS = {"03", "04", "05", "06", "07", "08", "09", "10", "11", "13"}
#: Notebooks whose numbers come from a network they register (Report.uses_model); 01 measures
#: untrained layouts only.
MODEL_NOTEBOOKS = {"00", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13"}
PROVENANCE_KEYS = {
    "commit",
    "zfcore_version",
    "profile",
    "profile_hash",
    "models",
    "date",
    "wall_time_s",
}


def numbers_problems(stem: str, data: dict, profile: str) -> list[str]:
    """What is wrong with a notebook's JSON: its provenance and its verdicts."""
    problems = []
    prov = data.get("provenance")
    if not isinstance(prov, dict):
        return [f"{stem}.json has no provenance object (Report.save writes it)"]
    if set(prov) != PROVENANCE_KEYS:
        problems.append(f"provenance keys {sorted(prov)}, expected {sorted(PROVENANCE_KEYS)}")
    if not re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", str(prov.get("commit"))):
        problems.append(f"provenance commit {prov.get('commit')!r} is not a git hash or 'unknown'")
    if prov.get("zfcore_version") != __version__:
        problems.append(f"zfcore_version {prov.get('zfcore_version')!r}, expected {__version__!r}")
    if prov.get("profile") != profile or prov.get("profile_hash") != profile_hash(profile):
        problems.append(
            f"profile {prov.get('profile')!r} / hash {prov.get('profile_hash')!r}, expected "
            f"{profile!r} / {profile_hash(profile)!r}"
        )
    models = prov.get("models")
    if not isinstance(models, dict) or not all(isinstance(v, str) and v for v in models.values()):
        problems.append(f"provenance models {models!r} is not a mapping of names to fingerprints")
    elif stem[:2] in MODEL_NOTEBOOKS and not models:
        problems.append("no model registered: add rep.uses_model(name, model) before rep.save()")
    try:
        dt.datetime.fromisoformat(str(prov.get("date")))
    except ValueError:
        problems.append(f"provenance date {prov.get('date')!r} is not ISO 8601")
    if not (isinstance(prov.get("wall_time_s"), (int, float)) and prov["wall_time_s"] >= 0):
        problems.append(f"provenance wall_time_s {prov.get('wall_time_s')!r} is not a duration")
    verdicts = {k: v for k, v in data.items() if k.startswith("verdict_")}
    problems += [
        f"{k} = {v!r} is not one of {VERDICTS}" for k, v in verdicts.items() if v not in VERDICTS
    ]
    if stem[:2] in CLAIM_NOTEBOOKS and not verdicts:
        problems.append(
            "records no verdict_<claim> (zfcore.paper.verdicts ... .record(rep)) although it "
            "tests a claim of the paper"
        )
    return problems


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_on_tiny(path):
    try:
        run_notebook(path, "tiny")
    except NotebookFailed as e:  # the failing cell's error, not papermill's traceback soup
        pytest.fail(str(e), pytrace=False)
    fig_dir = get_profile("tiny").figures_dir
    missing = [
        f for f in promised_figures(path) if not (fig_dir / f"{path.stem}_{f}.png").is_file()
    ]
    assert not missing, f"{path.name} did not save {missing} in {fig_dir}"
    numbers = fig_dir / f"{path.stem}.json"
    assert numbers.is_file(), f"{path.name} did not write {numbers}"
    problems = numbers_problems(path.stem, json.loads(numbers.read_text()), "tiny")
    assert not problems, f"{numbers}:\n" + "\n".join(problems)


def test_numbers_check_catches_what_it_should():
    from zfcore.report import git_commit

    good = {
        "verdict_a": "held",
        "provenance": {
            "commit": git_commit(),
            "zfcore_version": __version__,
            "profile": "tiny",
            "profile_hash": profile_hash("tiny"),
            "models": {"zf": "0123abcd"},
            "date": "2026-01-01T00:00:00+00:00",
            "wall_time_s": 1.5,
        },
    }
    assert numbers_problems("07_occlusion", good, "tiny") == []
    assert numbers_problems("01_architecture", {**good, "verdict_a": "held"}, "tiny") == []
    bad = json.loads(json.dumps(good))
    bad["provenance"].update(commit="abc", models={}, profile_hash="0" * 16)
    bad["verdict_b"] = "yes"
    text = "\n".join(numbers_problems("07_occlusion", bad, "tiny"))
    for what in (
        "not a git hash",
        "no model registered",
        "hash '0000000000000000'",
        "'yes' is not one of",
    ):
        assert what in text
    no_verdict = {"provenance": good["provenance"]}
    assert "records no verdict_" in "".join(numbers_problems("07_occlusion", no_verdict, "tiny"))
    assert numbers_problems("12_explorer", no_verdict, "tiny") == []
    assert "no provenance object" in numbers_problems("00_quickstart", {}, "tiny")[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean(path):
    nb = json.loads(path.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    assert "profile" in "".join(tagged[0]["source"])
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            assert not c.get("outputs") and c.get("execution_count") is None, (
                f"{path.name} is committed with outputs; clear them"
            )
    assert nb["cells"][0]["cell_type"] == "markdown"
    assert "figures" in nb["metadata"].get("zfcore", {}), (
        f"{path.name}: metadata.zfcore.figures missing"
    )
