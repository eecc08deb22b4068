"""The pinned set is the same in requirements.txt, pyproject.toml and environment.yml, and CI
runs exactly the README's test command."""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def _pins(lines):
    return {canonicalize_name(l.split("==")[0]): l.split("==")[1] for l in lines if "==" in l}


def requirements():
    lines = [l.strip() for l in (ROOT / "requirements.txt").read_text().splitlines()]
    return _pins([l for l in lines if l and not l.startswith("#")])


def pyproject():
    """Every requirement of pyproject.toml, base and extras: ``{name: (Requirement, extra)}``."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = {}
    for extra, reqs in [("", data["dependencies"]), *data.get("optional-dependencies", {}).items()]:
        for text in reqs:
            r = Requirement(text)
            if r.name != "zfcore":  # dev pulls in zfcore[notebooks]
                found[canonicalize_name(r.name)] = (r, extra)
    return found


def environment():
    text = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s*-\s*python=3\.11\s*$", text, re.M), (
        "environment.yml must pin python=3.11"
    )
    return _pins(
        [m.group(1) for m in re.finditer(r"^\s*-\s*([A-Za-z0-9_.\-]+==\S+)\s*$", text, re.M)]
    )


def test_torch_pins():
    req = requirements()
    assert req["torch"] == "2.14.1" and req["torchvision"] == "0.29.1"


def test_pins_agree():
    req, env = requirements(), environment()
    assert req == env, (
        f"environment.yml differs from requirements.txt: {set(req.items()) ^ set(env.items())}"
    )
    for name in (
        "jupyterlab",
        "ipywidgets",
        "matplotlib",
        "papermill",
        "ipykernel",
        "tqdm",
        "scikit-learn",
        "scikit-image",
        "pytest",
        "ruff",
        "safetensors",
    ):
        assert name in req, f"{name} missing from the pinned set"


def test_pyproject_ranges_admit_the_pins():
    req, pyp = requirements(), pyproject()
    assert set(pyp) == set(req), (
        f"pyproject.toml and requirements.txt name different packages: "
        f"only in pyproject {sorted(set(pyp) - set(req))}, "
        f"only pinned {sorted(set(req) - set(pyp))}"
    )
    for name, (r, extra) in pyp.items():
        assert str(r.specifier) and "==" not in str(r.specifier), f"{r}: declare a range, not a pin"
        assert r.specifier.contains(req[name], prereleases=True), (
            f"pyproject.toml's {r} does not admit the tested {name}=={req[name]}"
        )


def test_base_requirements_are_what_zfcore_imports():
    """Test tools and notebook servers are extras; everything zfcore imports at run time is base."""
    pyp = pyproject()
    base = {n for n, (_, extra) in pyp.items() if not extra}
    assert {"torch", "torchvision", "numpy", "safetensors", "scikit-learn"} <= base
    assert not base & {
        "pytest",
        "pytest-xdist",
        "hypothesis",
        "playwright",
        "captum",
        "ruff",
        "jupyterlab",
        "voila",
        "papermill",
        "nbconvert",
        "nbformat",
        "ipykernel",
    }
    assert {n for n, (_, extra) in pyp.items() if extra == "notebooks"} >= {
        "jupyterlab",
        "papermill",
        "nbformat",
        "nbconvert",
        "ipykernel",
        "ipywidgets",
        "voila",
    }
    assert {n for n, (_, extra) in pyp.items() if extra == "dev"} >= {
        "pytest",
        "pytest-xdist",
        "hypothesis",
        "playwright",
        "captum",
        "ruff",
    }


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make figures" in readme
    ci_cmds = [l.strip() for l in ci.splitlines() if l.strip() and not l.strip().startswith("#")]
    assert "make test" in ci_cmds
