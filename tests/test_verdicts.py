"""zfcore.paper.verdicts against hand-worked intervals and a naive bootstrap."""

import math

import numpy as np
import pytest

from zfcore.paper import verdicts as V


def test_decide_three_words():
    assert V.decide(0.1, 2.0) == "held"
    assert V.decide(-2.0, -0.1) == "did not hold"
    assert V.decide(-0.1, 0.1) == "within noise"
    assert V.decide(0.6, 1.0, margin=0.5) == "held"
    assert V.decide(0.4, 1.0, margin=0.5) == "within noise"
    with pytest.raises(V.VerdictError):
        V.decide(1.0, 0.0)


def test_from_samples_matches_hand_t_interval():
    # three seeds: mean 2, sd 1 -> se 1/sqrt(3), t(2) = 4.303
    v = V.from_samples("x", [1.0, 2.0, 3.0], 0.0)
    h = 4.303 / math.sqrt(3)
    assert v.effect == pytest.approx(2.0)
    assert (v.low, v.high) == (pytest.approx(2 - h), pytest.approx(2 + h))
    assert v.verdict == "within noise"  # 2 - 2.48 < 0
    assert V.from_samples("x", [10.0, 10.5, 11.0], 0.0).verdict == "held"
    assert V.from_samples("x", [1.0, 1.1, 0.9], [3.0, 3.1, 2.9]).verdict == "did not hold"


def test_paired_bootstrap_cancels_shared_items_and_matches_naive_loop():
    rng = np.random.default_rng(1)
    base = rng.random(500) < 0.7
    model = base | (rng.random(500) < 0.1)  # the model gets a few more right
    v = V.paired_bootstrap("acc", model, base, n_boot=500, seed=3, scale=100)
    # naive loop with the same generator draws
    r = np.random.default_rng(3)
    idx = r.integers(0, 500, size=(500, 500))
    naive = sorted(100 * (model[i].mean() - base[i].mean()) for i in idx)
    assert v.low == pytest.approx(np.quantile(naive, 0.025))
    assert v.effect == pytest.approx(100 * (model.mean() - base.mean()))
    assert v.verdict == "held"
    same = V.paired_bootstrap("acc", base, base)
    assert same.verdict == "within noise" and same.low == 0 == same.high


def test_record_keys_and_rule():
    class Rep:
        def __init__(self):
            self.n = {}

        def record(self, **kw):
            self.n.update(kw)

    rep = Rep()
    v = V.from_interval("table2_zf_beats_krizhevsky", 1.0, -0.5, 2.5).record(rep)
    assert rep.n["verdict_table2_zf_beats_krizhevsky"] == "within noise"
    assert rep.n["table2_zf_beats_krizhevsky_ci_low"] == -0.5
    assert "held if" in v.rule
    with pytest.raises(V.VerdictError):
        V.from_interval("bad name", 0, 0, 0)


def test_binomial_se():
    assert V.binomial_se(0.24, 2000) == pytest.approx(0.00955, rel=1e-3)


def test_unpaired_bootstrap_matches_naive_loop():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([0.0, 0.5, 1.0])
    v = V.unpaired_bootstrap("x", a, b, n_boot=300, seed=5)
    r = np.random.default_rng(5)
    ia = r.integers(0, 4, size=(300, 4))
    ib = r.integers(0, 3, size=(300, 3))
    naive = [a[i].mean() - b[j].mean() for i, j in zip(ia, ib)]
    assert v.low == pytest.approx(np.quantile(naive, 0.025))
    assert v.high == pytest.approx(np.quantile(naive, 0.975))
    assert v.effect == pytest.approx(2.5 - 0.5)
