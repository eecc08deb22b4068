"""Where zfcore writes: a checkout keeps everything inside it; an installed package writes to the
user's cache and the working directory, never next to itself; a read-only folder names the
variable that moves it; notebooks write the figures of record only when asked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from zfcore import locations
from zfcore.cache import entry_lock
from zfcore.locations import LocationError
from zfcore.profiles import get_profile
from zfcore.report import Report

ROOT = Path(__file__).resolve().parent.parent
VARIABLES = (
    "ZFCORE_CACHE",
    "ZFCORE_FIGURES",
    "ZFCORE_BUILD",
    "ZFCORE_SAVE_FIGURES",
    "XDG_CACHE_HOME",
)


@pytest.fixture
def clean_env(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def installed(clean_env, tmp_path):
    """zfcore as if installed into site-packages (no checkout around it); home and working
    directory in a temporary folder."""
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    (site / "zfcore").mkdir(parents=True)
    clean_env.setattr(locations, "package_dir", lambda: site / "zfcore")
    clean_env.setenv("HOME", str(tmp_path / "home"))
    work = tmp_path / "work"
    work.mkdir()
    clean_env.chdir(work)
    return site, work


def test_a_checkout_keeps_everything_inside(clean_env):
    assert locations.checkout_root() == ROOT
    assert locations.cache_root() == ROOT / ".cache"
    assert locations.figures_root() == ROOT / "figures"
    assert locations.build_root() == ROOT / "build"


def test_checkout_detection(tmp_path):
    locations._is_checkout.cache_clear()
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / "pyproject.toml").write_text('[project]\nname = "zfcore"\n')
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    (tmp_path / "git").mkdir()
    (tmp_path / "git" / ".git").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "pyproject.toml").write_text("not [toml")
    assert locations._is_checkout(tmp_path / "ours") and locations._is_checkout(tmp_path / "git")
    assert not locations._is_checkout(tmp_path / "other") and not locations._is_checkout(
        tmp_path / "broken"
    )


def test_installed_writes_to_the_user_cache_and_the_working_directory(
    installed, clean_env, tmp_path
):
    site, work = installed
    assert locations.checkout_root() is None
    assert locations.cache_root() == tmp_path / "home" / ".cache" / "zfcore"
    assert locations.figures_root() == work / "figures"
    assert locations.build_root() == tmp_path / "home" / ".cache" / "zfcore" / "build"
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert locations.cache_root() == tmp_path / "xdg" / "zfcore"
    for path in (locations.cache_root(), locations.figures_root(), locations.build_root()):
        assert site not in path.parents


def test_variables_override_everywhere(installed, tmp_path, monkeypatch):
    for name, fn in (
        ("ZFCORE_CACHE", locations.cache_root),
        ("ZFCORE_FIGURES", locations.figures_root),
        ("ZFCORE_BUILD", locations.build_root),
    ):
        monkeypatch.setenv(name, str(tmp_path / name))
        assert fn() == tmp_path / name


def test_a_read_only_checkout_counts_as_installed(clean_env, monkeypatch):
    monkeypatch.setattr(locations.os, "access", lambda path, mode: False)
    assert locations.checkout_root() is None


def test_read_only_folders_name_the_variable(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(LocationError, match="set ZFCORE_CACHE to a writable folder") as e:
        with entry_lock(blocker / "train" / "0123"):
            pass
    assert isinstance(e.value, OSError)
    monkeypatch.setattr(locations.os, "access", lambda path, mode: False)
    with pytest.raises(LocationError, match="ZFCORE_FIGURES"):
        locations.writable_dir(tmp_path / "figures", "ZFCORE_FIGURES")


def test_report_writes_the_figures_of_record_only_when_asked(clean_env, tmp_path):
    clean_env.setenv("ZFCORE_BUILD", str(tmp_path / "build"))
    P = get_profile("tiny", figures_root=locations.figures_root())  # the standard folder
    draft = Report("99_check", P)
    assert draft.dir == tmp_path / "build" / "figures" / "tiny"
    draft.record(x=1)
    assert draft.save() == tmp_path / "build" / "figures" / "tiny" / "99_check.json"
    assert not (P.figures_dir / "99_check.json").exists()
    clean_env.setenv("ZFCORE_SAVE_FIGURES", "1")
    assert Report("99_check", P).dir == P.figures_dir
    clean_env.delenv("ZFCORE_SAVE_FIGURES")
    chosen = get_profile("tiny", figures_root=tmp_path / "mine")
    assert Report("99_check", chosen).dir == tmp_path / "mine" / "tiny"
    clean_env.setenv("ZFCORE_FIGURES", str(tmp_path / "env"))
    assert locations.saving_figures()


def test_report_in_a_read_only_folder_names_the_variable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    rep = Report("99_check", get_profile("tiny", figures_root=blocker))
    with pytest.raises(LocationError, match="ZFCORE_FIGURES"):
        rep.save()


@pytest.mark.notebook
def test_the_runner_asks_for_the_figures_of_record(tmp_path, clean_env):
    from zfcore.runner import run_notebook

    clean_env.setenv("ZFCORE_BUILD", str(tmp_path / "build"))
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    params = nbformat.v4.new_code_cell('profile = "tiny"')
    params.metadata["tags"] = ["parameters"]
    out = tmp_path / "seen.json"
    nb.cells = [
        nbformat.v4.new_markdown_cell("# check"),
        params,
        nbformat.v4.new_code_cell(
            f"import json, os\nfrom zfcore.locations import saving_figures\n"
            f"json.dump({{'save': os.environ.get('ZFCORE_SAVE_FIGURES'), 'saving': "
            "saving_figures()}, "
            f"open({str(out)!r}, 'w'))"
        ),
    ]
    path = tmp_path / "99_check.ipynb"
    nbformat.write(nb, path)
    run_notebook(path, "tiny")
    assert json.loads(out.read_text()) == {"save": "1", "saving": True}
    assert "ZFCORE_SAVE_FIGURES" not in os.environ
