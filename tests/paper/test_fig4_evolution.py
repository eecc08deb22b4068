"""Notebook 04's paper side (``zfcore.paper.fig4_evolution``, Fig. 4 and section 4.2): the main
run's numbers and text, the recipe screening, Fig. 4's projections, the convergence reading and
its verdict, and the per-layer schedules, against hand examples and naive recomputations."""

import math
from types import SimpleNamespace as NS

import numpy as np
import pytest
import torch

from zfcore import health
from zfcore import train as T
from zfcore.evolution import Convergence, layer_convergence
from zfcore.models import zfnet
from zfcore.paper import comparisons
from zfcore.paper import fig4_evolution as F4
from zfcore.paper.comparisons import Job, NetworkRecord
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


# ---------------------------------------------------------------------------------------------
# The main run
# ---------------------------------------------------------------------------------------------


def test_run_numbers_and_history_text_by_hand():
    h = [
        NS(
            epoch=e,
            train_loss=1.0 / e,
            train_top1_error=50.0,
            train_eval_top1_error=40.0,
            val_top1_error=45.0,
            val_top5_error=10.0,
            images_per_s=123.0,
            val_seconds=7.0 * e,
        )
        for e in (1, 2)
    ]
    run = _run(
        60.0,
        120.0,
        h,
        val_top5_error=9.0,
        train_eval_top1_error=30.0,
        dead_share={"layer1": 0.0, "layer2": 0.25},
    )
    run.checkpoint_epochs = [0.5, 1.0, 2.0]
    run.spec = NS(profile=get_profile("mini"))
    model = _tiny_model()
    run.model = lambda: model
    n = F4.run_numbers(run)
    assert n == {
        "final_val_accuracy": 60.0,
        "final_val_top5_error": 9.0,
        "final_train_eval_top1_error": 30.0,
        "training_seconds": 120.0,
        "training_minutes": 2.0,
        "epochs": 2,
        "checkpoint_epochs": [0.5, 1.0, 2.0],
        "validation_seconds": 21.0,
        "lr_drop_epochs": [5],
        "precision": "fp32",
        "layer1_low_frequency_share": health.low_frequency_share(model),
        "dead_map_share_layer1": 0.0,
        "dead_map_share_layer2": 0.25,
    }
    text = F4.history_text(run).splitlines()
    assert len(text) == 5 and text[2].split()[:2] == ["2", "0.500"]
    assert text[3] == "checkpoints kept at epochs ['0.5', '1', '2']"
    assert text[4] == "dead maps at the end: layer1 0%, layer2 25%"


# ---------------------------------------------------------------------------------------------
# The recipe screening
# ---------------------------------------------------------------------------------------------


def test_profile_recipe_names_the_profiles_recipe():
    assert F4.profile_recipe("mini") in F4.RECIPES
    with pytest.raises(KeyError):
        F4.recipe_overrides("nope")
    with pytest.raises(F4.Fig4Error, match="unknown recipe 'nope'"):
        F4.recipe_overrides("nope")


def test_comparison_schedule_defaults_to_the_trainers_and_checks_its_input():
    assert F4.comparison_schedule("tiny") == T.comparison_overrides("tiny")
    assert F4.comparison_schedule("mini", 3) == {"epochs": 3}
    for bad in (0, -2, 1.5, "4"):
        with pytest.raises(ValueError, match="schedule_epochs must be None or a positive int"):
            F4.comparison_schedule("tiny", bad)


def test_recipe_text_and_numbers_by_hand():
    rs = [
        F4.RecipeResult("adam_bias", 2, 40.0, {"layer1": 0.0, "layer2": 0.5}, 0.3, 1.5),
        F4.RecipeResult("sgd_warmup", 2, 30.0, {"layer1": 0.25, "layer2": 0.0}, 0.6, 2.0),
    ]
    text = F4.recipes_text(rs, "sgd_warmup").splitlines()
    assert len(text) == 3 and text[0].split()[:3] == ["recipe", "val", "err"]
    assert text[2].startswith("sgd_warmup *") and not text[1].startswith("adam_bias *")
    assert "40.0%" in text[1] and "50%" in text[1] and "25%" in text[2]
    nums = F4.recipe_numbers(rs, "sgd_warmup")
    assert nums == {
        "recipe_adam_bias_val_top1_error_pct": 40.0,
        "recipe_adam_bias_layer1_low_frequency_share": 0.3,
        "recipe_adam_bias_train_minutes": 1.5,
        "recipe_adam_bias_dead_layer1": 0.0,
        "recipe_adam_bias_dead_layer2": 0.5,
        "recipe_sgd_warmup_val_top1_error_pct": 30.0,
        "recipe_sgd_warmup_layer1_low_frequency_share": 0.6,
        "recipe_sgd_warmup_train_minutes": 2.0,
        "recipe_sgd_warmup_dead_layer1": 0.25,
        "recipe_sgd_warmup_dead_layer2": 0.0,
        "profile_recipe": "sgd_warmup",
    }
    assert F4.recipe_numbers(rs, None)["profile_recipe"] == "custom"


# ---------------------------------------------------------------------------------------------
# Fig. 4 and its reading: per-layer convergence
# ---------------------------------------------------------------------------------------------


def test_fig4_numbers_and_text():
    f = F4.Fig4Projections(
        epochs=[1.0],
        maps={},
        projections={},
        patches={},
        activations={},
        alive={"layer1": 5, "layer2": 7},
        total={"layer1": 12, "layer2": 32},
    )
    assert f.numbers() == {"fig4_firing_maps_layer1": 5, "fig4_firing_maps_layer2": 7}
    assert f.alive_text().endswith("layer1 5/12, layer2 7/32")


@pytest.mark.slow
def test_fig4_projections_on_a_real_run(tmp_path):
    run = T.training_run(
        "tiny", n_train=128, n_val=64, epochs=2, cache_dir=tmp_path, progress=False
    )
    fig4 = F4.fig4_projections(run, maps_per_layer=2, n_images=64, progress=False)
    assert fig4.projections["layer2"].shape[:2] == (2, len(run.checkpoint_epochs))
    assert all(len(m) == 2 for m in fig4.maps.values())
    assert all(0 < fig4.alive[l] <= fig4.total[l] for l in fig4.alive)
    with pytest.raises(F4.Fig4Error, match="maps_per_layer"):
        F4.fig4_projections(run, maps_per_layer=0)


def test_convergence_numbers_against_numpy():
    maps = {"layer1": [1.0, 1.0, 2.0, 4.0], "layer2": [2.0, float("nan"), 4.0]}
    conv = Convergence(
        epochs=[1.0, 2.0, 4.0],
        weight_similarity={},
        topk_similarity={},
        weight_threshold=0.9,
        topk_threshold=0.5,
        weight_converged={"layer1": 1.0, "layer2": 4.0},
        topk_converged={"layer1": 2.0, "layer2": 4.0},
        n_images=100,
        k=9,
        map_converged=maps,
        alive_maps={"layer1": 4, "layer2": 3},
        total_maps={"layer1": 6, "layer2": 3},
    )
    n = F4.convergence_numbers(conv)
    for l, v in maps.items():
        v = np.array([x for x in v if not math.isnan(x)])
        assert n[f"map_converged_epoch_median_{l}"] == pytest.approx(np.median(v))
        assert n[f"map_converged_epoch_iqr_{l}"] == pytest.approx(list(np.percentile(v, [25, 75])))
    assert n["topk_converged_epoch_layer1"] == 2.0 and n["weight_converged_epoch_layer2"] == 4.0
    assert n["convergence_depth_spearman_topk"] == pytest.approx(1.0)
    assert (n["topk_threshold"], n["weight_threshold"], n["mined_images"]) == (0.5, 0.9, 100)
    rows = F4.convergence_text(conv).splitlines()
    assert len(rows) == 3 and rows[1].split()[:3] == ["layer1", "4/6", "1.5"]


def _conv(maps):
    return Convergence(
        epochs=[1, 2, 4, 8],
        weight_similarity={},
        topk_similarity={},
        weight_threshold=0.9,
        topk_threshold=0.5,
        weight_converged={},
        topk_converged={},
        n_images=10,
        k=9,
        map_converged=maps,
    )


def test_depth_verdict_by_hand():
    conv = _conv({"layer1": [1.0] * 20, "layer3": [2.0, 4.0] * 10, "layer5": [8.0] * 20})
    v = F4.depth_verdict(conv, n_boot=200)
    assert v.verdict == "held" and v.effect > 0.8
    conv.map_converged = {"layer1": [8.0, 1.0] * 10, "layer5": [1.0, 8.0] * 10}
    assert F4.depth_verdict(conv, n_boot=200).verdict == "within noise"
    conv.map_converged = {"layer1": [1.0] * 5}
    with pytest.raises(F4.Fig4Error, match="at least two layers"):
        F4.depth_verdict(conv)
    with pytest.raises(F4.Fig4Error, match="at least one run"):
        F4.depth_verdict([])


def _spearman_by_hand(pairs):
    """Spearman's rho as the Pearson correlation of average ranks (ties share their mean rank)."""
    x, y = (np.array(v, dtype=float) for v in zip(*pairs))

    def ranks(v):
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(1, len(v) + 1)
        for u in np.unique(v):
            r[v == u] = r[v == u].mean()
        return r

    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def test_depth_verdict_over_seeds_against_a_hand_loop():
    seeds = [
        {
            "layer1": [1.0, 2.0, 1.0, float("nan")],
            "layer3": [2.0, 4.0, 8.0],
            "layer5": [4.0, 8.0, 2.0],
        },
        {"layer1": [2.0, 1.0, 1.0], "layer3": [1.0, 4.0, 4.0, 2.0], "layer5": [8.0, 8.0, 4.0]},
        {"layer1": [4.0, 1.0, 2.0], "layer3": [2.0, 2.0, 8.0], "layer5": [1.0, 8.0, 8.0, 4.0]},
    ]
    convs = [_conv(m) for m in seeds]
    v = F4.depth_verdict(convs, n_boot=50, seed=3)

    def rho(maps):  # never settled (nan) = twice the last checkpoint
        return _spearman_by_hand(
            [(int(l[5:]), 16.0 if math.isnan(e) else e) for l, es in maps.items() for e in es]
        )

    assert v.effect == pytest.approx(np.mean([rho(m) for m in seeds]))
    g = torch.Generator().manual_seed(3)  # the same draws, in the same order, by hand
    boots = []
    for _ in range(50):
        picked = [seeds[int(i)] for i in torch.randint(3, (3,), generator=g)]
        rs = []
        for m in picked:
            sample = {}
            for l, es in m.items():
                idx = torch.randint(len(es), (len(es),), generator=g).tolist()
                sample[l] = [es[i] for i in idx]
            r = rho(sample)
            rs.append(0.0 if math.isnan(r) else r)
        boots.append(np.mean(rs))
    low, high = np.quantile(boots, [0.025, 0.975])
    assert (v.low, v.high) == (pytest.approx(low), pytest.approx(high))
    assert "3 seeds resampled" in v.source and "not included" not in v.source
    n = F4.seed_convergence_numbers(convs)
    assert n["convergence_seeds"] == 3
    assert n["convergence_depth_spearman_maps_per_seed"] == pytest.approx([rho(m) for m in seeds])


def test_depth_verdict_interval_widens_with_seed_disagreement():
    """Positive control: seeds that disagree (one says deeper settles later, one the reverse)
    give an interval the maps alone would not; identical seeds give the single-run verdict."""
    later = {"layer1": [1.0, 2.0] * 10, "layer3": [2.0, 4.0] * 10, "layer5": [4.0, 8.0] * 10}
    earlier = {"layer1": [4.0, 8.0] * 10, "layer3": [2.0, 4.0] * 10, "layer5": [1.0, 2.0] * 10}
    one = F4.depth_verdict(_conv(later), n_boot=300)
    same = F4.depth_verdict([_conv(later)] * 3, n_boot=300)
    assert one.verdict == same.verdict == "held"
    assert same.effect == pytest.approx(one.effect)
    assert "seed variance not included" in one.source
    mixed = F4.depth_verdict([_conv(later), _conv(later), _conv(earlier)], n_boot=300)
    assert mixed.high - mixed.low > 3 * (same.high - same.low)
    assert mixed.verdict == "within noise"


# ---------------------------------------------------------------------------------------------
# Per-layer schedules
# ---------------------------------------------------------------------------------------------


def _arm_record(name, val, seconds, curve, seed=0):
    v = torch.as_tensor(val)
    return NetworkRecord(
        Job("per_layer", seed=seed, arm=name),
        "key",
        v,
        v,
        v,
        v,
        50.0,
        list(curve),
        100,
        seconds,
        torch.zeros(2, 3, 7, 7),
        torch.ones(2),
        {"model_fingerprint": name},
    )


def _schedules():
    g = torch.Generator().manual_seed(3)
    recs = {
        n: [_arm_record(n, torch.rand(60, generator=g) < p, t, c, seed=s) for s in (0, 1)]
        for n, p, t, c in (
            ("one global rate", 0.7, 100.0, (50.0, 30.0)),
            ("freeze layer1@1", 0.68, 80.0, (50.0, 40.0)),
            ("rates layer1 x0.1", 0.5, 90.0, (60.0, 55.0)),
        )
    }
    return F4.LayerSchedules(
        2, {"layer1": 1.0}, {"layer1": 0.1}, recs, {"global": 200.0, "frozen": 300.0}, 10
    )


def test_layer_schedules_numbers_rows_and_verdicts_by_hand():
    s = _schedules()
    assert s.speedup == pytest.approx(1.5) and s.seeds == 2
    assert [r["images/s"] for r in s.rows()] == [200.0, 300.0, 200.0]
    acc = {
        n: 100 * float(torch.cat([r.val_top1 for r in rs]).float().mean())
        for n, rs in s.records.items()
    }
    assert [r["val accuracy (%)"] for r in s.rows()] == pytest.approx(list(acc.values()))
    n = s.numbers()
    assert n["per_layer_val_accuracy"] == pytest.approx(acc["freeze layer1@1"])
    assert (n["per_layer_train_seconds"], n["lower_rates_train_seconds"]) == (80.0, 90.0)
    assert (
        n["layer_lr_freeze"] == {"layer1": 1.0}
        and n["layer_lr_schedule_epochs"] == 2
        and n["seeds"] == 2
    )
    # global final error 30 -> target 31: global reaches it at epoch 2, frozen never, rates never
    assert (n["global_rate_epochs_to_within_1_point"], n["per_layer_epochs_to_within_1_point"]) == (
        2.0,
        None,
    )
    assert n["global_rate_steps_to_within_1_point"] == 20
    # the freeze saves (1 - 1/1.5) of the steps after epoch 1 of 2: 100 s * 0.5 / 3
    assert n["per_layer_seconds_saved_estimate"] == pytest.approx(100 * 0.5 / 3)
    # half the epochs at the global rate, half at 1.5x: 0.5 + 0.5 / 1.5 of the global time
    assert [r["relative training time"] for r in s.rows()] == pytest.approx(
        [1.0, 0.5 + 0.5 / 1.5, 1.0]
    )
    assert n["per_layer_relative_training_time"] == pytest.approx(5 / 6)
    vf, vr = s.verdicts()
    assert vf.effect == pytest.approx(acc["freeze layer1@1"] - acc["one global rate"])
    assert vr.effect == pytest.approx(acc["rates layer1 x0.1"] - acc["one global rate"])
    assert vf.margin == -1.0 and vf.claim == "per_layer_freeze_costs_under_1_point"
    assert "2 seeds per network resampled" in vr.source


@pytest.mark.slow
def test_layer_schedules_freezes_where_the_main_run_settled(tmp_path):
    P = get_profile("tiny").replace(
        n_train=96, n_val=40, epochs=2, cache_dir=tmp_path, figures_root=tmp_path / "fig"
    )
    s = F4.layer_schedules(P, None, {"layer1": 0.5}, seeds=1)
    conv = layer_convergence(T.training_run(P, progress=False), n_images=1000)
    assert s.freeze == {l: min(conv.topk_converged[l], 1.0) for l in F4.EARLY_LAYERS}
    assert s.freeze == comparisons.early_layer_freeze(P)
    assert (
        list(s.records)[2] == "rates layer1 x0.5"
        and len(s.records[list(s.records)[1]][0].val_top1) == 40
    )
    assert set(s.images_per_s) == {"global", "frozen"}
    assert sorted(f.name for f in (tmp_path / "fig" / "tiny" / "study").iterdir()) == [
        "per_layer-freeze-s0.json",
        "per_layer-rates-s0.json",
        "table3-zf-s0.json",
    ]


def test_layer_schedule_figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zfcore.plotting import train as tplot

    fig = tplot.plot_layer_schedules(_schedules(), title="t")
    bars = [[p.get_height() for p in ax.patches] for ax in fig.axes]
    sched = _schedules()
    assert bars[0] == pytest.approx([r["val accuracy (%)"] for r in sched.rows()])
    assert bars[1] == pytest.approx([1.0, 5 / 6, 1.0]) and bars[2] == [200.0, 300.0, 200.0]
    plt.close(fig)
