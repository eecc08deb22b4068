"""Every benchmark runs (``--quick``) and ends with its ``RESULT <name> key=value ...`` line, the
contract `make bench` and labs' CI rely on. Speed itself is the benchmarks' business, not the
tests': nothing here asserts a time or a ratio."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# occlusion and gpu have their own smoke tests (test_occlusion.py, test_gpu_benchmark.py)
NAMES = sorted(
    p.stem for p in (ROOT / "benchmarks").glob("[a-z]*.py") if p.stem not in ("occlusion", "gpu")
)


@pytest.mark.parametrize("name", NAMES)
def test_benchmark_quick_run_ends_with_result_line(name):
    out = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, f"benchmarks.{name} failed:\n{out.stderr[-2000:]}"
    last = out.stdout.strip().splitlines()[-1]
    assert re.fullmatch(rf"RESULT {name}( [A-Za-z0-9_]+=[^ =]+)+", last), (
        f"benchmarks.{name} must end with 'RESULT {name} key=value ...', got: {last!r}"
    )


def test_train_benchmark_times_the_profiles_own_batches():
    import torch

    from benchmarks.train import schedule_images, training_batches
    from zfcore.profiles import get_profile

    p = get_profile("tiny")
    x, y, batches = training_batches(p, 2)
    assert [len(by) for _, by in batches] == [p.batch_size] * 2 and len(x) == 2 * p.batch_size
    assert sorted(torch.cat([by for _, by in batches]).tolist()) == sorted(y.tolist())
    mini = get_profile("mini")
    assert schedule_images(mini) == mini.epochs * (mini.n_train - mini.n_train % mini.batch_size)


def test_train_benchmark_measures_a_chosen_precision(capsys):
    """``--precision bf16`` trains the trainer and the bare loop in bfloat16, so
    ``speedup_vs_fp32_loop`` is what bfloat16 gains or loses on this CPU (the README points
    there instead of typing a ratio)."""
    from benchmarks import train

    assert train.main(["--quick", "--precision", "bf16", "--batches", "1"]) == 0
    out = capsys.readouterr().out
    assert ", bf16, " in out  # the header names the arithmetic both loops ran in
    assert out.strip().splitlines()[-1].split()[1:2] == ["train"]
    assert " precision=bf16 " in out.strip().splitlines()[-1]


def test_study_benchmark_reports_both_ways_of_training():
    from zfcore.profiles import get_profile

    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.study", "--quick"],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, f"benchmarks.study failed:\n{out.stderr[-2000:]}"
    line = out.stdout.strip().splitlines()[-1].split()
    assert line[:2] == ["RESULT", "study"]
    r = {k: float(v) for k, v in (kv.split("=") for kv in line[2:]) if k != "profile"}
    for key in (
        "speedup_side_by_side",
        "images_per_s_side_by_side",
        "images_per_s_one_process",
        "study_hours_side_by_side",
        "study_hours_one_process",
    ):
        assert r[key] > 0, key
    assert r["batch_size"] == get_profile("tiny").batch_size
    # both estimates are the same work (the study's images) at each arm's rate
    assert r["study_hours_side_by_side"] * r["images_per_s_side_by_side"] == pytest.approx(
        r["study_hours_one_process"] * r["images_per_s_one_process"], rel=0.02
    )
