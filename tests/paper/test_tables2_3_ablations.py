"""Notebook 09's paper side (``zfcore.paper.tables2_3_ablations``, section 5.1, Tables 2-3): the
verdicts against hand-computed effects, seed variance in the intervals, the tables' numbers and
text by hand, the variants' check, and the table figure."""

import numpy as np
import pytest
import torch

from zfcore.models import TABLE3_VARIANTS
from zfcore.paper import tables2_3_ablations as ablations
from zfcore.paper.comparisons import Job, NetworkRecord
from zfcore.paper.tables2_3_ablations import AblationError
from zfcore.paper.verdicts import paired_bootstrap


def _record(
    name, val, train=None, seed=0, group="table3", variant=None, arch="zfnet", seconds=60.0
):
    val = torch.as_tensor(val, dtype=torch.bool)
    train = val if train is None else torch.as_tensor(train, dtype=torch.bool)
    job = Job(group, arch, variant or name, seed)
    return NetworkRecord(
        job,
        "key",
        val,
        val,
        train,
        train,
        50.0,
        [60.0, 40.0],
        100,
        seconds,
        torch.zeros(4, 3, 7, 7),
        torch.ones(4),
        {"device": "cpu (test)", "model_fingerprint": name},
    )


def test_ablation_verdicts_signs_and_values_by_hand():
    n = 400
    idx = torch.arange(n)
    acc = lambda p: idx < int(p * n)  # noqa: E731  the first p*n images right
    one = lambda name, v, t=None: [_record(name, v, t)]  # noqa: E731  one seed
    recs = {
        "zf": one("zf", acc(0.80), acc(0.85)),
        "no_layers6_7": one("no_layers6_7", acc(0.78)),
        "no_layers3_4": one("no_layers3_4", acc(0.77)),
        "no_layers3_4_6_7": one("no_layers3_4_6_7", acc(0.40)),
        "conv3_4_5_wide": one("conv3_4_5_wide", acc(0.80)),
        "fc6_7_2048": one("fc6_7_2048", acc(0.80)),
        "fc6_7_8192": one("fc6_7_8192", acc(0.75)),
        "conv3_4_5_wide_fc_8192": one("conv3_4_5_wide_fc_8192", acc(0.75), acc(0.99)),
        "krizhevsky": one("krizhevsky", acc(0.70)),
    }
    vs = {v.claim: v for v in ablations.ablation_verdicts(recs, n_boot=500)}
    assert set(vs) == {
        "zf_layout_beats_krizhevsky",
        "table3_no_layers6_7",
        "table3_no_layers3_4",
        "table3_no_layers3_4_6_7",
        "table3_conv3_4_5_wide",
        "table3_fc6_7_2048",
        "table3_fc6_7_8192",
        "table3_conv3_4_5_wide_fc_8192",
        "removing_both_costs_most",
        "fc_size_makes_little_difference",
        "wider_middle_conv_helps",
        "wider_conv_and_fc_overfits",
    }
    assert vs["zf_layout_beats_krizhevsky"].effect == pytest.approx(10.0)
    assert vs["zf_layout_beats_krizhevsky"].verdict == "held"
    assert vs["table3_no_layers3_4_6_7"].effect == pytest.approx(40.0)  # paper: worse, +
    assert vs["table3_conv3_4_5_wide"].effect == pytest.approx(0.0)  # paper: better
    assert vs["table3_conv3_4_5_wide"].verdict == "within noise"
    # equivalence within 1 point: 2048 units identical to Fig. 3 (effect 1 - 0), 8192 five off
    assert (
        vs["table3_fc6_7_2048"].effect == pytest.approx(1.0)
        and vs["table3_fc6_7_2048"].verdict == "held"
    )
    assert (
        vs["table3_fc6_7_8192"].effect == pytest.approx(-4.0)
        and vs["table3_fc6_7_8192"].verdict == "did not hold"
    )
    assert vs["fc_size_makes_little_difference"].effect == pytest.approx(-4.0)
    assert vs["fc_size_makes_little_difference"].verdict == "did not hold"
    # error(both) 60 - max(error(6-7) 22, error(3-4) 23) = 37 points
    assert vs["removing_both_costs_most"].effect == pytest.approx(37.0)
    assert vs["removing_both_costs_most"].verdict == "held"
    # gaps (val error - train error): wide conv + fc 25 - 1 = 24, Fig. 3: 20 - 15 = 5 -> 19 points
    v = vs["wider_conv_and_fc_overfits"]
    assert v.effect == pytest.approx(19.0) and v.verdict == "held"
    assert "one seed: seed variance not included" in v.source
    # a variant better than the full model where the paper says worse: did not hold
    better = dict(recs, no_layer7=one("no_layer7", acc(0.95)))
    v = {v.claim: v for v in ablations.ablation_verdicts(better, n_boot=500)}["table3_no_layer7"]
    assert v.effect == pytest.approx(-15.0) and v.verdict == "did not hold"
    with pytest.raises(AblationError, match="'zf'"):
        ablations.ablation_verdicts({"no_layer7": recs["zf"]})


def test_seed_variance_widens_the_interval_and_is_named():
    """Two networks whose seeds disagree: the hierarchical interval (seeds, then images) is wider
    than the one over images alone, and its source names the seeds."""
    n, rng = 2000, np.random.default_rng(0)
    seeds = lambda ps, name: [_record(name, rng.random(n) < p, seed=s) for s, p in enumerate(ps)]  # noqa: E731
    recs = {
        "zf": seeds((0.80, 0.70, 0.90), "zf"),
        "krizhevsky": seeds((0.78, 0.68, 0.88), "krizhevsky"),
    }
    v = ablations.ablation_verdicts(recs, n_boot=1000)[0]
    flat = paired_bootstrap(
        "x",
        np.concatenate([r.val_top1.numpy() for r in recs["zf"]]),
        np.concatenate([r.val_top1.numpy() for r in recs["krizhevsky"]]),
        scale=100,
        n_boot=1000,
    )
    assert v.claim == "zf_layout_beats_krizhevsky" and v.effect == pytest.approx(flat.effect)
    assert (v.high - v.low) > 2 * (flat.high - flat.low)
    assert "3 seeds per network resampled" in v.source and "not included" not in v.source


def test_small_set_networks_trained_once_borrow_the_full_sets_spread_and_say_so():
    n = 300
    idx = torch.arange(n)
    seeds = lambda name, cuts, **kw: [  # noqa: E731
        _record(name, idx < c, idx < c + 40, seed=s, **kw) for s, c in enumerate(cuts)
    ]
    small = dict(group="small_train")

    def small_overfit(records):
        vs = ablations.ablation_verdicts(records, n_boot=500)
        return next(v for v in vs if v.claim == "wider_conv_and_fc_overfits_small_train")

    recs = {
        # seeds whose train-val gaps spread widely: 0, 30 and 60 images of 300
        "zf": [
            _record("zf", idx < c, idx < c + g, seed=s)
            for s, (c, g) in enumerate(((240, 0), (210, 30), (180, 60)))
        ],
        "small_zf": seeds("small_zf", (200,), variant="zf", **small),
        "small_conv3_4_5_wide_fc_8192": [
            _record("w", idx < 190, idx < 290, variant="conv3_4_5_wide_fc_8192", **small)
        ],
    }
    v = small_overfit(recs)
    assert v.effect == pytest.approx(100 * (290 - 190) / n - 100 * 40 / n)  # gaps 33.3 - 13.3
    assert "borrow the seed spread pooled from the 3 seeds" in v.source
    assert "none on the small training set has several seeds yet" in v.source
    alone = {**recs, "zf": recs["zf"][:1]}  # no network with several seeds anywhere
    w = small_overfit(alone)
    assert "seed variance not included" in w.source and "none on the" not in w.source
    assert (v.high - v.low) > 1.5 * (w.high - w.low)  # the borrowed spread widens the interval
    recs["small_zf"] = seeds("small_zf", (200, 190), variant="zf", **small)
    v2 = small_overfit(recs)
    assert "pooled from the 2 seeds" in v2.source and "none on the" not in v2.source


def test_ablation_study_tables_numbers_and_text():
    n = 200
    idx = torch.arange(n)
    recs = {
        "zf": [_record("zf", idx < 160, seed=0), _record("zf", idx < 150, seed=1)],
        "krizhevsky": [
            _record("krizhevsky", idx < 140, seed=0, group="krizhevsky", arch="krizhevsky")
        ],
        "no_layers6_7": [
            _record("no_layers6_7", idx < 150),
            _record("no_layers6_7", idx < 150, seed=1),
        ],
        "small_zf": [_record("small_zf", idx < 100, idx < 190, group="small_train", variant="zf")],
    }
    main = type("Run", (), {"final": type("F", (), {"val_top1_error": 20.0})()})()
    s = ablations.AblationStudy(6, recs, main, 50)
    assert s.seeds == 1 and s.small_train_seeds == 1
    recs["krizhevsky"].append(
        _record("krizhevsky", idx < 140, seed=1, group="krizhevsky", arch="krizhevsky")
    )
    # `seeds` counts Tables 2-3 only: the small training set's one seed is reported apart
    assert s.seeds == 2 and s.small_train_seeds == 1 and s.numbers()["small_train_seeds"] == 1
    assert "2+ seeds per network of Tables 2-3, 1+ per network on 50 images" in s.budget_text()
    assert ablations.AblationStudy(6, {"zf": recs["zf"]}, main, 50).small_train_seeds == 0
    recs["krizhevsky"].pop()
    n_ = s.numbers()
    assert n_["zf_val_top1_error"] == pytest.approx(22.5) and n_[
        "zf_val_top1_error_sd"
    ] == pytest.approx(3.5355, abs=1e-3)
    assert (
        n_["zf_val_top1_error_per_seed"] == pytest.approx([20.0, 25.0])
        and n_["main_val_top1_error"] == 20.0
    )
    assert n_["cost_removing_layers6_7"] == pytest.approx(2.5) and n_["krizhevsky_seeds"] == 1
    t2, t3, small = s.tables()
    assert [r["model"] for r in t2] == [
        "Krizhevsky et al. layout (11x11/4), 1 convnet",
        "1 convnet as in Fig. 3 (7x7/2)",
    ]
    assert [r["model"] for r in t3] == ["Our model (Fig. 3)", "Removed layers 6, 7"]
    assert small[0]["val_minus_train_top1"] == pytest.approx(45.0)
    text = ablations.tables_text(t2 + t3 + small).splitlines()
    assert "22.5±3.5" in text[2] and text[-1].startswith("paper: 5 convnets")
    assert "22.50 ± 3.54 %" in s.budget_text() and "main model (seed 0) 20.00 %" in s.budget_text()
    models, where = ablations.study_provenance(recs)
    assert models["table3-zf-s1"] == "zf" and where["study_devices"] == ["cpu (test)"]
    v = s.verdicts()
    vt = ablations.verdict_text(v[1]).splitlines()
    assert (
        vt[0] == v[1].rule
        and vt[2] == "   the paper: " + ablations.TABLE3_CLAIMS["no_layers6_7"][1]
    )
    counts = ablations.verdict_counts(v)
    assert sum(counts.values()) == len(v)


def test_ablation_table_shows_eval_and_running_training_error():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zfcore.plotting.train import plot_ablation_table

    rows = [
        {
            "model": "Fig. 3",
            "train_top1_error": 12.5,
            "train_running_top1_error": 31.0,
            "val_top1_error": 20.0,
            "val_top5_error": 3.0,
        }
    ]
    fig = plot_ablation_table(
        rows, [{"model": "paper", "val_top1_error": 38.4, "val_top5_error": 16.5}]
    )
    texts = [c.get_text().get_text() for c in fig.axes[0].tables[0].get_celld().values()]
    assert {"train top-1\n(eval)", "train top-1\n(running)", "12.5", "31.0", "38.4"} <= set(texts)
    assert "seeds" in texts and "1" in texts  # a row without "seeds" is one training
    assert texts.count("-") == 3  # the paper's rows give no seeds and no training errors
    plt.close(fig)


def test_check_variants():
    assert ablations.check_variants("all") == list(TABLE3_VARIANTS)
    assert ablations.check_variants(("zf", "no_layer7")) == ["zf", "no_layer7"]
    for bad in (["zf", "nope"], []):
        with pytest.raises(ValueError, match="unknown variant"):
            ablations.check_variants(bad)
    assert set(ablations.TABLE3_LABELS) == set(TABLE3_VARIANTS)
