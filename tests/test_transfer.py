"""Transfer and probes (zfcore.transfer): splits, linear probes against scikit-learn, average
precision against scikit-learn and a hand-worked VOC example, frozen layers through training,
the feature path against the network path, and whole studies on a small synthetic pool."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from zfcore.features import extract_features
from zfcore.models import zfnet
from zfcore.transfer import (
    TransferConfig,
    TransferData,
    TransferError,
    TransferNet,
    average_precision,
    batch_schedule,
    fit_images,
    fit_probe,
    make_splits,
    mean_class_accuracy,
    per_class_ap,
    predict_scores,
    probe_layers,
    run_transfer,
    scratch_like,
    transfer_config,
)


def _model(seed=0, classes=5):
    torch.manual_seed(seed)
    return zfnet(width=0.125, image_size=64, num_classes=classes, fc_units=512).eval()


def _pool(per_class=12, classes=4, seed=0):
    """A learnable synthetic pool: each class is a bright square at its own place and channel."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(per_class * classes) % classes
    x = 0.3 * torch.randn(len(y), 3, 64, 64, generator=g)
    for c in range(classes):
        x[y == c, c % 3, 10 * c : 10 * c + 20, 10 * c : 10 * c + 20] += 2.0
    return x, y


# --- splits ------------------------------------------------------------------------------------


def test_splits_reproducible_disjoint_balanced_nested():
    labels = torch.tensor([c for c in range(5) for _ in range(40)])[torch.randperm(200)]
    a = make_splits(labels, (5, 10, 15), draws=3, test_per_class=20, seed=7)
    b = make_splits(labels, (5, 10, 15), draws=3, test_per_class=20, seed=7)
    c = make_splits(labels, (5, 10, 15), draws=3, test_per_class=20, seed=8)
    for sa, sb in zip(a, b):
        assert torch.equal(sa.test, sb.test)
        assert all(torch.equal(sa.train[n], sb.train[n]) for n in (5, 10, 15))
    assert not torch.equal(a[0].train[5], c[0].train[5])
    assert not torch.equal(a[0].train[5], a[1].train[5])  # draws differ
    for s in a:
        test = set(s.test.tolist())
        assert len(test) == 5 * 20
        assert torch.bincount(labels[s.test], minlength=5).tolist() == [20] * 5
        prev = set()
        for n in (5, 10, 15):
            tr = set(s.train[n].tolist())
            assert len(tr) == 5 * n and not (tr & test)
            assert torch.bincount(labels[s.train[n]], minlength=5).tolist() == [n] * 5
            assert prev <= tr  # nested: a larger n adds images
            prev = tr


def test_splits_all_remaining_and_errors():
    labels = torch.tensor([0] * 6 + [1] * 9)
    s = make_splits(labels, (2, 4), draws=1, test_per_class=None)[0]
    assert len(s.test) == (6 - 4) + (9 - 4)
    with pytest.raises(TransferError, match="too few images"):
        make_splits(labels, (6,), draws=1)
    with pytest.raises(TransferError, match="1-d class indices"):
        make_splits(torch.zeros(4, 2), (1,), draws=1)


def test_config_validation_and_profile_defaults():
    assert transfer_config("mini").ns == (5, 10, 15, 30)
    assert transfer_config("imagenet", dataset="caltech256").ns == (15, 30, 45, 60)
    with pytest.raises(TransferError, match="increasing"):
        TransferConfig(ns=(10, 5))
    with pytest.raises(TransferError, match="unknown transfer setting"):
        transfer_config("tiny", epochs=3)
    with pytest.raises(TransferError, match="layer must be"):
        TransferConfig(layer="layer9")
    cfg = TransferConfig(train_batch=32, min_steps=10)
    assert cfg.steps(12, 40) == 15 and cfg.steps(1, 40) == 10  # ceil(12 * 40 / 32); the floor
    assert TransferConfig(draws=5, network_draws=3).trained_draws == 3
    assert TransferConfig(draws=2, network_draws=3).trained_draws == 2
    assert TransferConfig(draws=5, network_draws=None).trained_draws == 5
    with pytest.raises(TransferError, match="network_draws"):
        TransferConfig(network_draws=0)
    # the from-scratch budget does not shrink with n: same floor and cap at every profile's ns
    assert TransferConfig().trained_draws == TransferConfig().draws  # same draws as the softmax
    with pytest.raises(TransferError, match="scratch_max_steps"):
        TransferConfig(scratch_min_steps=50, scratch_max_steps=10)
    with pytest.raises(TransferError, match="scratch_check_every"):
        TransferConfig(scratch_check_every=0)
    with pytest.raises(TransferError, match="scratch_shift"):
        TransferConfig(scratch_shift=-1)


# --- probes against scikit-learn ---------------------------------------------------------------


def _blobs(n=60, d=8, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, size=d) + rng.normal(size=(k, d))[y] * 1.5 + 4
    return torch.tensor(X, dtype=torch.float32), torch.tensor(y)


def _z(X):
    m, s = X.mean(0), X.std(0, unbiased=False)
    return ((X - m) / s).double().numpy()


def test_softmax_probe_equals_sklearn_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    X, y = _blobs()
    reg = 0.05
    probe = fit_probe(X, y, "softmax", reg=reg, max_iter=500)
    sk = LogisticRegression(C=1.0 / (reg * len(y)), tol=1e-10, max_iter=10000).fit(_z(X), y.numpy())
    ours = probe.scores(X).softmax(1).double().numpy()
    np.testing.assert_allclose(ours, sk.predict_proba(_z(X)), atol=2e-4)


def test_sigmoid_probe_equals_per_class_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    X, y = _blobs(k=3)
    Y = F.one_hot(y, 3)
    Y[::5, 0] = 1  # some images carry two labels (multi-label, as in PASCAL VOC)
    reg = 0.05
    probe = fit_probe(X, Y, "sigmoid", reg=reg, max_iter=500)
    for k in range(3):
        sk = LogisticRegression(C=1.0 / (reg * len(y)), tol=1e-10, max_iter=10000).fit(
            _z(X), Y[:, k].numpy()
        )
        np.testing.assert_allclose(
            torch.sigmoid(probe.scores(X)[:, k]).double().numpy(),
            sk.predict_proba(_z(X))[:, 1],
            atol=2e-4,
        )


def test_svm_probe_equals_linear_svc_on_standardised_features():
    from sklearn.svm import LinearSVC

    X, y = _blobs(k=4)
    probe = fit_probe(X, y, "svm", C=0.1)
    sk = LinearSVC(C=0.1, random_state=0, max_iter=4000).fit(_z(X), y.numpy())
    np.testing.assert_allclose(
        probe.scores(X).double().numpy(), sk.decision_function(_z(X)), rtol=1e-3, atol=1e-3
    )
    assert torch.equal(probe.predict(X), torch.as_tensor(sk.predict(_z(X))))


def test_probe_errors():
    X, y = _blobs()
    with pytest.raises(TransferError, match="method must be one of"):
        fit_probe(X, y, "knn")
    with pytest.raises(TransferError, match="labels"):
        fit_probe(X, y[:-1])
    with pytest.raises(TransferError, match="multi-hot labels need"):
        fit_probe(X, F.one_hot(y), "softmax")
    with pytest.raises(TransferError, match="do not fit"):
        fit_probe(X, y).scores(X[:, :3])


# --- scores --------------------------------------------------------------------------------------


def test_average_precision_equals_sklearn_on_hand_made_examples():
    from sklearn.metrics import average_precision_score

    cases = [
        ([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [1, 0, 1, 0, 0, 1]),
        ([0.5, 0.5, 0.2, 0.9, 0.5, 0.1], [1, 0, 1, 1, 0, 0]),  # ties
        ([3, 1, 2, 2, 0, 5, 5], [0, 0, 1, 1, 0, 1, 0]),
        ([0.1, 0.2, 0.3], [1, 1, 1]),
    ]
    for s, t in cases:
        assert average_precision(s, t) == pytest.approx(average_precision_score(t, s), abs=1e-12)
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = rng.integers(0, 5, 30).astype(float)  # many ties
        t = rng.integers(0, 2, 30)
        t[0] = 1
        assert average_precision(s, t) == pytest.approx(average_precision_score(t, s), abs=1e-12)


def test_voc_average_precision_hand_worked():
    # ranking: + - + - - +  -> precision at the positives 1, 2/3, 1/2; envelope gives 1, 2/3, 1/2
    s, t = [6, 5, 4, 3, 2, 1], [1, 0, 1, 0, 0, 1]
    assert average_precision(s, t, "sklearn") == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)
    assert average_precision(s, t, "voc") == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)
    # ranking: - + + : precisions 1/2, 2/3; the envelope lifts the first to 2/3
    assert average_precision([3, 2, 1], [0, 1, 1], "sklearn") == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert average_precision([3, 2, 1], [0, 1, 1], "voc") == pytest.approx(2 / 3)
    assert np.isnan(average_precision([1, 2], [0, 0]))


def test_per_class_ap_and_mean_class_accuracy():
    from sklearn.metrics import average_precision_score

    g = torch.Generator().manual_seed(0)
    scores = torch.rand(20, 3, generator=g)
    labels = torch.arange(20) % 3
    ap = per_class_ap(scores, labels)
    for k in range(3):
        assert ap[k] == pytest.approx(
            average_precision_score((labels == k).numpy(), scores[:, k].numpy())
        )
    # class 0: 2/2, class 1: 0/1 -> mean of per-class accuracies 0.5 (plain accuracy would be 2/3)
    assert mean_class_accuracy(torch.tensor([0, 0, 0]), torch.tensor([0, 0, 1])) == pytest.approx(
        0.5
    )


# --- networks -------------------------------------------------------------------------------------


def test_frozen_layers_stay_bit_identical_and_head_matches_feature_path():
    model = _model()
    x, y = _pool(per_class=6)
    ds = TensorDataset(x, y)
    idx = torch.arange(len(y))
    net = TransferNet(model, num_classes=4)
    before = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    head0 = {k: v.clone() for k, v in net.head.state_dict().items()}
    fit_images(net, ds, idx, y, steps=6, lr=1e-2, batch_size=8, seed=3, flip=False, progress=False)
    after = net.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a frozen layer changed"
    assert not torch.equal(head0["weight"], net.head.weight)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), after.values()))

    # the same head trained by hand on precomputed layer-7 features, same batches and optimiser
    feats = extract_features(model, ds, ["layer7"], progress=False)["layer7"]
    head = torch.nn.Linear(feats.shape[1], 4)
    head.load_state_dict(head0)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for b in batch_schedule(len(idx), 6, 8, 3):
        loss = F.cross_entropy(head(feats[b]), y[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.testing.assert_close(net.head.weight, head.weight, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(net.head.bias, head.bias, rtol=1e-4, atol=1e-5)


def test_from_probe_network_equals_probe_on_features():
    model = _model()
    x, y = _pool(per_class=5)
    feats = extract_features(model, (x, y), ["layer7"], progress=False)["layer7"]
    probe = fit_probe(feats, y, "softmax")
    net = TransferNet.from_probe(model, probe)
    net.train()  # the backbone stays in eval mode: dropout never touches the frozen features
    assert not net.backbone.training
    with torch.no_grad():
        torch.testing.assert_close(net(x), probe.scores(feats), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(
        predict_scores(net, TensorDataset(x, y), torch.arange(len(y))),
        probe.scores(feats),
        rtol=1e-4,
        atol=1e-3,
    )


def test_fine_tuning_changes_backbone_not_source():
    model = _model()
    src = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _pool(per_class=4)
    net = TransferNet(model, num_classes=4, fine_tune=True)
    fit_images(net, TensorDataset(x, y), torch.arange(len(y)), y, steps=2, lr=1e-3, progress=False)
    assert not torch.equal(net.backbone.features.conv1.weight, src["features.conv1.weight"])
    assert all(torch.equal(src[k], v) for k, v in model.state_dict().items())


def test_scratch_like_same_architecture_fresh_seeded_weights():
    model = _model()
    a, b, c = (
        scratch_like(model, 3, seed=1),
        scratch_like(model, 3, seed=1),
        scratch_like(model, 3, seed=2),
    )
    sa, sm = a.state_dict(), model.state_dict()
    assert list(sa) == list(sm)
    for k in sa:
        if k.startswith("classifier.fc8"):
            assert sa[k].shape[0] == 3
        else:
            assert sa[k].shape == sm[k].shape
    assert not torch.equal(sa["features.conv1.weight"], sm["features.conv1.weight"])
    assert torch.equal(sa["features.conv1.weight"], b.state_dict()["features.conv1.weight"])
    assert not torch.equal(sa["features.conv1.weight"], c.state_dict()["features.conv1.weight"])
    assert a.layer_names == model.layer_names


def test_batch_schedule_covers_each_item_once_per_epoch():
    bs = batch_schedule(10, 6, 4, seed=0)
    assert [len(b) for b in bs] == [4] * 6
    first_epoch = torch.cat(bs[:2])
    assert len(set(first_epoch.tolist())) == 8
    assert all(torch.equal(p, q) for p, q in zip(bs, batch_schedule(10, 6, 4, seed=0)))


# --- whole studies --------------------------------------------------------------------------------


def test_run_transfer_and_probe_layers_on_a_synthetic_pool(tmp_path):
    model = _model()
    x, y = _pool(per_class=10)
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

    lp = probe_layers(model, data, cfg, cache_dir=tmp_path, progress=False)
    assert lp.layers == [f"layer{i}" for i in range(1, 8)] and lp.n == 5
    assert lp.accuracy["svm"].shape == lp.accuracy["softmax"].shape == (2, 7)
    # the layer-7 softmax of Table 7 is exactly Table 4's pretrained softmax at the same n
    torch.testing.assert_close(lp.accuracy["softmax"][:, -1], r.pretrained[:, -1])
    assert torch.equal(lp.correct["softmax"][:, -1], r.correct["pretrained"][:, -1])
    assert torch.equal(lp.test_labels, r.test_labels)
    v = lp.verdict("svm")
    deep = lp.accuracy["svm"][:, 4:].double().mean()
    shallow = lp.accuracy["svm"][:, :3].double().mean()
    assert v.claim == "deeper_layers_better_svm" and v.effect == pytest.approx(
        100 * float(deep - shallow)
    )
    with pytest.raises(TransferError, match="were not probed"):
        lp.verdict("svm", deep=("layer9",))
    with pytest.raises(TransferError, match="is not one of config.ns"):
        probe_layers(model, data, cfg, n=3, cache_dir=tmp_path, progress=False)


def test_plots_and_tables_draw_from_results():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import zfcore.plotting.transfer as tplot
    from zfcore.transfer import PAPER_TABLES, LayerProbeResult, TransferResult, summary_rows

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


# --- the from-scratch baseline trained to a plateau; verdicts over draws and images -----------


def test_random_shift_is_a_window_of_the_reflect_padded_image():
    from zfcore.transfer import random_shift

    x = torch.randn(6, 3, 9, 9)
    assert torch.equal(random_shift(x, 0, torch.Generator().manual_seed(0)), x)
    out = random_shift(x, 2, torch.Generator().manual_seed(0))
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(6):  # naive: some offset in 0..4 x 0..4 reproduces each output image exactly
        assert any(
            torch.equal(out[i], padded[i, :, dy : dy + 9, dx : dx + 9])
            for dy in range(5)
            for dx in range(5)
        )
    with pytest.raises(TransferError, match="does not fit"):
        random_shift(x, 9, torch.Generator())


def test_plateau_rule_by_hand():
    from zfcore.transfer import plateau_reached

    assert not plateau_reached([0.1, 0.2, 0.3], patience=3, min_gain=0.01)  # too few checks
    assert not plateau_reached([0.1, 0.2, 0.3, 0.4], patience=3, min_gain=0.01)  # still rising
    assert plateau_reached([0.5, 0.5, 0.505, 0.49], patience=3, min_gain=0.01)  # +0.005 <= 0.01
    assert not plateau_reached([0.5, 0.2, 0.2, 0.52], patience=3, min_gain=0.01)


def test_fit_to_plateau_fits_a_learnable_set_and_stops_on_an_unlearnable_one():
    from zfcore.transfer import fit_to_plateau

    x, y = _pool(per_class=6, classes=2)
    ds = TensorDataset(x, y)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 5, stride=4),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 15 * 15, 2),
    )
    idx = torch.arange(len(y))
    fit = fit_to_plateau(
        net, ds, idx, y, lr=1e-2, min_steps=4, max_steps=200, check_every=2, batch_size=6
    )
    assert fit.stopped == "fit" and fit.train_accuracy == 1.0 and 4 <= fit.steps <= 200
    # the recorded training accuracy is the eval-mode accuracy of the returned network, by hand
    assert bool((net(x).argmax(1) == y).all()) and not net.training
    assert [s for s, _ in fit.checks] == list(range(2, fit.steps + 1, 2))
    # random labels with a learning rate of 0 cannot be learnt: stops on the plateau rule
    frozen = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64 * 64, 2))
    flat = fit_to_plateau(
        frozen,
        ds,
        idx,
        y,
        lr=0.0,
        min_steps=6,
        max_steps=100,
        check_every=2,
        patience=2,
        batch_size=6,
    )
    assert flat.stopped == "plateau" and flat.steps == 6 and len(flat.losses) == 6
    capped = fit_to_plateau(
        frozen, ds, idx, y, lr=0.0, min_steps=5, max_steps=5, check_every=10, batch_size=6
    )
    assert capped.stopped == "max_steps" and capped.checks[-1][0] == 5


def test_draws_bootstrap_point_and_interval_by_hand():
    from zfcore.transfer import draws_bootstrap

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
    with pytest.raises(TransferError, match="same"):
        draws_bootstrap("demo", model[:, :4], control, lab)


# --- section 5's "faster training": the cost of each arm's classifier ----------------------------


def test_steps_to_reach_and_checks_made_by_hand():
    from zfcore.transfer import checks_made, fit_to_plateau, steps_to_reach

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
    # the checks of fit_to_plateau, counted by the run itself
    x, y = _pool(per_class=6, classes=2)
    ds, idx = TensorDataset(x, y), torch.arange(len(y))
    for min_steps, max_steps, every in ((6, 100, 2), (5, 5, 10), (3, 7, 3), (4, 9, 4)):
        torch.manual_seed(0)
        frozen = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64 * 64, 2))
        fit = fit_to_plateau(
            frozen,
            ds,
            idx,
            y,
            lr=0.0,
            min_steps=min_steps,
            max_steps=max_steps,
            check_every=every,
            patience=2,
            batch_size=6,
        )
        assert checks_made(fit.steps, every, max_steps) == len(fit.checks)
    with pytest.raises(TransferError, match="max_steps"):
        checks_made(8, 2, 5)


def _separable_features(seed=0, per_class=6, classes=3, dim=20):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(per_class * classes) % classes
    X = torch.randn(len(y), dim, generator=g) + 3.0 * F.one_hot(y, dim).float()
    return X, y


def test_train_head_equals_a_hand_written_adam_loop():
    from zfcore.transfer import steps_to_reach, train_head

    X, y = _separable_features()
    Xt, yt = _separable_features(seed=1)
    run = train_head(X, y, Xt, yt, 3, max_steps=12, lr=1e-2, batch_size=5, seed=4)
    # by hand: standardise with the training rows, seeded nn.Linear, Adam over the same minibatches
    Z = (X - X.mean(0)) / X.std(0, unbiased=False)
    Zt = (Xt - X.mean(0)) / X.std(0, unbiased=False)
    torch.manual_seed(4)
    head = torch.nn.Linear(20, 3)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    by_hand = []
    for b in batch_schedule(len(y), 12, 5, seed=4):
        opt.zero_grad()
        F.cross_entropy(head(Z[b]), y[b]).backward()
        opt.step()
        pred = head(Zt).argmax(1)
        by_hand.append(np.mean([(pred[yt == c] == c).float().mean().item() for c in range(3)]))
    assert run.accuracy == pytest.approx(by_hand, abs=1e-6)
    assert run.steps == 12 and len(run.seconds) == 12
    assert all(b >= a >= 0 for a, b in zip(run.seconds, run.seconds[1:]))  # cumulative
    # a rate of 0 never moves: the curve is flat at the starting accuracy
    flat = train_head(X, y, Xt, yt, 3, max_steps=7, lr=0.0, batch_size=5, seed=4)
    assert flat.steps == 7 and len(set(flat.accuracy)) == 1
    assert steps_to_reach(flat.accuracy, flat.accuracy[0] + 0.01) is None
    with pytest.raises(TransferError, match="same D"):
        train_head(X, y, Xt[:, :5], yt, 3, max_steps=3, lr=1e-2)


def _speed(
    pre_steps,
    scr_steps,
    reached,
    head_s=None,
    feat_s=(1.0, 2.0),
    step_s=(0.5, 0.5),
    check_s=(0.1, 0.2),
):
    from zfcore.transfer import TrainingSpeedResult

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
    with pytest.raises(TransferError, match="draws >= 2"):
        _speed([[1, 1]], [[10, 10]], [[True, True]]).verdict("steps")
    with pytest.raises(TransferError, match="measure"):
        r.verdict("minutes")


def test_training_speed_study_on_a_synthetic_pool(tmp_path):
    from zfcore.transfer import steps_to_reach, train_head, training_speed

    model = _model()
    x, y = _pool(per_class=10)
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
    # each run by hand: the same features, draws and seed; steps = the first step reaching the target
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
    with pytest.raises(TransferError, match="scratch=True"):
        training_speed(
            model, data, TransferConfig(ns=(2,), scratch=False), cache_dir=tmp_path, progress=False
        )
