"""``python -m benchmarks.gpu --quick``: every part of the first-GPU check runs (on the CPU here,
its own reference), ends with its ``RESULT gpu ...`` line, and every agreement check passes. The
speeds it prints are the benchmark's business, not the tests'."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def test_quick_run_checks_every_path_and_agrees():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--quick", "--device", "cpu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    last = out.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"RESULT gpu( [A-Za-z0-9_]+=[^ =]+)+", last), last
    fields = dict(kv.split("=", 1) for kv in last.split()[2:])
    passed, total = map(int, fields["checks_passed"].split("/"))
    assert total >= 20 and passed == total and fields["all_agree"] == "yes", out.stdout[-4000:]
    assert fields["device"] == "cpu" and fields["stopped_early"] == "0"
    for part in (
        "first-step loss",
        "torchrun --nproc_per_node=1 (gloo, DDP)",
        "deconvnet: device",
        "guided: ours vs Captum",
        "alexnet: fast on cpu",
        "top-9 values",
        "features of layers",
    ):
        assert part in out.stdout, f"no check of {part!r}"
    assert "make figures on this device" in out.stdout
