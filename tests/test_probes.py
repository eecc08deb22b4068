"""Linear probes and scores (zfcore.probes): the softmax, one-vs-rest logistic and SVM probes
against scikit-learn, average precision against scikit-learn and a hand-worked VOC example, the
mean of per-class accuracies, the standardisation and the one-thread block."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from zfcore import probes
from zfcore.probes import (
    ProbeError,
    average_precision,
    fit_probe,
    mean_class_accuracy,
    one_thread,
    per_class_ap,
    standardise,
)

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
    with pytest.raises(ProbeError, match="method must be one of"):
        fit_probe(X, y, "knn")
    with pytest.raises(ProbeError, match="labels"):
        fit_probe(X, y[:-1])
    with pytest.raises(ProbeError, match="multi-hot labels need"):
        fit_probe(X, F.one_hot(y), "softmax")
    with pytest.raises(ProbeError, match="do not fit"):
        fit_probe(X, y).scores(X[:, :3])


def test_standardise_and_one_thread():
    X = torch.tensor([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0], [5.0, 5.0, 9.0]])
    mean, std = standardise(X)
    assert torch.equal(mean, X.mean(0))
    # population standard deviation; the constant (dead) column gets 1, so it standardises to 0
    torch.testing.assert_close(std, torch.tensor([(8 / 3) ** 0.5, 1.0, (26 / 3) ** 0.5]))
    assert torch.equal(((X - mean) / std)[:, 1], torch.zeros(3))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(ProbeError):
            with one_thread():
                raise ProbeError("the thread count comes back even on an error")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


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


# --- per-image correctness (Tables 2-3's verdicts read it) --------------------------------------


def _net(seed=0, classes=6):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(), nn.Linear(4 * 6 * 6, classes)
    )


def _data(n=37, classes=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(
        torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, classes, (n,), generator=g)
    )


def test_per_image_correct_equals_a_naive_loop_and_the_trainers_evaluation():
    from zfcore.train import evaluate

    net, ds = _net().train(), _data()
    for k in (1, 3):
        got = probes.per_image_correct(net, ds, k=k, batch_size=8)
        assert net.training  # the mode is restored
        net.eval()
        with torch.no_grad():
            naive = torch.tensor(
                [
                    int(ds[i][1]) in net(ds[i][0][None])[0].topk(k).indices.tolist()
                    for i in range(len(ds))
                ]
            )
        net.train()
        assert torch.equal(got, naive)
    ev = evaluate(net, ds, batch_size=10)
    assert probes.error_pct(probes.per_image_correct(net, ds)) == pytest.approx(ev["top1_error"])
    assert probes.error_pct(probes.per_image_correct(net, ds, k=5)) == pytest.approx(
        ev["top5_error"]
    )
    one, five = probes.per_image_correct(net, ds, k=(1, 5))  # one pass, both
    assert torch.equal(one, probes.per_image_correct(net, ds)) and torch.equal(
        five, probes.per_image_correct(net, ds, k=5)
    )
    sub = torch.tensor([3, 0, 20])
    assert torch.equal(
        probes.per_image_correct(net, ds, sub), probes.per_image_correct(net, ds)[sub]
    )
    with pytest.raises(probes.ProbeError, match="indices must lie"):
        probes.per_image_correct(net, ds, torch.tensor([37]))
    with pytest.raises(probes.ProbeError, match="top-k"):
        probes.per_image_correct(net, ds, k=0)


def test_load_batch_reads_a_rendered_split_unaugmented():
    class Rendered:  # the interface of zfcore.train.RenderedScenes
        ready = True

        def __init__(self):
            self.calls = []

        def __len__(self):
            return 10

        def batch(self, indices, epoch, augment):
            self.calls.append((indices.tolist(), epoch, augment))
            return torch.zeros(len(indices), 3, 2, 2) + indices.view(-1, 1, 1, 1), indices % 3

    r = Rendered()
    x, y = probes.load_batch(r, [4, 7])
    assert r.calls == [([4, 7], 0, False)] and x[1, 0, 0, 0] == 7 and y.tolist() == [1, 1]
