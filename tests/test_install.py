"""zfcore as an installed library: a wheel built from the sources, installed into a fresh virtual
environment, imported from an unrelated folder. Offline: the wheel is built without build
isolation and installed without dependencies; the fresh environment sees this environment's
packages (torch, ...) through a ``.pth`` line, as an environment with its own torch would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
NOT_BASE = {
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
    "notebook",
    "jupyter-server",
}

PROBE = """
import json, os, sys
from pathlib import Path
import zfcore
from zfcore.profiles import get_profile
from zfcore.locations import checkout_root
from zfcore.train import shipped

P = get_profile("tiny")
print(json.dumps({"file": zfcore.__file__, "cache": str(P.cache_dir), "figures": str(P.figures_dir),
                  "checkout": str(checkout_root()), "weights": str(shipped.WEIGHTS_DIR),
                  "shipped": sorted(p.name for p in shipped.WEIGHTS_DIR.glob("*.safetensors"))}))
"""


def _run(cmd, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"  # the sources alone: the build leaves nothing in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "zfcore", src / "zfcore", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            tmp / "wheels",
            src,
        ]
    )
    wheel = next((tmp / "wheels").glob("zfcore-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv])
    site = Path(
        _run(
            [
                venv / "bin" / "python",
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ]
        ).strip()
    )
    (site / "zz_checkout_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            venv / "bin" / "python",
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            wheel,
        ]
    )
    return tmp, venv, site, wheel


def _probe(venv, cwd, **env):
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith("ZFCORE_") and k != "XDG_CACHE_HOME"
    }
    out = _run([venv / "bin" / "python", "-c", PROBE], cwd=cwd, env={**clean, **env})
    return json.loads(out.strip().splitlines()[-1])


def test_installed_package_writes_outside_site_packages(installed, tmp_path):
    tmp, venv, site, _ = installed
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    got = _probe(venv, work, HOME=str(home))
    assert Path(got["file"]).parent == site / "zfcore", "imported the checkout, not the wheel"
    assert got["checkout"] == "None"
    assert Path(got["cache"]) == home / ".cache" / "zfcore"
    assert Path(got["figures"]) == work / "figures" / "tiny"
    for key in ("cache", "figures"):
        assert site not in Path(got[key]).parents and ROOT not in Path(got[key]).parents
    got = _probe(venv, work, HOME=str(home), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    assert Path(got["cache"]) == tmp_path / "xdg" / "zfcore"
    shipped_here = sorted(p.name for p in (ROOT / "zfcore" / "weights").glob("*.safetensors"))
    assert got["shipped"] == shipped_here, "the shipped weights are not in the wheel"
    assert Path(got["weights"]).parent == site / "zfcore"


def test_console_scripts_are_installed(installed):
    tmp, venv, site, _ = installed
    for name in (
        "zfcore-explain",
        "zfcore-train",
        "zfcore-figures",
        "zfcore-report",
        "zfcore-site",
    ):
        assert (venv / "bin" / name).is_file(), name
    assert "--retrain" in _run([venv / "bin" / "zfcore-train", "--help"], cwd=tmp)


def test_base_requirements_list_no_test_tool_or_notebook_server(installed):
    _, _, site, wheel = installed
    meta_file = next(site.glob("zfcore-*.dist-info")) / "METADATA"
    meta = Parser().parsestr(meta_file.read_text())
    requires = meta.get_all("Requires-Dist") or []
    base = {
        r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
        for r in requires
        if "extra ==" not in r
    }
    assert {"torch", "torchvision", "numpy", "safetensors"} <= base
    assert not base & NOT_BASE, f"base requirements include {sorted(base & NOT_BASE)}"
    assert set(meta.get_all("Provides-Extra")) >= {"notebooks", "dev"}
    with zipfile.ZipFile(wheel) as z:
        assert not [n for n in z.namelist() if n.startswith(("tests/", "notebooks/", "figures/"))]
