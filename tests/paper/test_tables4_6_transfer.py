"""Tables 4-6 and Fig. 9 (zfcore.paper.tables4_6_transfer): whole transfer studies on a small
synthetic pool against the probe and the splits by hand, the tables beside the paper's, the
verdicts' bootstrap over draws and images, section 5's "faster training" by hand, and the
imagenet profile's path (AlexNet on miniature Caltech and VOC trees in their real layout)."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from tests.helpers.transfer_pool import (
    imagenet_profile,
    real_layout_tree,
    small_zfnet,
    square_pool,
    untrained_alexnet,
)
from zfcore.features import extract_features
from zfcore.paper.tables4_6_transfer import (
    PAPER_TABLES,
    TRANSFER_VERSION,
    MultiLabelResult,
    TrainingSpeedResult,
    TransferResult,
    TransferStudyError,
    describe_study,
    draws_bootstrap,
    record_prefix,
    run_multilabel,
    run_transfer,
    steps_to_reach,
    study_key,
    summary_rows,
    training_speed,
)
from zfcore.probes import average_precision, fit_probe
from zfcore.transfer import (
    TransferConfig,
    TransferData,
    make_splits,
    multilabel_study,
    train_head,
    transfer_config,
    transfer_features,
    transfer_studies,
)

# --- Tables 4-5 and Fig. 9 -----------------------------------------------------------------------


@pytest.mark.slow
def test_run_transfer_on_a_synthetic_pool(tmp_path):
    model = small_zfnet()
    x, y = square_pool(per_class=10)
    data = TransferData("synthetic", TensorDataset(x, y), ["a", "b", "c", "d"], {"synthetic": 1})
    cfg = TransferConfig(
        ns=(2, 5),
        draws=2,
        test_per_class=4,
        scratch_min_steps=2,
        scratch_max_steps=4,
        scratch_check_every=2,
        scratch_shift=2,
        train_batch=8,
        max_iter=50,
        fine_tune=True,
        fine_tune_epochs=1,
        min_steps=1,
        network_draws=None,
    )
    r = run_transfer(model, data, cfg, cache_dir=tmp_path, progress=False)
    assert r.pretrained.shape == r.scratch.shape == r.fine_tuned.shape == (2, 2)
    assert r.ap.shape == (2, 2, 4) and r.classes == ["a", "b", "c", "d"]
    assert r.test_images == 16
    assert float(r.mean("pretrained")[-1]) > 0.9  # the squares are easy on layer-7 features
    # 4 classes x 4 test images: every mean of per-class accuracies is a multiple of 1/16
    assert ((r.pretrained * 16).round() - r.pretrained * 16).abs().max() < 1e-5
    # recomputed by hand for draw 1, n = 2, from the same splits and the same probe
    feats = extract_features(model, (x, y), ["layer7"], progress=False)["layer7"]
    s = make_splits(y, cfg.ns, cfg.draws, cfg.test_per_class, cfg.seed)[1]
    probe = fit_probe(
        feats[s.train[2]], y[s.train[2]], reg=cfg.reg, max_iter=cfg.max_iter, num_classes=4
    )
    pred = probe.predict(feats[s.test])
    by_hand = np.mean([(pred[y[s.test] == c] == c).float().mean().item() for c in range(4)])
    assert float(r.pretrained[1, 0]) == pytest.approx(by_hand)
    again = run_transfer(model, data, cfg, cache_dir=tmp_path, progress=False)
    assert torch.equal(again.pretrained, r.pretrained) and torch.equal(again.scratch, r.scratch)
    # per-image correctness: its mean class accuracy is the recorded accuracy of every arm
    assert r.test_labels.shape == (2, 16)
    for arm in ("pretrained", "scratch", "fine_tuned"):
        assert r.correct[arm].shape == (2, 2, 16)
        for d in range(2):
            for j in range(2):
                c, lab = r.correct[arm][d, j].float(), r.test_labels[d]
                by_class = np.mean([c[lab == k].mean().item() for k in range(4)])
                assert float(getattr(r, arm)[d, j]) == pytest.approx(by_class)
    assert torch.equal(r.correct["pretrained"][1, 0], pred == y[s.test])
    assert bool(((r.scratch_train >= 0) & (r.scratch_train <= 1)).all())
    assert bool(((r.scratch_steps >= 2) & (r.scratch_steps <= 4)).all())
    assert {x for row in r.scratch_stopped for x in row} <= {"fit", "plateau", "max_steps"}
    nums = r.numbers()
    assert nums["scratch_train_accuracy_pct_n2"] == pytest.approx(
        100 * float(r.scratch_train[:, 0].mean())
    )
    assert set(nums["scratch_stops_n5"].split(",")) == {r.scratch_stopped[d][1] for d in range(2)}
    vs = r.verdicts("scratch")
    assert [v.claim for v in vs] == ["pretrained_beats_scratch_n2", "pretrained_beats_scratch_n5"]
    assert vs[1].effect == pytest.approx(
        100 * float(r.mean("pretrained")[1] - r.mean("scratch")[1])
    )

    assert r.class_ap().shape == (4,) and r.ap_numbers()["ap_pct_a"] == pytest.approx(
        100 * float(r.ap[:, -1, 0].mean())
    )
    text = r.scratch_fit_text().splitlines()
    assert len(text) == 2 and text[0].startswith("synthetic, n = 2: from scratch ")
    assert f"{100 * float(r.mean('scratch')[1]):.1f} % on the test images" in text[1]
    assert r.verdict_detail(0).endswith(", chance 25.0 %)")
    assert r.conclusion(vs).startswith("synthetic: the pretrained network beat the from-scratch")
    assert [v.claim for v in r.verdicts("scratch", prefix="syn_")][0] == (
        "syn_pretrained_beats_scratch_n2"
    )


def test_plots_and_tables_draw_from_results():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import zfcore.plotting.transfer as tplot
    from zfcore.paper.table7_features import LayerProbeResult

    r = TransferResult(
        "toy",
        ["a", "b"],
        [5, 10],
        torch.tensor([[0.5, 0.7], [0.6, 0.9]]),
        torch.tensor([[0.5, 0.5], [0.5, 0.6]]),
        torch.zeros(0, 2),
        torch.rand(2, 2, 2),
        40,
        16,
        0.01,
    )
    rows = summary_rows([r], PAPER_TABLES)
    ours = [x for x in rows if x["source"] == "ours" and x["n"] == 10 and "frozen" in x["approach"]]
    # mean of 0.7 and 0.9; sample standard deviation sqrt(2 * 0.1^2 / 1) = 0.1414
    assert ours[0]["accuracy_pct"] == pytest.approx(80.0) and ours[0]["std_pct"] == pytest.approx(
        14.142, abs=1e-3
    )
    paper = [
        x for x in rows if x["source"] == "paper" and x["n"] == 15 and "Caltech-101" in x["dataset"]
    ]
    assert sorted(x["accuracy_pct"] for x in paper) == [22.8, 83.8]
    text = tplot.format_rows(rows)
    assert "83.8 ± 0.5" in text and "80.0 ± 14.1" in text
    assert r.numbers()["pretrained_advantage_pct_smallest_n"] == pytest.approx(5.0)
    lp = LayerProbeResult(
        "toy",
        ["layer1", "layer2"],
        10,
        {"svm": torch.tensor([[0.4, 0.6]]), "softmax": torch.tensor([[0.5, 0.45]])},
        [8, 4],
        20,
        ["a", "b"],
    )
    assert lp.monotone("svm") and not lp.monotone("softmax")
    assert lp.drops("softmax") == [("layer1", "layer2", pytest.approx(0.05))]
    figs = [
        tplot.accuracy_table(rows),
        tplot.accuracy_curve([r], PAPER_TABLES),
        tplot.ap_table(r.classes, r.ap[:, -1].mean(0), "toy"),
        tplot.layer_accuracy(lp),
    ]
    assert all(isinstance(f, plt.Figure) for f in figs)
    assert "layer2" in tplot.layer_table_text(lp)
    for f in figs:
        plt.close(f)


def test_study_key_names_a_study_and_record_prefixes():
    model = small_zfnet()
    cfg = TransferConfig(ns=(2, 5), draws=2)
    key = study_key(model, {"pool": 1}, cfg, "layers", n=5)
    assert key["version"] == TRANSFER_VERSION == 4 and key["kind"] == "layers" and key["n"] == 5
    assert key["config"]["ns"] == (2, 5) and key["data"] == {"pool": 1}
    one = TransferResult("Caltech-101", [], [5], *[torch.zeros(1, 1)] * 4, 1, 1, 0.0)
    two = TransferResult("Caltech-256", [], [5], *[torch.zeros(1, 1)] * 4, 1, 1, 0.0)
    assert record_prefix(one, [one]) == ""
    assert [record_prefix(r, [one, two]) for r in (one, two)] == ["caltech-101_", "caltech-256_"]
    data = TransferData("toy", list(range(12)), ["a", "b"], {"toy": 1})
    text = describe_study(data, transfer_config("tiny"))
    assert text.startswith("toy: 2 classes, 12 images; n = (2, 5) per class, 2 draws")
    assert "from scratch: Adam (lr 0.002)" in text and "100 to 200 steps" in text
    assert "\n" not in describe_study(data, TransferConfig(scratch=False))
    ml = MultiLabelResult("VOC", ["cat", "dog"], torch.tensor([0.5, float("nan")]), 10, 5)
    assert ml.mean_ap == 0.5 and ml.numbers() == {"voc_mean_ap_pct": 50.0}


# --- the verdicts: a bootstrap over draws and test images ----------------------------------------


def test_draws_bootstrap_point_and_interval_by_hand():
    lab = torch.tensor([[0, 0, 1, 1, 2, 2]] * 3)
    model = torch.tensor([[1, 1, 0, 1, 1, 0], [1, 0, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1]]).float()
    control = torch.tensor([[0, 1, 0, 0, 1, 0], [1, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 1]]).float()
    v = draws_bootstrap("demo", model, control, lab)
    naive = np.mean(
        [
            np.mean(
                [(model[d][lab[d] == c] - control[d][lab[d] == c]).mean().item() for c in range(3)]
            )
            for d in range(3)
        ]
    )
    assert v.effect == pytest.approx(100 * naive) and v.low <= v.effect <= v.high
    assert "3 draws" in v.source
    # stratified by class: a model right on all of class 0 only, a control never right, is
    # exactly 1/3 better in every resample (each resample keeps two class-0 images)
    only0 = (lab == 0).float()
    w = draws_bootstrap("demo", only0, torch.zeros_like(only0), lab, n_boot=200)
    assert (
        w.low == pytest.approx(100 / 3) and w.high == pytest.approx(100 / 3) and w.verdict == "held"
    )
    same = draws_bootstrap("demo", model, model, lab)
    assert (same.effect, same.low, same.high, same.verdict) == (0.0, 0.0, 0.0, "within noise")
    assert draws_bootstrap("demo", control, model, lab).effect == pytest.approx(-v.effect)
    with pytest.raises(TransferStudyError, match="same"):
        draws_bootstrap("demo", model[:, :4], control, lab)


# --- section 5's "faster training": the cost of each arm's classifier ----------------------------


def test_steps_to_reach_by_hand():
    curve = [0.1, 0.3, 0.25, 0.5, 0.4]
    # the first step from which the curve stays at or above the target: the crossing at step 2 is
    # lost again at step 3, so 0.3 is reached from step 4 on
    assert steps_to_reach(curve, 0.3) == 4 and steps_to_reach(curve, 0.2) == 2
    assert steps_to_reach(curve, 0.05) == 1 and steps_to_reach(curve, 0.45) is None
    assert steps_to_reach(curve, 0.4) == 4 and steps_to_reach([], 0.1) is None
    assert (
        steps_to_reach([0.1, 0.3], float(torch.tensor(0.3))) == 2
    )  # a target stored in float32 is met

    def naive(c, t):
        return next((k for k in range(1, len(c) + 1) if all(a >= t for a in c[k - 1 :])), None)

    rng = np.random.default_rng(0)
    for _ in range(200):
        c = rng.integers(0, 5, size=rng.integers(1, 8)) / 4
        t = rng.integers(0, 5) / 4
        assert steps_to_reach(list(c), t) == naive(list(c), t)


def _separable_features(seed=0, per_class=6, classes=3, dim=20):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(per_class * classes) % classes
    X = torch.randn(len(y), dim, generator=g) + 3.0 * F.one_hot(y, dim).float()
    return X, y


def _speed(
    pre_steps,
    scr_steps,
    reached,
    head_s=None,
    feat_s=(1.0, 2.0),
    step_s=(0.5, 0.5),
    check_s=(0.1, 0.2),
):
    pre_steps = torch.tensor(pre_steps)
    return TrainingSpeedResult(
        "toy",
        [5, 10],
        100,
        torch.full(pre_steps.shape, 0.4),
        torch.tensor(scr_steps),
        torch.tensor(scr_steps) // 10,
        pre_steps,
        torch.tensor(reached),
        torch.full(pre_steps.shape, 0.01, dtype=torch.float64)
        if head_s is None
        else torch.tensor(head_s),
        torch.tensor(feat_s),
        torch.tensor(step_s),
        torch.tensor(check_s),
        {"train_batch": 32},
    )


def test_training_speed_costs_ratios_and_verdicts_by_hand():
    import math

    r = _speed(
        [[2, 100], [4, 8], [1, 10]],
        [[200, 400], [200, 400], [100, 400]],
        [[True, False], [True, True], [True, True]],
    )
    # scratch seconds: steps x 0.5 s + (steps // 10) checks x 0.1 s (n = 5) or 0.2 s (n = 10)
    assert float(r.cost("scratch", "seconds")[0, 0]) == pytest.approx(200 * 0.5 + 20 * 0.1)
    assert float(r.cost("scratch", "seconds")[2, 1]) == pytest.approx(400 * 0.5 + 40 * 0.2)
    # pretrained seconds: the one-off features of n = 10 plus the softmax's training
    assert float(r.cost("pretrained", "seconds")[1, 1]) == pytest.approx(2.0 + 0.01)
    # steps: ln(200 / 2) etc.; the miss (100 steps against 400) is capped at ratio 1
    lr = [[math.log(100), 0.0], [math.log(50), math.log(50)], [math.log(100), math.log(40)]]
    np.testing.assert_allclose(r.log_ratio("steps").numpy(), lr)
    assert r.speedup("steps") == pytest.approx(math.exp(np.mean(lr)))
    v = r.verdict("steps", n_boot=500)
    assert v.claim == "transfer_trains_in_fewer_steps" and v.effect == pytest.approx(np.mean(lr))
    # the interval: a bootstrap over the draws' own means, by hand with the same generator
    per_draw = np.mean(lr, axis=1)
    pick = np.random.default_rng(0).integers(0, 3, size=(500, 3))
    assert (v.low, v.high) == pytest.approx(
        tuple(np.quantile(per_draw[pick].mean(1), [0.025, 0.975]))
    )
    assert v.verdict == "held" and "1 of 6 missed" in v.source and "3 draws" in v.source
    assert (
        r.verdicts()[0].claim == "transfer_trains_faster" and "extracting" in r.verdicts()[0].source
    )
    # a miss in seconds still counts as no faster even though the softmax's budget took 1 s only
    assert float(r.log_ratio("seconds")[0, 1]) == 0.0
    nums = r.numbers("x_")
    assert nums["x_pretrained_steps_to_scratch_accuracy_mean_n10"] == pytest.approx(
        (100 + 8 + 10) / 3
    )
    assert nums["x_scratch_seconds_to_scratch_accuracy_mean_n5"] == pytest.approx(
        (102 + 102 + 51) / 3
    )
    assert (
        nums["x_pretrained_missed_scratch_accuracy_n10"] == 1
        and nums["x_pretrained_step_budget"] == 100
    )
    # slower in every draw: did not hold; the same in every draw: a zero-width interval
    slow = _speed([[50, 50], [60, 60]], [[10, 20], [10, 20]], [[True, True], [True, True]])
    assert slow.verdict("steps").verdict == "did not hold"
    same = _speed([[10, 10], [10, 10]], [[20, 40], [20, 40]], [[True, True], [True, True]])
    s = same.verdict("steps")
    assert s.low == pytest.approx(s.effect) and s.high == pytest.approx(s.effect)
    with pytest.raises(TransferStudyError, match="draws >= 2"):
        _speed([[1, 1]], [[10, 10]], [[True, True]]).verdict("steps")
    with pytest.raises(TransferStudyError, match="measure"):
        r.verdict("minutes")
    text = r.cost_text().splitlines()
    assert len(text) == 2 and text[1].startswith("n = 10: to reach 40.0 % (the scratch network")
    assert "ended below in 1 of 3 draws, each charged its whole 100 steps" in text[1]
    found = r.verdicts(prefix="toy_", n_boot=200)
    assert [v.claim for v in found] == [
        "toy_transfer_trains_faster",
        "toy_transfer_trains_in_fewer_steps",
    ]
    assert r.conclusion(found).startswith("toy: the paper's 'faster training' held here")
    assert "1 of 6 softmaxes ended below it" in r.conclusion(found)


@pytest.mark.slow
def test_training_speed_study_on_a_synthetic_pool(tmp_path):
    model = small_zfnet()
    x, y = square_pool(per_class=10)
    data = TransferData("synthetic", TensorDataset(x, y), ["a", "b", "c", "d"], {"synthetic": 1})
    cfg = TransferConfig(
        ns=(2, 5),
        draws=2,
        test_per_class=4,
        scratch_min_steps=2,
        scratch_max_steps=6,
        scratch_check_every=2,
        train_batch=8,
        max_iter=50,
    )
    r = run_transfer(model, data, cfg, cache_dir=tmp_path, progress=False)
    sp = training_speed(model, data, cfg, cache_dir=tmp_path, progress=False, timing_steps=2)
    assert torch.equal(sp.target, r.scratch) and torch.equal(
        sp.scratch_steps, r.scratch_steps.long()
    )
    assert sp.budget == 6 and sp.pretrained_steps.shape == (2, 2)
    # each run by hand: the same features, draws and seed; steps: the first to reach the target
    feats = extract_features(model, (x, y), ["layer7"], progress=False)["layer7"]
    for s in make_splits(y, cfg.ns, cfg.draws, cfg.test_per_class, cfg.seed):
        for j, n in enumerate(cfg.ns):
            tr, te = s.train[n], s.test
            full = train_head(
                feats[tr],
                y[tr],
                feats[te],
                y[te],
                4,
                max_steps=6,
                lr=cfg.scratch_lr,
                batch_size=8,
                seed=s.draw * 100 + j,
            )
            hit = steps_to_reach(full.accuracy, float(r.scratch[s.draw, j]))
            assert bool(sp.reached[s.draw, j]) == (hit is not None)
            assert int(sp.pretrained_steps[s.draw, j]) == (6 if hit is None else hit)
    assert bool((sp.feature_seconds > 0).all() and (sp.scratch_step_seconds > 0).all())
    assert bool((sp.scratch_check_seconds > 0).all() and (sp.head_seconds > 0).all())
    again = training_speed(model, data, cfg, cache_dir=tmp_path, progress=False, timing_steps=2)
    assert torch.equal(again.head_seconds, sp.head_seconds)  # read from the cache, not timed again
    assert [v.claim for v in sp.verdicts(n_boot=200)] == [
        "transfer_trains_faster",
        "transfer_trains_in_fewer_steps",
    ]
    with pytest.raises(TransferStudyError, match="scratch=True"):
        training_speed(
            model, data, TransferConfig(ns=(2,), scratch=False), cache_dir=tmp_path, progress=False
        )


# --- the imagenet profile's path on miniature trees in the real layout ---------------------------


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return real_layout_tree(tmp_path_factory.mktemp("zfcore-data"))


def _miniature_studies(tree):
    return transfer_studies(
        imagenet_profile(tree),
        ns=(2, 4),
        draws=2,
        test_per_class=3,
        scratch_min_steps=1,
        scratch_max_steps=1,
        min_steps=1,
        train_batch=4,
        max_iter=20,
        network_draws=1,
    )


@pytest.mark.slow
def test_tables_4_5_on_miniature_caltech(tree, tmp_path):
    """The imagenet profile's path (AlexNet on Caltech-101 and Caltech-256) on miniature trees in
    the real layout, with an untrained AlexNet: the plumbing, not the accuracy."""
    net = untrained_alexnet()
    studies = _miniature_studies(tree)
    for i, (data, cfg) in enumerate(studies):
        if i:  # the from-scratch AlexNet is exercised once (Caltech-101): it is the slow part
            cfg = dataclasses.replace(cfg, scratch=False)
        r = run_transfer(net, data, cfg, cache_dir=tmp_path, progress=False)
        assert r.pretrained.shape == (2, 2) and r.scratch.shape == ((0, 2) if i else (1, 2))
        assert r.feature_dim == 4096 and r.test_images == 9 and r.classes == data.classes
        assert bool(((r.pretrained >= 0) & (r.pretrained <= 1)).all())
    rows = summary_rows([r], PAPER_TABLES)
    assert {row["source"] for row in rows} == {"ours", "paper"}


@pytest.mark.slow
def test_table_6_on_miniature_voc(tree, tmp_path):
    net = untrained_alexnet()
    data, cfg = multilabel_study(imagenet_profile(tree), max_iter=30)
    assert data.name == "PASCAL VOC 2012" and len(data.classes) == 20
    ml = run_multilabel(net, data, cfg, cache_dir=tmp_path, progress=False)
    assert ml.ap.shape == (20,) and ml.train_images == 9 and ml.test_images == 6
    present = [data.classes.index(c) for c in ("cat", "dog", "person")]
    absent = [k for k in range(20) if k not in present]
    assert not torch.isnan(ml.ap[present]).any() and torch.isnan(ml.ap[absent]).all()
    assert 0 <= ml.mean_ap <= 1
    # the AP of each class is the VOC devkit AP of the probe's scores (recomputed independently)
    options = dict(cache_dir=tmp_path, device="cpu", progress=False)
    feats_tr = transfer_features(net, data, cfg, [cfg.layer], **options)
    feats_te = transfer_features(net, data, cfg, [cfg.layer], test=True, **options)
    probe = fit_probe(feats_tr[cfg.layer], feats_tr.labels, "sigmoid", reg=cfg.reg, max_iter=30)
    scores = probe.scores(feats_te[cfg.layer])
    for k in present:
        assert float(ml.ap[k]) == pytest.approx(
            average_precision(scores[:, k], feats_te.labels[:, k], "voc"), abs=1e-6
        )
    with pytest.raises(TransferStudyError, match="'sigmoid' or 'svm'"):
        run_multilabel(net, data, cfg, method="softmax", cache_dir=tmp_path, progress=False)
