"""The pinned set is the same in requirements.txt, pyproject.toml and environment.yml, and CI
runs exactly the README's test command."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pins(lines):
    return {l.split("==")[0].lower(): l.split("==")[1] for l in lines if "==" in l}


def requirements():
    lines = [l.strip() for l in (ROOT / "requirements.txt").read_text().splitlines()]
    return _pins([l for l in lines if l and not l.startswith("#")])


def pyproject():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return _pins(data["project"]["dependencies"])


def environment():
    text = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s*-\s*python=3\.11\s*$", text, re.M), "environment.yml must pin python=3.11"
    return _pins([m.group(1) for m in re.finditer(r"^\s*-\s*([A-Za-z0-9_.\-]+==\S+)\s*$", text, re.M)])


def test_torch_pins():
    req = requirements()
    assert req["torch"] == "2.14.1" and req["torchvision"] == "0.29.1"


def test_pins_agree():
    req, pyp, env = requirements(), pyproject(), environment()
    assert req == pyp, f"pyproject.toml differs from requirements.txt: {set(req.items()) ^ set(pyp.items())}"
    assert req == env, f"environment.yml differs from requirements.txt: {set(req.items()) ^ set(env.items())}"
    for name in ("jupyterlab", "ipywidgets", "matplotlib", "papermill", "ipykernel", "tqdm",
                 "scikit-learn", "scikit-image", "pytest"):
        assert name in req, f"{name} missing from the pinned set"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make figures" in readme
    ci_cmds = [l.strip() for l in ci.splitlines() if l.strip() and not l.strip().startswith("#")]
    assert "make test" in ci_cmds
