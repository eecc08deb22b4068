"""Tables 2-3 comparisons (zfcore.ablations, zfcore.probes.per_image_correct): per-image
correctness against a naive loop and the trainer's evaluation, the eval-mode training error on the
fixed subset, and the verdicts against hand-computed effects and a second bootstrap."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

from zfcore import ablations, probes
from zfcore.ablations import AblationError, ModelEval
from zfcore.verdicts import paired_bootstrap


def _net(seed=0, classes=6):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, classes))


def _data(n=37, classes=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, classes, (n,), generator=g))


def test_per_image_correct_equals_a_naive_loop_and_the_trainers_evaluation():
    from zfcore.train import evaluate
    net, ds = _net().train(), _data()
    for k in (1, 3):
        got = probes.per_image_correct(net, ds, k=k, batch_size=8)
        assert net.training                                    # the mode is restored
        net.eval()
        with torch.no_grad():
            naive = torch.tensor([int(ds[i][1]) in net(ds[i][0][None])[0].topk(k).indices.tolist()
                                  for i in range(len(ds))])
        net.train()
        assert torch.equal(got, naive)
    ev = evaluate(net, ds, batch_size=10)
    assert probes.error_pct(probes.per_image_correct(net, ds)) == pytest.approx(ev["top1_error"])
    assert probes.error_pct(probes.per_image_correct(net, ds, k=5)) == pytest.approx(ev["top5_error"])
    one, five = probes.per_image_correct(net, ds, k=(1, 5))       # one pass, both
    assert torch.equal(one, probes.per_image_correct(net, ds)) and torch.equal(five, probes.per_image_correct(net, ds, k=5))
    sub = torch.tensor([3, 0, 20])
    assert torch.equal(probes.per_image_correct(net, ds, sub), probes.per_image_correct(net, ds)[sub])
    with pytest.raises(probes.TransferError, match="indices must lie"):
        probes.per_image_correct(net, ds, torch.tensor([37]))
    with pytest.raises(probes.TransferError, match="top-k"):
        probes.per_image_correct(net, ds, k=0)


def test_load_batch_reads_a_rendered_split_unaugmented():
    class Rendered:                      # the interface of zfcore.train.RenderedScenes
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


def test_evaluate_model_on_tiny_matches_the_trainers_evaluation_on_the_training_subset(tmp_path):
    from zfcore import data
    from zfcore.models import zfnet
    from zfcore.profiles import get_profile
    from zfcore.train import evaluate
    P = get_profile("tiny", cache_dir=tmp_path)
    sub = ablations.train_eval_indices(P)
    assert torch.equal(sub, torch.arange(min(P.n_val, P.n_train)))
    torch.manual_seed(0)
    model = zfnet(**P.model_kwargs()).eval()
    ev = ablations.evaluate_model(model, P)
    assert len(ev.val_top1) == P.n_val and len(ev.train_top1) == len(sub)
    train_set, val_set = data.get_dataset(P, "train"), data.get_dataset(P, "val")
    assert ev.train_top1_error == pytest.approx(evaluate(model, Subset(train_set, sub.tolist()))["top1_error"])
    assert ev.val_top5_error == pytest.approx(evaluate(model, val_set)["top5_error"])
    again = ablations.evaluate_model(model, P)                 # from the cache
    assert torch.equal(again.val_top1, ev.val_top1)


def test_evaluate_run_agrees_with_the_trainers_eval_mode_training_error(tmp_path):
    """Where the trainer records ``train_eval_top1_error`` (eval mode, the same subset), the
    independent measurement here must reproduce it."""
    from zfcore import train
    run = train.training_run("tiny", progress=False, epochs=1, cache_dir=tmp_path)
    ev = ablations.evaluate_run(run)
    row = ablations.table_row("Fig. 3", run, ev)
    assert row["train_running_top1_error"] == run.final.train_top1_error
    assert row["val_top1_error"] == pytest.approx(run.final.val_top1_error, abs=1e-6)
    trainer = getattr(run.final, "train_eval_top1_error", None)
    if trainer is not None:
        assert ev.train_top1_error == pytest.approx(trainer, abs=1e-6)


def test_joint_bootstrap_of_a_difference_is_the_paired_bootstrap():
    rng = np.random.default_rng(0)
    a, b = rng.random(300) < 0.7, rng.random(300) < 0.6
    v = ablations.joint_bootstrap("demo", {"a": a, "b": b}, lambda m: 100 * (m["a"] - m["b"]))
    w = paired_bootstrap("demo", a, b, scale=100.0, unit="points")
    assert (v.effect, v.low, v.high, v.verdict) == pytest.approx((w.effect, w.low, w.high, w.verdict))
    with pytest.raises(AblationError, match="same"):
        ablations.joint_bootstrap("demo", {"a": a, "b": b[:10]}, lambda m: m["a"])


def _eval(val, train=None):
    val = torch.as_tensor(val, dtype=torch.bool)
    train = val if train is None else torch.as_tensor(train, dtype=torch.bool)
    return ModelEval(val, val, train, train)


def test_ablation_verdicts_signs_and_values_by_hand():
    n = 400
    idx = torch.arange(n)
    acc = lambda p: idx < int(p * n)      # noqa: E731  the first p*n images right
    evals = {"zf": _eval(acc(0.80), acc(0.85)), "no_layers6_7": _eval(acc(0.78)), "no_layers3_4": _eval(acc(0.77)),
             "no_layers3_4_6_7": _eval(acc(0.40)), "conv3_4_5_wide": _eval(acc(0.80)),
             "fc6_7_8192": _eval(acc(0.75), acc(0.99))}
    kr = _eval(acc(0.70))
    vs = {v.claim: v for v in ablations.ablation_verdicts(evals, kr, n_boot=500)}
    assert set(vs) == {"zf_layout_beats_krizhevsky", "table3_no_layers6_7", "table3_no_layers3_4",
                       "table3_no_layers3_4_6_7", "table3_conv3_4_5_wide", "table3_fc6_7_8192",
                       "removing_both_costs_most", "wider_conv_helps", "wider_fc_overfits"}
    assert vs["zf_layout_beats_krizhevsky"].effect == pytest.approx(10.0)
    assert vs["zf_layout_beats_krizhevsky"].verdict == "held"
    assert vs["table3_no_layers3_4_6_7"].effect == pytest.approx(40.0)           # paper: worse, +
    assert vs["table3_conv3_4_5_wide"].effect == pytest.approx(0.0)              # paper: better, sign -1
    assert vs["table3_conv3_4_5_wide"].verdict == "within noise"
    # error(both) 60 - max(error(6-7) 22, error(3-4) 23) = 37 points
    assert vs["removing_both_costs_most"].effect == pytest.approx(37.0)
    assert vs["removing_both_costs_most"].verdict == "held"
    # gaps: fc 25 - 1 = 24, Fig. 3: 20 - 15 = 5 -> 19 points
    assert vs["wider_fc_overfits"].effect == pytest.approx(19.0) and vs["wider_fc_overfits"].verdict == "held"
    assert "seed variance not included" in vs["wider_fc_overfits"].source
    nums = ablations.verdict_numbers(evals, kr, "wider_fc_overfits")
    assert list(nums.values()) == pytest.approx([24.0, 5.0])
    # a variant better than the full model where the paper says worse: did not hold
    better = dict(evals, no_layer7=_eval(acc(0.95)))
    v = {v.claim: v for v in ablations.ablation_verdicts(better, n_boot=500)}["table3_no_layer7"]
    assert v.effect == pytest.approx(-15.0) and v.verdict == "did not hold"
    with pytest.raises(AblationError, match="'zf'"):
        ablations.ablation_verdicts({"no_layer7": evals["zf"]})


def test_ablation_table_shows_eval_and_running_training_error():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zfcore.plotting.train import plot_ablation_table
    rows = [{"model": "Fig. 3", "train_top1_error": 12.5, "train_running_top1_error": 31.0,
             "val_top1_error": 20.0, "val_top5_error": 3.0}]
    fig = plot_ablation_table(rows, [{"model": "paper", "val_top1_error": 38.4, "val_top5_error": 16.5}])
    texts = [c.get_text().get_text() for c in fig.axes[0].tables[0].get_celld().values()]
    assert {"train top-1 (eval)", "train top-1 (running)", "12.5", "31.0", "38.4"} <= set(texts)
    assert texts.count("-") == 2            # the paper's rows give no training errors
    plt.close(fig)
