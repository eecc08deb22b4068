"""Notebook 06's paper side (``zfcore.paper.fig6_first_layer``, section 4.1 and Fig. 6): the
runs, the numbers recorded, the verdicts, the layer-2 features and the study across seeds from
the comparison study's records, against hand examples and the engine's measures called
directly."""

from types import SimpleNamespace as NS

import numpy as np
import pytest
import torch
from torch import nn

from zfcore.evolution import strongest_projections
from zfcore.firstlayer import ALIASING_BANDS, FirstLayer, aliasing_controls
from zfcore.models import zfnet
from zfcore.paper import fig6_first_layer as F6
from zfcore.profiles import get_profile


def _run(val_accuracy=50.0, train_seconds=10.0, history=(), **final):
    return NS(
        final=NS(val_accuracy=val_accuracy, **final),
        train_seconds=train_seconds,
        history=list(history),
    )


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    return zfnet(**get_profile("tiny").model_kwargs()).eval()


def _report(name, dead, filters, mid=0.2, top=2, aliased=(0.5, 0.7)):
    return FirstLayer(
        name=name,
        kernel=filters.shape[-1],
        stride=2,
        filters=filters,
        weak=torch.tensor(dead),
        aliased=torch.tensor(aliased),
        bands={"low": 0.5, "mid": mid, "high": 0.5 - mid},
        top_norm_share=0.4,
        top=top,
    )


def test_clip_demo_check():
    F6.check_clip_demo(None)
    F6.check_clip_demo({"lr_factor": 3})
    for bad in ({"lr_factor": 0}, {"lr": 3.0}, 3.0, {"lr_factor": "3"}):
        with pytest.raises(ValueError, match="clip_demo must be None"):
            F6.check_clip_demo(bad)


class _FakeTraining:
    """``zfcore.train.training_run`` stood in for: a run per call, clipping as told."""

    def __init__(self, clipped):
        self.calls, self.clipped = [], clipped

    def __call__(self, profile, arch="zfnet", **over):
        self.calls.append((arch, over))
        n = self.clipped(arch, over)
        model = nn.Sequential(nn.Conv2d(1, 1, 1))
        with torch.no_grad():
            model[0].weight.fill_(0.2 if over.get("clip_rms", 1) is None else 0.1)
        return NS(
            history=[NS(clipped_filters=n, max_filter_rms=0.05)],
            final=NS(val_accuracy=50.0),
            model=lambda: model,
        )


@pytest.mark.parametrize("case", ["clipped", "demo", "never"])
def test_selection_runs_adds_the_clipping_comparison_where_clipping_engaged(monkeypatch, case):
    P = get_profile("tiny")
    fake = _FakeTraining(
        lambda arch, over: {"clipped": 3, "demo": 2 if "lr" in over else 0, "never": 0}[case]
    )
    monkeypatch.setattr(F6, "training_run", fake)
    sel = F6.selection_runs("tiny", {"epochs": 2}, {"lr_factor": 3.0} if case != "never" else None)
    names = list(sel.runs)
    assert names[:2] == ["ZF 7x7/2", "Krizhevsky 11x11/4"]
    if case == "clipped":
        assert names[2:] == ["ZF 7x7/2, no clipping"] and sel.clipped == 3 and sel.note == ""
        assert fake.calls[-1] == (
            "zfnet",
            {"clip_rms": None, "epochs": 2},
        ) and sel.noclip_rms == pytest.approx(0.2)
    elif case == "demo":
        assert names[2:] == ["ZF 7x7/2, clipping (demo rate)", "ZF 7x7/2, no clipping"]
        assert (
            sel.clip_setting == {"epochs": 2, "lr": P.lr * 3.0}
            and "renormalised 2 filter(s)" in sel.note
        )
        assert fake.calls[-1][1] == {"clip_rms": None, "epochs": 2, "lr": P.lr * 3.0}
    else:
        assert names[2:] == [] and sel.clipped == 0 and sel.noclip_rms == 0.05
        assert "not testable" in sel.untestable_text(0.07) and "0.070" in sel.untestable_text(0.07)
    assert len(sel.text().splitlines()) == len(names)


def test_section41_numbers_and_verdicts_by_hand():
    g = torch.Generator().manual_seed(0)
    zf = _report(
        "ZF 7x7/2", [False, False, True, False], torch.randn(4, 3, 2, 2, generator=g), mid=0.3
    )
    kr = _report(
        "Krizhevsky 11x11/4",
        [True, True, False, False],
        torch.randn(4, 3, 2, 2, generator=g),
        mid=0.1,
    )
    sel = F6.SelectionRuns(
        {"ZF 7x7/2": _run(60.0), "Krizhevsky 11x11/4": _run(55.0)},
        2,
        0,
        {"epochs": 2},
        0.05,
        0.1,
        0.01,
    )
    n = F6.section41_numbers([zf, kr], sel)
    assert n["zf_dead_fraction"] == 0.25 and n["krizhevsky_dead_fraction"] == 0.5
    assert n["krizhevsky_mid_frequency_share"] == 0.1 and n["zf_top2_norm_share"] == 0.4
    assert n["zf_aliased_energy"] == pytest.approx(0.6) and n["krizhevsky_val_accuracy"] == 55.0
    assert (
        n["uniform_norm_share"] == 0.5
        and n["clip_comparison_lr"] == 0.01
        and n["clip_radius"] == 0.1
    )
    assert (
        F6.mid_frequency_verdict(zf, kr) == "held"
        and F6.mid_frequency_verdict(kr, zf) == "did not hold"
    )
    assert F6.dead_filter_verdict(kr, zf).effect == pytest.approx(25.0)
    assert len(F6.reports_text([zf, kr]).splitlines()) == 3
    assert F6.clipping_pair([zf, kr]) is None
    no = _report(
        "ZF 7x7/2, no clipping", [False] * 4, torch.tensor([4.0, 1, 1, 1]).view(4, 1, 1, 1)
    )
    demo = _report("ZF 7x7/2, clipping (demo rate)", [False] * 4, torch.ones(4, 1, 1, 1))
    assert F6.clipping_pair([zf, kr, no]) == (no, zf)
    assert F6.clipping_pair([zf, kr, demo, no]) == (no, demo)
    v = F6.clipping_verdict(no, demo, top=2)
    assert (
        v.effect == pytest.approx(100 * (5 / 7 - 2 / 4))
        and v.claim == "fig6_clipping_stops_domination"
    )


def test_layer2_features_draws_maps_with_one_generator():
    models = {"a": _tiny_model(0), "b": _tiny_model(1)}
    x = torch.randn(6, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    got = F6.layer2_features(models, x, 3, seed=5)
    g = torch.Generator().manual_seed(5)
    for name, m in models.items():
        n = m.features.conv2.weight.shape[0]
        maps = sorted(torch.randperm(n, generator=g)[:3].tolist())
        want = strongest_projections(m, x, {"layer2": maps})
        assert torch.equal(got[name]["projections"]["layer2"], want["projections"]["layer2"])


def test_aliasing_numbers_text_and_verdicts_by_hand(monkeypatch):
    def layout(shift):
        return {
            w: {
                b: np.array([0.1, 0.3]) + shift + (0.2 if w == "trained" else 0)
                for b in ALIASING_BANDS
            }
            for w in ("trained", "untrained", "noise")
        }

    alias = {"zf": layout(0.0), "krizhevsky": layout(0.1)}
    n = F6.aliasing_numbers(alias)
    assert n["zf_power_own_trained"] == pytest.approx(0.4) and n[
        "krizhevsky_power_above_1_4_noise"
    ] == pytest.approx(0.3)
    assert n["zf_power_own_untrained"] == pytest.approx(0.2) and len(n) == 2 * 9
    assert len(F6.aliasing_text(alias).splitlines()) == 7
    v = F6.aliasing_verdicts(alias)
    assert [x.claim for x in v] == [
        "aliasing_krizhevsky_vs_zf_trained",
        "aliasing_krizhevsky_vs_zf_from_training",
        "power_above_1_8_krizhevsky_vs_zf_from_training",
    ]
    assert v[0].effect == pytest.approx(10.0) and v[1].effect == pytest.approx(0.0, abs=1e-9)


def test_aliasing_study_measures_the_trained_beside_the_untrained_network(monkeypatch):
    from zfcore.paper.controls import untrained_model

    trained = {
        a: _tiny_model(7) if a == "zfnet" else untrained_model("tiny", a)
        for a in ("zfnet", "krizhevsky")
    }
    monkeypatch.setattr(F6, "trained_model", lambda profile, arch, **over: trained[arch])
    got = F6.aliasing_study("tiny", {"epochs": 1})
    for key, arch in F6.LAYOUTS.items():
        want = aliasing_controls(trained[arch], untrained_model("tiny", arch))
        for w in ("trained", "untrained", "noise"):
            for b in ALIASING_BANDS:
                np.testing.assert_allclose(got[key][w][b], want[w][b])


def test_layer2_figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zfcore.plotting import train as tplot

    feats = {n: {"projections": {"layer2": torch.rand(4, 3, 5, 5)}} for n in ("a", "b")}
    fig = tplot.plot_layer2_features(feats)
    assert len(fig.axes) == 8 and fig.axes[4].get_ylabel() == "b"
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Across seeds: the comparison study's records of both layouts
# ---------------------------------------------------------------------------------------------


def _layout_record(arch, seed, val):
    from zfcore.paper.comparisons import Job, NetworkRecord
    from zfcore.train import build_model

    P = get_profile("tiny")
    group = "table3" if arch == "zfnet" else "krizhevsky"
    job = Job(group, arch=arch, seed=seed)
    start = build_model(job.spec(P)).features.conv1.weight.detach()
    g = torch.Generator().manual_seed(seed)
    filters = start + 0.05 * torch.randn(start.shape, generator=g)
    activity = torch.rand(start.shape[0], generator=g)
    activity[0] = 0.0  # one weak map
    v = torch.as_tensor(val)
    return NetworkRecord(job, "key", v, v, v, v, 50.0, [50.0], 10, 1.0, filters, activity, {})


def test_record_reports_seed_numbers_and_verdicts():
    from zfcore.firstlayer import aliasing_bands, conv_with_filters, first_layer_from
    from zfcore.train import build_model

    P = get_profile("tiny")
    g = torch.Generator().manual_seed(0)
    by_layout = {
        key: [_layout_record(arch, s, torch.rand(20, generator=g) < 0.6) for s in (0, 1)]
        for key, arch in F6.LAYOUTS.items()
    }
    seeds = {
        key: F6.record_reports(P, recs, F6.LAYOUT_NAMES[key], top=3)
        for key, recs in by_layout.items()
    }
    for key, recs in by_layout.items():
        for rec, (report, bands) in zip(recs, seeds[key]):
            start = build_model(rec.job.spec(P)).eval().features.conv1
            conv = conv_with_filters(start, rec.layer1_filters)
            want = first_layer_from(conv, rec.layer1_activity, F6.LAYOUT_NAMES[key], top=3)
            assert torch.equal(report.weak, want.weak) and report.weak[0]
            assert torch.equal(report.aliased, want.aliased) and report.stride == conv.stride[0]
            want_bands = aliasing_bands(conv, start)
            for w in ("trained", "untrained", "noise"):
                for b in ALIASING_BANDS:
                    np.testing.assert_allclose(bands[w][b], want_bands[w][b])
    n = F6.seed_numbers(seeds, by_layout)
    assert n["seeds"] == 2
    for key in F6.LAYOUTS:
        reps = [r for r, _ in seeds[key]]
        assert n[f"{key}_dead_fraction"] == pytest.approx(np.mean([r.weak_fraction for r in reps]))
        assert n[f"{key}_aliased_energy"] == pytest.approx(n[f"{key}_power_own_trained"], rel=1e-9)
        assert f"{key}_aliased_energy_untrained" not in n  # recorded once, as _power_own_
        accs = [100 - r.val_top1_error for r in by_layout[key]]
        assert n[f"{key}_val_accuracy_per_seed"] == accs
    v = F6.seed_verdicts(seeds)
    assert [x.claim for x in v] == [
        "fig6_krizhevsky_more_dead_filters",
        "aliasing_krizhevsky_vs_zf_trained",
        "aliasing_krizhevsky_vs_zf_from_training",
        "power_above_1_8_krizhevsky_vs_zf_from_training",
    ]
    kr = np.stack([r.weak.numpy() for r, _ in seeds["krizhevsky"]]).astype(float)
    zf = np.stack([r.weak.numpy() for r, _ in seeds["zf"]]).astype(float)
    assert v[0].effect == pytest.approx(100 * (kr.mean() - zf.mean()))


def test_a_record_of_another_layout_is_named():
    rec = _layout_record("zfnet", 0, torch.ones(4, dtype=torch.bool))
    other = _layout_record("krizhevsky", 0, torch.ones(4, dtype=torch.bool))
    with pytest.raises(F6.Fig6Error, match="record table3-zf-s0: filters .* do not fit"):
        F6.record_reports("tiny", [NS(**{**vars(other), "job": rec.job})], "x")
