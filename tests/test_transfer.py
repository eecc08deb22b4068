"""The engine of section 5's transfer (zfcore.transfer): splits, settings, pools, frozen layers
through training, the feature path against the network path, fine-tuning, the from-scratch
baseline trained to a plateau and a new softmax trained step by step."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from tests.helpers.transfer_pool import small_zfnet, square_pool
from zfcore.features import extract_features
from zfcore.probes import fit_probe
from zfcore.transfer import (
    PooledSplits,
    PoolIndexError,
    TransferConfig,
    TransferData,
    TransferError,
    TransferNet,
    batch_schedule,
    checks_made,
    fit_images,
    fit_to_plateau,
    make_splits,
    plateau_reached,
    predict_scores,
    preloaded,
    random_shift,
    remap_labels,
    scratch_like,
    train_head,
    trainer,
    transfer_config,
    transfer_features,
)

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


def test_remap_labels_names_and_pools():
    y, present = remap_labels(torch.tensor([7, 2, 7, 5, 2]))
    assert present == [2, 5, 7] and y.tolist() == [2, 0, 2, 1, 0]
    data = TransferData("toy", None, ["a", "b", "c"], {"toy": 1})
    assert data.names_of([0, 2, 4]) == ["a", "c", "4"]  # a class the pool does not name
    a = TensorDataset(torch.zeros(2, 1), torch.tensor([0, 1]))
    b = TensorDataset(torch.ones(3, 1), torch.tensor([2, 3, 4]))
    pool = PooledSplits([a, b])
    assert len(pool) == 5 and int(pool[3][1]) == 3
    assert [int(y) for _, y in pool.__getitems__([4, 0, 2])] == [4, 0, 2]
    with pytest.raises(PoolIndexError, match="outside the pool of 5"):
        pool[5]
    with pytest.raises(IndexError):  # the sequence protocol's error, for iteration
        pool[-1]
    with pytest.raises(TransferError, match="at least one"):
        PooledSplits([])


def test_transfer_features_are_the_pools_features_cached(tmp_path):
    model = small_zfnet()
    x, y = square_pool(per_class=3)
    data = TransferData("synthetic", TensorDataset(x, y), ["a", "b", "c", "d"], {"synthetic": 2})
    cfg = TransferConfig(ns=(1,), draws=1)
    got = transfer_features(
        model, data, cfg, ["layer5", "layer7"], cache_dir=tmp_path, progress=False
    )
    want = extract_features(model, (x, y), ["layer5", "layer7"], progress=False)
    for l in ("layer5", "layer7"):
        torch.testing.assert_close(got[l], want[l])
    assert torch.equal(got.labels, y)
    assert any((tmp_path / "features").iterdir())  # cached under the pool's key
    again = transfer_features(model, data, cfg, ["layer5", "layer7"], cache_dir=tmp_path)
    assert torch.equal(again["layer7"], got["layer7"])


# --- networks -------------------------------------------------------------------------------------


def test_frozen_layers_stay_bit_identical_and_head_matches_feature_path():
    model = small_zfnet()
    x, y = square_pool(per_class=6)
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
    model = small_zfnet()
    x, y = square_pool(per_class=5)
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
    model = small_zfnet()
    src = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = square_pool(per_class=4)
    net = TransferNet(model, num_classes=4, fine_tune=True)
    fit_images(net, TensorDataset(x, y), torch.arange(len(y)), y, steps=2, lr=1e-3, progress=False)
    assert not torch.equal(net.backbone.features.conv1.weight, src["features.conv1.weight"])
    assert all(torch.equal(src[k], v) for k, v in model.state_dict().items())


def test_scratch_like_same_architecture_fresh_seeded_weights():
    model = small_zfnet()
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


def test_preloaded_and_trainer():
    x, y = square_pool(per_class=3, classes=2)
    ds = TensorDataset(x, y)
    idx = torch.tensor([4, 1, 3])
    held = preloaded(ds, idx)
    assert len(held) == 3 and torch.equal(held[3][0], x[3]) and int(held[1][1]) == int(y[1])
    xs, ys = held.__getitems__([3, 4])
    assert torch.equal(xs, x[[3, 4]]) and torch.equal(ys, y[[3, 4]])
    # one Adam step per call on the given positions; the same seed gives the same step
    losses, weights = [], []
    for _ in range(2):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64 * 64, 2))
        w0 = net[1].weight.detach().clone()
        step = trainer(net, ds, idx, y[idx], lr=1e-2, flip=True, shift=2, seed=1, device="cpu")
        losses.append([step(torch.tensor([0, 2])) for _ in range(3)])
        weights.append(net[1].weight.detach().clone())
    assert losses[0] == losses[1] and torch.equal(weights[0], weights[1])
    assert not torch.equal(weights[0], w0) and net.training
    frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(TransferError, match="no trainable parameters"):
        trainer(frozen, ds, idx, y[idx], lr=1e-2, flip=False, shift=0, seed=0, device="cpu")
    with pytest.raises(TransferError, match="3 indices but 2 labels"):
        trainer(net, ds, idx, y[:2], lr=1e-2, flip=False, shift=0, seed=0, device="cpu")


def test_predict_scores_leaves_the_networks_mode():
    x, y = square_pool(per_class=2, classes=2)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(3 * 64 * 64, 2)
    ).train()
    got = predict_scores(net, TensorDataset(x, y), torch.arange(4), batch_size=3)
    assert net.training  # given back in training mode
    with torch.no_grad():
        want = net.eval()(x)
    torch.testing.assert_close(got, want)  # scored in eval mode: no dropout


# --- the from-scratch baseline trained to a plateau; a new softmax step by step ----------------


def test_random_shift_is_a_window_of_the_reflect_padded_image():
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
    assert not plateau_reached([0.1, 0.2, 0.3], patience=3, min_gain=0.01)  # too few checks
    assert not plateau_reached([0.1, 0.2, 0.3, 0.4], patience=3, min_gain=0.01)  # still rising
    assert plateau_reached([0.5, 0.5, 0.505, 0.49], patience=3, min_gain=0.01)  # +0.005 <= 0.01
    assert not plateau_reached([0.5, 0.2, 0.2, 0.52], patience=3, min_gain=0.01)


def test_fit_to_plateau_fits_a_learnable_set_and_stops_on_an_unlearnable_one():
    x, y = square_pool(per_class=6, classes=2)
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


def test_checks_made_counts_fit_to_plateaus_checks():
    # the checks of fit_to_plateau, counted by the run itself
    x, y = square_pool(per_class=6, classes=2)
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
    assert max(flat.accuracy) < flat.accuracy[0] + 0.01  # never reaches a higher target
    with pytest.raises(TransferError, match="same D"):
        train_head(X, y, Xt[:, :5], yt, 3, max_steps=3, lr=1e-2)
