"""benchmarks/_result.py: a benchmark's RESULT line and, with ``--save DIR``, the same numbers
saved for the README's generated table (``zfcore.paper.readme``)."""

from __future__ import annotations

import argparse
import json

import pytest

from benchmarks import _result
from zfcore.paper.readme import load_benchmarks, render_benchmarks


def _parser():
    ap = argparse.ArgumentParser(prog="demo")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=3)
    return ap


def test_saved_run_holds_the_result_line_summary_and_where_it_ran(tmp_path, capsys):
    args, record = _result.parse(_parser(), ["--n", "5", "--save", str(tmp_path)], "demo")
    assert args.n == 5 and args.save == tmp_path
    out = record.finish(
        {"speedup": "2.50", "count": "7", "claim": "held", "hits": "3/40", "tiny": "1.1e-06"},
        summary="2.5x faster",
        target=">= 2x",
    )
    printed = capsys.readouterr().out.strip().splitlines()
    line = "RESULT demo speedup=2.50 count=7 claim=held hits=3/40 tiny=1.1e-06"
    assert printed[-1] == line  # the RESULT line stays the last line
    saved = json.loads((tmp_path / "demo.json").read_text())
    assert saved == out and saved["line"] == line
    assert saved["result"] == {
        "speedup": 2.5,
        "count": 7,
        "claim": "held",
        "hits": "3/40",
        "tiny": 1.1e-06,
    }
    assert saved["command"] == "python -m benchmarks.demo --n 5"  # --save is not part of it
    prov = saved["provenance"]
    assert {"commit", "date", "cpu", "cpus", "torch_threads", "load_average_1min"} <= set(prov)
    assert [p.name for p in tmp_path.iterdir()] == ["demo.json"]  # no temporary file left


def test_quick_runs_are_not_saved_and_bad_values_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _result.parse(_parser(), ["--quick", "--save", str(tmp_path)], "demo")
    assert e.value.code == 2 and "drop --quick" in capsys.readouterr().err
    _, record = _result.parse(_parser(), ["--quick"], "demo")
    with pytest.raises(ValueError, match="free of spaces"):
        record.finish({"device": "NVIDIA H100"}, summary="", target="")
    assert not list(tmp_path.iterdir())


def test_a_failed_run_prints_its_line_but_is_not_saved(tmp_path, capsys):
    _, record = _result.parse(_parser(), ["--save", str(tmp_path)], "demo")
    out = record.finish({"p95_s": "0.3"}, summary="", target="", failure="2 of 60 steps failed")
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1] == "RESULT demo p95_s=0.3" == out["line"]
    assert "not saved" in captured.err and "2 of 60 steps failed" in captured.err
    assert not list(tmp_path.iterdir())


def test_a_real_benchmark_saves_a_row_of_the_readme_table(tmp_path):
    from benchmarks import forward

    forward.main(["--profiles", "tiny", "--threads", "1", "--save", str(tmp_path)])
    run = load_benchmarks(tmp_path)["forward"]
    assert run["result"]["tiny_images_per_s"] > 0
    table, notes = render_benchmarks({"forward": run})
    assert notes == [] and "| `forward` | forward throughput (images/s)" in table
    assert f"tiny {run['result']['tiny_images_per_s']} images/s" in table
