"""zfcore.report: the provenance every notebook's JSON carries."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import time

import pytest
import torch

from zfcore import __version__, report
from zfcore.cache import config_hash
from zfcore.models import model_fingerprint, zfnet
from zfcore.profiles import get_profile
from zfcore.report import Report, ReportError, provenance

# --------------------------------------------------------------------------------------------
# provenance
# --------------------------------------------------------------------------------------------


def test_save_writes_provenance(tmp_path):
    P = get_profile("tiny", figures_root=tmp_path)
    t0 = time.perf_counter()
    rep = Report("99_demo", P)
    model = zfnet(**P.model_kwargs()).eval()
    assert rep.uses_model("zf", model) == model_fingerprint(model)
    rep.record(x=1)
    time.sleep(0.05)
    data = json.loads(rep.save().read_text())
    elapsed = time.perf_counter() - t0
    prov = data["provenance"]
    assert set(prov) == {
        "commit",
        "zfcore_version",
        "profile",
        "profile_hash",
        "models",
        "date",
        "wall_time_s",
    }
    assert prov["zfcore_version"] == __version__ and prov["profile"] == "tiny"
    assert prov["profile_hash"] == config_hash(get_profile("tiny").identity())
    assert prov["profile_hash"] != config_hash(get_profile("mini").identity())
    assert prov["models"] == {"zf": model_fingerprint(model)}
    assert 0.05 <= prov["wall_time_s"] <= elapsed + 1e-3
    when = dt.datetime.fromisoformat(prov["date"])
    assert (
        when.tzinfo is not None
        and abs((dt.datetime.now(dt.timezone.utc) - when).total_seconds()) < 60
    )
    assert prov["commit"] == report.git_commit()
    assert data["x"] == 1


def test_uses_model_accepts_runs_and_fingerprints_and_rejects_the_rest(tmp_path):
    rep = Report("99_demo", get_profile("tiny", figures_root=tmp_path))
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))

    class Run:  # what zfcore.train.training_run returns: the network via .model()
        def model(self):
            return net

    assert rep.uses_models({"run": Run()}, given="abc123") == {
        "run": model_fingerprint(net),
        "given": "abc123",
    }
    with torch.no_grad():
        net[0].weight.add_(1.0)
    assert rep.uses_model("changed", net) != rep.models["run"]
    with pytest.raises(ReportError, match="cannot fingerprint list"):
        rep.uses_model("bad", [1, 2])
    with pytest.raises(ReportError, match="non-empty"):
        rep.uses_model("", net)
    with pytest.raises(ReportError, match="written by Report.save"):
        rep.record(provenance={"commit": "forged"})


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to build a test checkout")
def test_git_commit_clean_dirty_and_not_a_checkout(tmp_path):
    assert report.git_commit(tmp_path) == "unknown"  # not a git checkout at all
    repo = tmp_path / "repo"
    (repo / "figures").mkdir(parents=True)

    def git(*a):
        return subprocess.run(
            ["git", "-C", str(repo), *a], check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q")
    (repo / "code.py").write_text("x = 1\n")
    (repo / "figures" / "a.json").write_text("{}\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    head = git("rev-parse", "HEAD")
    assert report.git_commit(repo) == head
    (repo / "figures" / "a.json").write_text('{"new": 1}\n')  # outputs being regenerated
    assert report.git_commit(repo) == head
    (repo / "code.py").write_text("x = 2\n")  # the code changed
    assert report.git_commit(repo) == head + "-dirty"
    # a folder inside a checkout is not the checkout (e.g. a venv's site-packages)
    assert report.git_commit(repo / "figures") == "unknown"


# --------------------------------------------------------------------------------------------
# README generation and check
# --------------------------------------------------------------------------------------------


def test_provenance_names_commit_profile_and_models():
    prov = provenance("tiny", {"zf": "abc123"}, 1.23456)
    assert prov["profile"] == "tiny" and prov["models"] == {"zf": "abc123"}
    assert prov["wall_time_s"] == 1.235 and prov["zfcore_version"] == __version__
    assert prov["commit"]
