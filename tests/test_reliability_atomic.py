"""Atomic writes: killing a run at any moment leaves every previous file whole.

A real child process rewriting a checkpoint-style tensor file (save_tensors), a JSON file
(atomic_write_json, as Report.save) and a PNG (atomic_savefig, as Report.savefig) is SIGKILLed
at random moments (120 times here; ``python tests/helpers/killtest.py --kills 500`` for more)
and once at every fsync/rename boundary of the write protocol; every
file must then load, pass its checksum and never go back to an older version. The same harness
against a naive writer finds broken files, so the check can fail. See tests/helpers/killtest.py.
"""

import os
import sys

import pytest
from helpers import killtest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@pytest.mark.slow
def test_random_kills_leave_no_corrupt_file(tmp_path):
    kills = int(os.environ.get("ZFCORE_KILLS", "120"))
    rep = killtest.random_kills(tmp_path / "random", kills=kills, seed=0)
    print("\nRESULT kill_test random", rep.line(), file=sys.stderr)
    assert rep.kills == kills
    assert rep.corrupt == 0, rep.problems[:5]
    assert rep.rolled_back == 0, rep.problems[:5]
    assert rep.files_checked == 3 * kills
    # the kills did land while files were being written, and the writers made progress
    assert rep.mid_write > 0 and rep.writes_completed > 0


@pytest.mark.slow
def test_kills_at_every_write_boundary(tmp_path):
    rep = killtest.boundary_kills(tmp_path / "boundary")
    print("\nRESULT kill_test boundary", rep.line(), file=sys.stderr)
    # save_tensors: 3 fsyncs and 3 renames; json and figure: 1 + 1 each
    assert rep.kills == 2 * (5 + 5)
    assert rep.problems == [] and rep.corrupt == 0


@pytest.mark.slow
def test_the_check_catches_a_non_atomic_writer(tmp_path):
    rep = killtest.naive_control(tmp_path / "naive", kills=12)
    assert rep.corrupt > 0, "a truncating writer killed mid-write must leave broken files"


def test_previous_checksum_protocol_is_what_the_fix_is_for(tmp_path, monkeypatch):
    """Kill between 'checksum of the new file written' and 'new file renamed into place':
    the previous checkpoint must still load (it did not before the three-step protocol)."""
    import torch

    from zfcore import cache

    p = tmp_path / "ckpt.pt"
    cache.save_tensors(p, {"w": torch.zeros(3)})
    real = cache.atomic_write_bytes

    def dies(path, data):
        if str(path).endswith(".sha256"):
            return real(path, data)
        raise KeyboardInterrupt("killed before the data rename")

    monkeypatch.setattr(cache, "atomic_write_bytes", dies)
    with pytest.raises(KeyboardInterrupt):
        cache.save_tensors(p, {"w": torch.ones(3)})
    monkeypatch.setattr(cache, "atomic_write_bytes", real)
    assert torch.equal(cache.load_tensors(p)["w"], torch.zeros(3))
    cache.save_tensors(p, {"w": torch.ones(3)})
    assert torch.equal(cache.load_tensors(p)["w"], torch.ones(3))
    assert len((tmp_path / "ckpt.pt.sha256").read_text().split()) == 1


def test_report_writes_go_through_the_atomic_writers(tmp_path, monkeypatch):
    """Report.savefig/save/table must use zfcore.cache's atomic writers (not open(..., 'w'))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zfcore import report

    calls = []
    for name in ("atomic_savefig", "atomic_write_json", "atomic_write_text"):
        real = getattr(report, name)
        monkeypatch.setattr(
            report, name, lambda *a, _r=real, _n=name, **k: (calls.append(_n), _r(*a, **k))[1]
        )
    from zfcore.profiles import get_profile

    rep = report.Report("99_test", get_profile("tiny", figures_root=tmp_path))
    fig, ax = plt.subplots()
    rep.savefig(fig, "f")
    plt.close(fig)
    rep.record(x=1)
    rep.table([{"a": 1}], "t")
    rep.save()
    assert calls == ["atomic_savefig", "atomic_write_text", "atomic_write_json"]
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == [
        "99_test.json",
        "99_test_f.png",
        "99_test_t.csv",
    ]
