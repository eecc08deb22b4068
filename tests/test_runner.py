"""zfcore.runner: which notebooks it picks, its parameters and its per-profile cell timeout."""

from __future__ import annotations

import pytest

from zfcore import runner
from zfcore.runner import list_notebooks, run_notebook

NOTEBOOKS = list_notebooks(None)


def test_runner_selects_by_number_and_name():
    if not NOTEBOOKS:
        pytest.skip("no notebooks")
    first = NOTEBOOKS[0]
    assert list_notebooks([first.stem.split("_")[0]]) == [first]
    assert list_notebooks([first.stem]) == [first]
    with pytest.raises(runner.NoSuchNotebook, match="no notebook matches"):
        list_notebooks(["99_nothing"])


def test_runner_rejects_bad_profile():
    from zfcore.profiles import ProfileError

    if not NOTEBOOKS:
        pytest.skip("no notebooks")
    with pytest.raises(ProfileError, match="unknown profile"):
        run_notebook(NOTEBOOKS[0], "enormous")


def test_parameters_and_timeouts_reach_every_notebook(monkeypatch):
    seen = {}

    def fake_run_all(profile, select, parameters, timeout):
        seen.update(profile=profile, select=select, parameters=parameters, timeout=timeout)
        return []

    monkeypatch.setattr(runner, "run_all", fake_run_all)
    monkeypatch.setattr(runner, "network_source", lambda profile: profile)
    args = ["--profile", "tiny", "09", "-p", "seeds=3", "-p", "train_missing=false", "-p", "x=a b"]
    assert runner.main(args) == 0
    assert seen == {
        "profile": "tiny",
        "select": ["09"],
        "parameters": {"seeds": 3, "train_missing": False, "x": "a b"},
        "timeout": -1,
    }
    assert runner.main(["--profile", "mini", "--cell-timeout", "0"]) == 0
    assert seen["timeout"] is None and seen["parameters"] == {}
    with pytest.raises(SystemExit):
        runner.main(["-p", "no-equals-sign"])


def test_cell_timeout_is_per_profile():
    assert runner.CELL_TIMEOUT.get("tiny") == 600
    assert runner.CELL_TIMEOUT.get("mini") is None
