"""zfcore.paper.readme: the README's results generated from the notebooks' JSON
(``python -m zfcore.paper.readme readme``) and checked against it (``... check``)."""

from __future__ import annotations

import json

import pytest

from zfcore.paper import readme as report
from zfcore.paper.readme import main
from zfcore.profiles import repo_root
from zfcore.report import ReportError

README = """# demo

Intro: **<!-- value:test_accuracy -->99 %<!-- /value --> test accuracy** (hand-typed).

<!-- results:begin -->
| old | hand-typed | table |
<!-- results:end -->

Tail text stays.
"""


def _numbers():
    return {
        "00_quickstart": {
            "test_top1_error": 7.95,
            "test_top5_error": 0.5,
            "chance_top1_error": 90.0,
        },
        "02_deconvnet": {
            "shared_switch_share_pool1": 0.2148776799440384,
            "shared_switch_share_pool2": 0.0464409738779068,
            "max_unpool2d_relative_change": 0.8446027636528015,
            "verdict_switches_matter": "held",
            "switches_matter_effect": 0.8446,
            "switches_matter_ci_low": 0.51,
            "switches_matter_ci_high": 1.234,
            "switches_matter_uncertainty": "bootstrap over 12 items (2000 resamples)",
        },
        "11_feature_analysis": {
            f"svm_accuracy_pct_layer{i}": v
            for i, v in enumerate([24.449999034404755, 31.8, 46.55, 48.6, 46.05, 61.55, 58.4], 1)
        },
    }


def _folder(tmp_path, numbers):
    figs = tmp_path / "figures" / "mini"
    figs.mkdir(parents=True)
    for nb, data in numbers.items():
        (figs / f"{nb}.json").write_text(json.dumps(data))
    readme = tmp_path / "README.md"
    readme.write_text(README)
    return readme, figs


def test_readme_then_check_on_a_temporary_readme(tmp_path, capsys):
    readme, figs = _folder(tmp_path, _numbers())
    args = ["--readme", str(readme), "--figures", str(figs)]
    assert main(["check", *args]) == 1
    out = capsys.readouterr().out
    assert "| old | hand-typed | table |" in out and "99 %" in out  # the differing lines
    assert "python -m zfcore.paper.readme readme" in out  # and the fix
    assert main(["readme", *args]) == 0
    text = readme.read_text()
    # numbers rounded from the JSON, not typed: 0.8446 -> 84.5 %, 24.4499 -> 24.4, 100 - 7.95
    assert "would change the projection by 84.5 %" in text
    assert "21.5 % of pool-1 and 4.6 % of pool-2" in text
    assert "linear SVM, layers 1-7: 24.4, 31.8, 46.5, 48.6, 46.0, 61.5, 58.4 %" in text
    assert "**<!-- value:test_accuracy -->92.0 %<!-- /value --> test accuracy**" in text
    assert (
        "| `switches_matter` (`02`) | +0.845 [+0.51, +1.23] | held | bootstrap over 12 items"
        in text
    )
    assert "| old | hand-typed | table |" not in text and text.endswith("Tail text stays.\n")
    assert "(best: n/a; n/a)" in text  # missing keys are shown, not invented
    out = capsys.readouterr().out
    assert "11_feature_analysis.json has no 'svm_best_layer'" in out
    assert main(["check", *args]) == 0
    # one JSON number changes: the check names the line and the fix
    data = json.loads((figs / "02_deconvnet.json").read_text())
    data["max_unpool2d_relative_change"] = 0.5
    (figs / "02_deconvnet.json").write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["check", *args]) == 1
    out = capsys.readouterr().out
    assert "-| Fig. 1" in out and "by 84.5 %" in out and "+| Fig. 1" in out and "by 50.0 %" in out
    assert main(["readme", *args]) == 0 and main(["check", *args]) == 0


def test_training_time_values_are_computed_from_the_history_numbers():
    nums = {
        "04_training_evolution": {
            "training_seconds": 502.4,
            "validation_seconds": 63.8,
            "lr_drop_epochs": [5],
        },
        "09_ablations": {"schedule_epochs": 6},
    }
    text = (
        "<!-- value:training_minutes -->?<!-- /value --> / "
        "<!-- value:training_minutes_with_validation -->?<!-- /value --> / "
        "<!-- value:lr_drop_epoch -->?<!-- /value --> / <!-- value:comparison_epochs -->"
        f"?<!-- /value -->\n{report.BEGIN}\n{report.END}\n"
    )
    ours = lambda notes: [x for x in notes if "(value " in x]  # noqa: E731
    out, notes = report.render_readme(text, nums)
    shown = [m.group(2) for m in report.VALUE_RE.finditer(out)]
    assert shown == ["8.4 min", "9.4 min", "5", "6"] and not ours(
        notes
    )  # 502.4/60, (502.4+63.8)/60
    out, notes = report.render_readme(
        text, {"04_training_evolution": {"training_seconds": 60.0}, "09_ablations": {}}
    )
    assert [m.group(2) for m in report.VALUE_RE.finditer(out)] == ["1.0 min", "n/a", "n/a", "n/a"]
    assert len(ours(notes)) == 3


def test_make_figures_time_adds_its_parts_by_hand():
    from zfcore.paper.fig4_evolution import RECIPES

    wall = lambda s: {"provenance": {"wall_time_s": s}}  # noqa: E731
    nums = {
        "04_training_evolution": {
            "training_seconds": 1500.0,
            "validation_seconds": 300.0,
            "recipe_a_train_minutes": 10.0,
            "recipe_b_train_minutes": 14.0,
            **wall(60.0),
        },
        "09_ablations": {"study_main_model_trainings": 11.0, "zf_train_minutes": 50.0, **wall(30)},
        "10_transfer": wall(5400.0),
    }
    m = report.make_figures_minutes(nums)
    assert m["main_model"] == 30.0 and m["recipe_screening"] == len(RECIPES) * 12.0
    assert m["comparison_study"] == (11 - 1) * 50 / 2  # less the main model, two workers
    assert m["notebooks"] == (60 + 30 + 5400) / 60 and m["slowest"] == "10_transfer"
    assert m["total"] == pytest.approx(30 + len(RECIPES) * 12 + 250 + 91.5)
    text = f"<!-- value:make_figures_time -->?<!-- /value -->\n{report.BEGIN}\n{report.END}\n"
    out, _ = report.render_readme(text, nums)
    shown = next(report.VALUE_RE.finditer(out)).group(2)
    assert "the comparison study 4.2 h on two workers" in shown and "`10` alone 1.5 h" in shown
    del nums["09_ablations"]["zf_train_minutes"]
    out, notes = report.render_readme(text, nums)
    assert next(report.VALUE_RE.finditer(out)).group(2) == "n/a"
    assert any("make_figures_time" in n for n in notes)


def test_verdict_words_outside_the_three_are_flagged():
    nums = {
        "07_occlusion": {
            "verdict_localises": "yes",
            "localises_effect": 1.0,
            "localises_ci_low": 0.5,
            "localises_ci_high": 1.5,
        }
    }
    block, notes = report.render_block(nums, "mini")
    assert "'yes' (not one of held, did not hold, within noise)" in block
    assert "07_occlusion.json has no 'pointing_game_hit_rate' (shown as n/a)" in notes


def test_readme_without_markers_or_with_unknown_values_is_an_error(tmp_path, capsys):
    readme, figs = _folder(tmp_path, _numbers())
    readme.write_text("# no markers\n")
    assert main(["readme", "--readme", str(readme), "--figures", str(figs)]) == 2
    assert "<!-- results:begin -->" in capsys.readouterr().err
    with pytest.raises(ReportError, match="unknown generated value 'nope'"):
        report.render_readme(README.replace("value:test_accuracy", "value:nope"), _numbers())
    with pytest.raises(ReportError, match="not a folder"):
        report.load_numbers(tmp_path / "absent")


def test_committed_readme_agrees_with_committed_figures(capsys):
    code = main(
        [
            "check",
            "--readme",
            str(repo_root() / "README.md"),
            "--figures",
            str(repo_root() / "figures" / "mini"),
        ]
    )
    assert code == 0, capsys.readouterr().out


def _bench(summary="2.0x faster | exact", target=">= 1.2x", **prov):
    return {
        "benchmark": "x",
        "result": {"speedup": 2.0},
        "line": "RESULT x speedup=2.0",
        "summary": summary,
        "target": target,
        "provenance": {
            "commit": "abcdef1234567890abcdef-dirty",
            "date": "2026-12-07T03:00:00+00:00",
            "cpu": "AMD EPYC",
            "cpus": 2,
            "torch_threads": 1,
            "load_average_1min": [2.04, 3.46],
            **prov,
        },
    }


def test_benchmark_table_is_generated_from_the_saved_runs(tmp_path, capsys):
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    for name in ("zzz_custom", "memory", "deconv"):
        (bench / f"{name}.json").write_text(json.dumps(_bench(summary=f"{name} | ran")))
    runs = report.load_benchmarks(bench)
    assert list(runs) == ["deconv", "memory", "zzz_custom"]  # BENCHMARK_ORDER, then the rest
    table, notes = report.render_benchmarks(runs)
    rows = table.splitlines()[2:]
    assert rows[0] == (
        "| `deconv` | deconv \\| ran | >= 1.2x | 2026-12-07, `abcdef123456-dirty`, 2 CPUs "
        "(AMD EPYC), 1 torch thread(s), load 2.0-3.5 |"
    )
    assert len(rows) == 3 and notes == []
    # the load is rounded before repeats are dropped: 3.02 then 2.98 is "load 3.0"
    steady = report.render_benchmarks({"x": _bench(load_average_1min=[3.02, 2.98])})[0]
    assert steady.rstrip().endswith("load 3.0 |")
    broken = _bench()
    del broken["summary"]
    table, notes = report.render_benchmarks({"data": broken})
    assert "| `data` | n/a |" in table and "benchmarks/data.json has no 'summary'" in notes[0]
    assert report.load_benchmarks(tmp_path / "absent") == {}
    assert "(none saved yet)" in report.render_benchmarks({})[0]

    # the README's block: regenerated by `readme`, then `check` agrees until a run changes
    readme, figs = _folder(tmp_path, _numbers())
    readme.write_text(README + "\n<!-- benchmarks:begin -->\n| typed |\n<!-- benchmarks:end -->\n")
    args = ["--readme", str(readme), "--figures", str(figs), "--benchmarks", str(bench)]
    assert main(["readme", *args]) == 0
    text = readme.read_text()
    assert "| typed |" not in text and "| `memory` | memory \\| ran |" in text
    assert main(["check", *args]) == 0
    (bench / "memory.json").write_text(json.dumps(_bench(summary="memory | flat")))
    capsys.readouterr()
    assert main(["check", *args]) == 1
    assert "memory \\| flat" in capsys.readouterr().out
    # a README without the markers is left alone; half of them is an error
    assert report.render_readme(README, _numbers(), benchmarks=runs)[0].count("benchmarks:") == 0
    with pytest.raises(ReportError, match="benchmarks:end"):
        report.render_readme(README + "<!-- benchmarks:begin -->", _numbers(), benchmarks=runs)


def test_an_optional_flag_chooses_the_wording_without_a_missing_note():
    """A key a notebook records only sometimes (04's `per_layer_arms_recorded`, set when the
    per-layer arms were skipped) is read with `peek`: absent, the full row renders and no
    "(shown as n/a)" note names it."""
    from zfcore.paper.headline import Numbers

    n = Numbers("04_training_evolution", {"seeds": 3})
    assert n.peek("per_layer_arms_recorded") is None and n.missing == []
    assert n.f("seeds", "d") == "3" and n.get("absent") is None and n.missing == ["absent"]
    _, notes = report.render_block({"04_training_evolution": {"seeds": 3}}, "mini")
    assert not any("per_layer_arms_recorded" in x for x in notes)


def test_python_m_zfcore_report_is_the_readme_check(tmp_path):
    """``python -m zfcore.report check`` is ``zfcore-report check`` (it used to check nothing
    and exit 0): it fails on a README without markers and passes on the committed one."""
    import subprocess
    import sys

    bad = tmp_path / "README.md"
    bad.write_text("# no markers\n")
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "zfcore.report", "check", *a],
        cwd=repo_root(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = run("--readme", str(bad))
    assert out.returncode == 2 and "results:begin" in out.stdout + out.stderr
    good = run()
    assert good.returncode == 0 and "agrees with" in good.stdout
    # importing the engine's module does not load the paper (the entry point is its own module)
    probe = "import sys, zfcore.report; print([m for m in sys.modules if 'zfcore.paper' in m])"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert loaded.stdout.strip() == "[]", loaded.stderr
