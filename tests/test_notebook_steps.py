"""The steps notebooks 04 and 06-09 call (zfcore.recipes, evolution, firstlayer, occlusion,
correspondence, ablations, plotting.train): the numbers they record and the verdicts they decide,
against hand examples, naive recomputations and the lower-level functions called directly."""

import json
import math
from types import SimpleNamespace as NS

import numpy as np
import pytest
import torch
from torch import nn

from zfcore import (
    ablations,
    health,
    recipes,
    train,
)
from zfcore import (
    correspondence as corr,
)
from zfcore import (
    evolution as E,
)
from zfcore import (
    firstlayer as FL,
)
from zfcore import (
    occlusion as occ,
)
from zfcore.models import zfnet
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
# recipes (notebook 04, sections 2 and 5)
# ---------------------------------------------------------------------------------------------


def test_comparison_schedule_defaults_to_the_trainers_and_checks_its_input():
    from zfcore.train import comparison_overrides

    assert recipes.comparison_schedule("tiny") == comparison_overrides("tiny")
    assert recipes.comparison_schedule("mini", 3) == {"epochs": 3}
    for bad in (0, -2, 1.5, "4"):
        with pytest.raises(ValueError, match="schedule_epochs must be None or a positive int"):
            recipes.comparison_schedule("tiny", bad)


def test_recipe_text_and_numbers_by_hand():
    rs = [
        recipes.RecipeResult("adam_bias", 2, 40.0, {"layer1": 0.0, "layer2": 0.5}, 0.3, 1.5),
        recipes.RecipeResult("sgd_warmup", 2, 30.0, {"layer1": 0.25, "layer2": 0.0}, 0.6, 2.0),
    ]
    text = recipes.recipes_text(rs, "sgd_warmup").splitlines()
    assert len(text) == 3 and text[0].split()[:3] == ["recipe", "val", "err"]
    assert text[2].startswith("sgd_warmup *") and not text[1].startswith("adam_bias *")
    assert "40.0%" in text[1] and "50%" in text[1] and "25%" in text[2]
    nums = recipes.recipe_numbers(rs, "sgd_warmup")
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
    assert recipes.recipe_numbers(rs, None)["profile_recipe"] == "custom"


def _arm_record(name, val, seconds, curve, seed=0):
    from zfcore.comparisons import Job, NetworkRecord

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
    return recipes.LayerSchedules(
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
    vf, vr = s.verdicts()
    assert vf.effect == pytest.approx(acc["freeze layer1@1"] - acc["one global rate"])
    assert vr.effect == pytest.approx(acc["rates layer1 x0.1"] - acc["one global rate"])
    assert vf.margin == -1.0 and vf.claim == "per_layer_freeze_costs_under_1_point"
    assert "2 seeds per network resampled" in vr.source


def test_layer_schedules_freezes_where_the_main_run_settled(tmp_path):
    from zfcore import comparisons

    P = get_profile("tiny").replace(
        n_train=96, n_val=40, epochs=2, cache_dir=tmp_path, figures_root=tmp_path / "fig"
    )
    s = recipes.layer_schedules(P, None, {"layer1": 0.5}, seeds=1)
    conv = E.layer_convergence(train.training_run(P, progress=False), n_images=1000)
    assert s.freeze == {l: min(conv.topk_converged[l], 1.0) for l in recipes.EARLY_LAYERS}
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


# ---------------------------------------------------------------------------------------------
# evolution (notebook 04, sections 1, 3, 4)
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
    n = E.run_numbers(run)
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
    text = E.history_text(run).splitlines()
    assert len(text) == 5 and text[2].split()[:2] == ["2", "0.500"]
    assert text[3] == "checkpoints kept at epochs ['0.5', '1', '2']"
    assert text[4] == "dead maps at the end: layer1 0%, layer2 25%"


def test_convergence_numbers_against_numpy():
    maps = {"layer1": [1.0, 1.0, 2.0, 4.0], "layer2": [2.0, float("nan"), 4.0]}
    conv = E.Convergence(
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
    n = conv.numbers()
    for l, v in maps.items():
        v = np.array([x for x in v if not math.isnan(x)])
        assert n[f"map_converged_epoch_median_{l}"] == pytest.approx(np.median(v))
        assert n[f"map_converged_epoch_iqr_{l}"] == pytest.approx(list(np.percentile(v, [25, 75])))
    assert n["topk_converged_epoch_layer1"] == 2.0 and n["weight_converged_epoch_layer2"] == 4.0
    assert n["convergence_depth_spearman_topk"] == pytest.approx(1.0)
    assert (n["topk_threshold"], n["weight_threshold"], n["mined_images"]) == (0.5, 0.9, 100)
    rows = conv.table_text().splitlines()
    assert len(rows) == 3 and rows[1].split()[:3] == ["layer1", "4/6", "1.5"]


def test_fig4_numbers_and_text():
    f = E.Fig4Projections(
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


# ---------------------------------------------------------------------------------------------
# firstlayer (notebook 06)
# ---------------------------------------------------------------------------------------------


def _report(name, dead, filters, mid=0.2, top=2, aliased=(0.5, 0.7)):
    return FL.FirstLayer(
        name=name,
        kernel=filters.shape[-1],
        stride=2,
        filters=filters,
        dead=torch.tensor(dead),
        aliased=torch.tensor(aliased),
        bands={"low": 0.5, "mid": mid, "high": 0.5 - mid},
        top_norm_share=0.4,
        top=top,
    )


def test_largest_filter_rms_and_clip_demo_check():
    m = nn.Sequential(nn.Conv2d(1, 2, 2), nn.Conv2d(2, 1, 1))
    with torch.no_grad():
        m[0].weight.fill_(0.5)
        m[1].weight.copy_(torch.tensor([3.0, 4.0]).view(1, 2, 1, 1))
    assert FL.largest_filter_rms(m) == pytest.approx(math.sqrt(12.5))
    FL.check_clip_demo(None)
    FL.check_clip_demo({"lr_factor": 3})
    for bad in ({"lr_factor": 0}, {"lr": 3.0}, 3.0, {"lr_factor": "3"}):
        with pytest.raises(ValueError, match="clip_demo must be None"):
            FL.check_clip_demo(bad)


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
    import zfcore.train as T

    P = get_profile("tiny")
    fake = _FakeTraining(
        lambda arch, over: {"clipped": 3, "demo": 2 if "lr" in over else 0, "never": 0}[case]
    )
    monkeypatch.setattr(T, "training_run", fake)
    sel = FL.selection_runs("tiny", {"epochs": 2}, {"lr_factor": 3.0} if case != "never" else None)
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
    sel = FL.SelectionRuns(
        {"ZF 7x7/2": _run(60.0), "Krizhevsky 11x11/4": _run(55.0)},
        2,
        0,
        {"epochs": 2},
        0.05,
        0.1,
        0.01,
    )
    n = FL.section41_numbers([zf, kr], sel)
    assert n["zf_dead_fraction"] == 0.25 and n["krizhevsky_dead_fraction"] == 0.5
    assert n["krizhevsky_mid_frequency_share"] == 0.1 and n["zf_top2_norm_share"] == 0.4
    assert n["zf_aliased_energy"] == pytest.approx(0.6) and n["krizhevsky_val_accuracy"] == 55.0
    assert (
        n["uniform_norm_share"] == 0.5
        and n["clip_comparison_lr"] == 0.01
        and n["clip_radius"] == 0.1
    )
    assert (
        FL.mid_frequency_verdict(zf, kr) == "held"
        and FL.mid_frequency_verdict(kr, zf) == "did not hold"
    )
    assert FL.dead_filter_verdict(kr, zf).effect == pytest.approx(25.0)
    assert len(FL.reports_text([zf, kr]).splitlines()) == 3
    assert FL.clipping_pair([zf, kr]) is None
    no = _report(
        "ZF 7x7/2, no clipping", [False] * 4, torch.tensor([4.0, 1, 1, 1]).view(4, 1, 1, 1)
    )
    demo = _report("ZF 7x7/2, clipping (demo rate)", [False] * 4, torch.ones(4, 1, 1, 1))
    assert FL.clipping_pair([zf, kr, no]) == (no, zf)
    assert FL.clipping_pair([zf, kr, demo, no]) == (no, demo)
    v = FL.clipping_verdict(no, demo, top=2)
    assert (
        v.effect == pytest.approx(100 * (5 / 7 - 2 / 4))
        and v.claim == "fig6_clipping_stops_domination"
    )


def test_layer2_features_draws_maps_with_one_generator():
    models = {"a": _tiny_model(0), "b": _tiny_model(1)}
    x = torch.randn(6, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    got = FL.layer2_features(models, x, 3, seed=5)
    g = torch.Generator().manual_seed(5)
    for name, m in models.items():
        n = m.features.conv2.weight.shape[0]
        maps = sorted(torch.randperm(n, generator=g)[:3].tolist())
        want = E.strongest_projections(m, x, {"layer2": maps})
        assert torch.equal(got[name]["projections"]["layer2"], want["projections"]["layer2"])


def test_aliasing_numbers_text_and_verdicts_by_hand(monkeypatch):
    def layout(shift):
        return {
            w: {
                b: np.array([0.1, 0.3]) + shift + (0.2 if w == "trained" else 0)
                for b in FL.ALIASING_BANDS
            }
            for w in ("trained", "untrained", "noise")
        }

    alias = {"zf": layout(0.0), "krizhevsky": layout(0.1)}
    n = FL.aliasing_numbers(alias)
    assert n["zf_power_own_trained"] == pytest.approx(0.4) and n[
        "krizhevsky_power_above_1_4_noise"
    ] == pytest.approx(0.3)
    assert n["zf_aliased_energy_untrained"] == pytest.approx(0.2) and len(n) == 2 * (9 + 2)
    assert len(FL.aliasing_text(alias).splitlines()) == 7
    v = FL.aliasing_verdicts(alias)
    assert [x.claim for x in v] == [
        "aliasing_krizhevsky_vs_zf_trained",
        "aliasing_krizhevsky_vs_zf_from_training",
        "power_above_1_8_krizhevsky_vs_zf_from_training",
    ]
    assert v[0].effect == pytest.approx(10.0) and v[1].effect == pytest.approx(0.0, abs=1e-9)


def test_aliasing_study_measures_the_trained_beside_the_untrained_network(monkeypatch):
    import zfcore.train as T
    from zfcore.paper.controls import untrained_model

    trained = {
        a: _tiny_model(7) if a == "zfnet" else untrained_model("tiny", a)
        for a in ("zfnet", "krizhevsky")
    }
    monkeypatch.setattr(T, "trained_model", lambda profile, arch, **over: trained[arch])
    got = FL.aliasing_study("tiny", {"epochs": 1})
    for key, arch in FL.LAYOUTS.items():
        want = FL.aliasing_controls(trained[arch], untrained_model("tiny", arch))
        for w in ("trained", "untrained", "noise"):
            for b in FL.ALIASING_BANDS:
                np.testing.assert_allclose(got[key][w][b], want[w][b])


# ---------------------------------------------------------------------------------------------
# occlusion (notebook 07)
# ---------------------------------------------------------------------------------------------


def _occ_result(p_clean, p_min, feature, total_clean, total_min):
    return NS(
        prob_target_clean=p_clean,
        prob_target=torch.tensor([[p_min, p_clean]]),
        feature=feature,
        feature_total_clean=total_clean,
        feature_total=torch.tensor([total_min, total_clean]),
    )


def test_example_numbers_text_and_drops_by_hand():
    rs = [_occ_result(0.9, 0.2, 3, 10.0, 4.0), _occ_result(0.5, 0.5, 1, 0.0, 0.0)]
    n = occ.example_numbers(rs)
    assert n["example_prob_correct_unoccluded"] == [0.9, 0.5] and n["example_layer5_feature"] == [
        3,
        1,
    ]
    assert n["example_prob_correct_min"] == pytest.approx([0.2, 0.5])
    assert n["example_layer5_total_drop_fraction"] == pytest.approx([0.6, 1.0])
    assert occ.prob_drops(rs) == pytest.approx([0.7, 0.0])
    assert (
        occ.examples_text(["cat", "dog"], rs)
        .splitlines()[0]
        .startswith("cat: p(correct) 0.900 unoccluded, 0.200")
    )


def _pointing(hits, grid, correct=None):
    n = len(hits)
    return occ.PointingGameResult(
        points=torch.zeros(n, 2),
        boxes=torch.zeros(n, 4),
        hits=torch.tensor(hits),
        chance_box=torch.full((n,), 0.25),
        chance_grid=torch.tensor(grid, dtype=torch.float64),
        correct=torch.tensor(correct or [True] * n),
        prob_drop=torch.zeros(n),
        window=16,
        stride=4,
    )


def test_pointing_numbers_and_verdicts_by_hand():
    pg = _pointing([True, True, False, True], [0.2, 0.3, 0.1, 0.2], [True, False, True, True])
    n = pg.numbers()
    assert n["pointing_game_hit_rate"] == 0.75 and n[
        "pointing_game_chance_square_grid"
    ] == pytest.approx(0.2)
    assert n["pointing_game_hit_rate_correctly_classified"] == pytest.approx(2 / 3)
    assert (n["pointing_game_images"], n["pointing_game_window_px"], n["pointing_game_target"]) == (
        4,
        16,
        0.8,
    )
    assert "in 75 % of them (67 % of the correctly classified)" in pg.summary()
    pg0 = _pointing([False, True, False, False], [0.2, 0.3, 0.1, 0.2])
    above_chance, above_untrained = occ.pointing_verdicts(pg, pg0)
    assert above_chance.effect == pytest.approx(
        100 * (0.75 - 0.2)
    ) and above_untrained.effect == pytest.approx(50.0)
    with pytest.raises(ValueError, match="same 4 images"):
        occ.pointing_verdicts(pg, _pointing([True, False], [0.1, 0.1]))


def test_strongest_map_projections_project_the_argmax_of_the_followed_map():
    from zfcore.deconv import layer_activations, project
    from zfcore.receptive import receptive_field

    model = _tiny_model()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    rs = [NS(feature=1), NS(feature=4)]
    pix, boxes = occ.strongest_map_projections(model, x, rs)
    acts = layer_activations(model, x, ["layer5"])["layer5"]
    req = []
    for i, r in enumerate(rs):
        fm = acts[i, r.feature]
        pos = (fm == fm.max()).nonzero()[0].tolist()  # the first maximum in row-major order
        req.append((i, r.feature, pos[0], pos[1]))
        assert boxes[i] == receptive_field(model, "layer5").box(pos[0], pos[1], 64)
    assert torch.equal(pix, project(model, x, "layer5", req).pixels)


# ---------------------------------------------------------------------------------------------
# correspondence (notebook 08)
# ---------------------------------------------------------------------------------------------


def _pairwise(values):
    d = {f"{p}/{l}": torch.full((3, 3), v) * (1 - torch.eye(3)) for (p, l), v in values.items()}
    return corr.PairwiseCorrespondence(
        layers=("layer5",),
        parts=corr.PARTS + (corr.RANDOM,),
        distances=d,
        sides=torch.ones(3),
        n_random=5,
    )


def test_pairwise_numbers_and_part_verdicts_by_hand():
    pw = _pairwise(
        {
            ("left_eye", "layer5"): 0.1,
            ("right_eye", "layer5"): 0.2,
            ("nose", "layer5"): 0.3,
            ("random", "layer5"): 0.4,
        }
    )
    assert pw.parts_mean("layer5") == pytest.approx(0.2)
    assert pw.numbers(["layer5"]) == pytest.approx(
        {
            "layer5_random_pair_distance": 0.4,
            "layer5_left_eye_pair_distance": 0.1,
            "layer5_right_eye_pair_distance": 0.2,
            "layer5_nose_pair_distance": 0.3,
        }
    )
    v = pw.part_verdicts(["layer5"])
    assert list(v) == [("layer5", p) for p in corr.PARTS]
    assert v["layer5", "nose"].claim == "layer5_nose_more_consistent_than_random"
    assert v["layer5", "left_eye"].effect == pytest.approx(
        pw.verdict("c", "left_eye", "layer5").effect
    )


def _table1(means5, means7):
    scores = {}
    for l, means in (("layer5", means5), ("layer7", means7)):
        for p, m in zip(corr.PARTS + (corr.RANDOM,), means):
            scores[f"{p}/{l}"] = torch.tensor([m - 0.01, m + 0.01], dtype=torch.float64)
    return corr.CorrespondenceResult(
        layers=("layer5", "layer7"),
        parts=corr.PARTS + (corr.RANDOM,),
        scores=scores,
        n_images=5,
        n_pool=10,
        square=0.3,
    )


def test_table1_trend_by_hand():
    sd = float(torch.tensor([-0.01, 0.01], dtype=torch.float64).std())
    r = _table1((0.3, 0.3, 0.3, 0.4), (0.38, 0.38, 0.38, 0.4))
    assert r.gaps("layer5") == pytest.approx({p: 0.1 / sd for p in corr.PARTS})
    assert r.trend_numbers()["layer7_nose_below_random_in_sd"] == pytest.approx(0.02 / sd)
    assert r.trend() == "holds here"
    t1 = r.table1_numbers()
    assert len(t1) == 4 * 2 * 2 and t1["table1_random_layer7_mean"] == pytest.approx(0.4)
    assert t1["table1_nose_layer5_std"] == pytest.approx(sd)
    assert r.gaps_text().startswith("Parts below random") and f"{0.1 / sd:+.1f}" in r.gaps_text()
    assert r.trend_numbers().keys() == {
        f"layer{l}_{p}_below_random_in_sd" for l in (5, 7) for p in corr.PARTS
    }
    assert _table1((0.3, 0.3, 0.3, 0.4), (0.2, 0.2, 0.2, 0.4)).trend().startswith("holds in part")
    assert _table1((0.3, 0.5, 0.3, 0.4), (0.2, 0.2, 0.2, 0.4)).trend().startswith("does not hold")


def test_face_images_on_scenes_and_on_photos(tmp_path):
    from PIL import Image

    from zfcore.data import normalize

    P = get_profile("tiny")
    faces = corr.face_images(P, pool=4)
    sb = corr.face_scenes(P, "test", 4)
    assert torch.equal(faces.images01, sb.images) and torch.equal(faces.x, normalize(sb.images, P))
    assert torch.equal(faces.boxes, sb.boxes) and faces.keypoints.keys() == sb.keypoints.keys()
    Q = get_profile("imagenet")
    with pytest.raises(ValueError, match="no procedural faces"):
        corr.check_photo_inputs(Q, None, None)
    notes = {}
    for i in range(3):
        Image.fromarray(np.full((80, 100, 3), 40 * i, np.uint8)).save(tmp_path / f"d{i}.png")
        notes[f"d{i}.png"] = {"left_eye": [40, 30], "right_eye": [60, 30], "nose": [50, 50]}
    (tmp_path / "kp.json").write_text(json.dumps({k: v for k, v in notes.items() if k != "d2.png"}))
    with pytest.raises(ValueError, match="only 2 photos"):
        corr.face_images(Q, n_images=3, photos=tmp_path, keypoints_file=tmp_path / "kp.json")
    got = corr.face_images(Q, n_images=2, photos=tmp_path, keypoints_file=tmp_path / "kp.json")
    want = corr.photo_keypoints(notes["d0.png"], (100, 80), Q.image_size)
    assert len(got.x) == 2 and torch.allclose(got.keypoints["nose"][0], want["nose"])
    assert torch.equal(got.boxes, corr.keypoint_boxes(got.keypoints))


def test_positive_control_is_the_swapped_pool_measured_pairwise():
    P = get_profile("tiny")
    faces = corr.face_images(P, pool=4)
    model = _tiny_model()
    got = corr.positive_control(model, faces.x, faces.keypoints, faces.boxes, ("layer5",))
    swapped = corr.background_swap(faces.x[0], faces.boxes[0], faces.x[1:])
    kp = {p: faces.keypoints[p][:1].repeat(3, 1) for p in corr.PARTS}
    want = corr.pairwise_correspondence(
        model,
        swapped,
        kp,
        faces.boxes[:1].repeat(3, 1),
        layers=("layer5",),
        fraction=corr.KEYPOINT_FRACTION,
    )
    for k, v in want.distances.items():
        assert torch.equal(got.distances[k], v)


# ---------------------------------------------------------------------------------------------
# ablations (notebook 09)
# ---------------------------------------------------------------------------------------------


def test_check_variants():
    from zfcore.models import TABLE3_VARIANTS

    assert ablations.check_variants("all") == list(TABLE3_VARIANTS)
    assert ablations.check_variants(("zf", "no_layer7")) == ["zf", "no_layer7"]
    for bad in (["zf", "nope"], []):
        with pytest.raises(ValueError, match="unknown variant"):
            ablations.check_variants(bad)
    assert set(ablations.TABLE3_LABELS) == set(TABLE3_VARIANTS)


# ---------------------------------------------------------------------------------------------
# plotting
# ---------------------------------------------------------------------------------------------


def test_layer_schedule_and_layer2_figures():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zfcore.plotting import train as tplot

    fig = tplot.plot_layer_schedules(_schedules(), title="t")
    bars = [[p.get_height() for p in ax.patches] for ax in fig.axes]
    sched = _schedules()
    assert bars[0] == pytest.approx([r["val accuracy (%)"] for r in sched.rows()])
    assert bars[1:] == [[100.0, 80.0, 90.0], [200.0, 300.0, 200.0]]
    plt.close(fig)
    feats = {n: {"projections": {"layer2": torch.rand(4, 3, 5, 5)}} for n in ("a", "b")}
    fig = tplot.plot_layer2_features(feats)
    assert len(fig.axes) == 8 and fig.axes[4].get_ylabel() == "b"
    plt.close(fig)
