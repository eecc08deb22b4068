"""zfcore.health (dead maps, layer-1 frequency share) and the trainer's recipe knobs, against
independent computations."""

import math

import pytest
import torch

from zfcore import health, recipes, train
from zfcore.evolution import Convergence, topk_overlap, topk_overlap_per_map
from zfcore.models import zfnet
from zfcore.profiles import get_profile


def _tiny_net():
    torch.manual_seed(0)
    return zfnet(width=0.125, image_size=64, num_classes=10, fc_units=512).eval()


def test_dead_maps_match_a_naive_loop():
    model = _tiny_net()
    with torch.no_grad():  # kill three layer-2 maps and one layer-6 unit by hand
        model.features.conv2.bias[:3] = -1e4
        model.classifier.fc6.bias[5] = -1e4
    x = torch.randn(20, 3, 64, 64)
    res = health.dead_maps(model, x, batch_size=7)
    # naive: run each image alone, read each layer through the Sequential, count per map
    counts = {}
    for i in range(len(x)):
        h = x[i : i + 1]
        outs = {}
        for name, m in model.features.named_children():
            h = m(h)
            if name.startswith("relu"):
                outs[f"layer{name[4:]}"] = h
        h = torch.flatten(h, 1)
        for name, m in model.classifier.named_children():
            h = m(h)
            if name.startswith("relu"):
                outs[f"layer{name[4:]}"] = h
        for k, o in outs.items():
            fired = (o.flatten(2).amax(2) if o.dim() == 4 else o)[0] > 0
            counts[k] = counts.get(k, 0) + fired.long()
    assert res.n_images == 20
    for k, c in counts.items():
        assert torch.equal(res.fire_counts[k], c), k
        assert res.dead_share(k) == pytest.approx(float((c == 0).float().mean()))
    assert res.dead_share("layer2") >= 3 / 16 and 5 not in res.alive("layer6").tolist()
    rec = res.as_record()
    assert rec["dead_map_share_layer2"] == res.dead_share("layer2")
    assert rec["rare_map_share_layer2"] >= rec["dead_map_share_layer2"]


def test_dead_maps_accepts_a_loader_and_restores_training_mode():
    model = _tiny_net().train()
    x = torch.randn(10, 3, 64, 64)
    loader = [(x[:6], torch.zeros(6)), (x[6:], torch.zeros(4))]
    a = health.dead_maps(model, loader)
    b = health.dead_maps(model, x)
    assert model.training
    assert all(torch.equal(a.fire_counts[k], b.fire_counts[k]) for k in a.fire_counts)
    with pytest.raises(health.HealthError):
        health.dead_maps(model, torch.randn(0, 3, 64, 64))
    with pytest.raises(health.HealthError):
        health.FireCounter(model, ["layer9"])


def test_low_frequency_share_of_smooth_and_noise_filters():
    model = _tiny_net()
    conv = model.features.conv1
    yy, xx = torch.meshgrid(torch.arange(7.0), torch.arange(7.0), indexing="ij")
    with torch.no_grad():
        conv.weight.copy_(torch.exp(-((xx - 3) ** 2 + (yy - 3) ** 2) / 8.0).expand_as(conv.weight))
        smooth = health.low_frequency_share(model)
        conv.weight.copy_(
            torch.randn(conv.weight.shape, generator=torch.Generator().manual_seed(0))
        )
        noise = health.low_frequency_share(model)
    assert smooth > 0.8 and 0.1 < noise < 0.3 and smooth > 3 * noise


def test_recipe_knobs_shape_the_initial_network_and_the_rate():
    spec = train.make_spec("tiny", bias_init=1.0, init="he", warmup_epochs=1.0)
    model = train.build_model(spec)
    assert torch.all(model.features.conv2.bias == 1.0) and torch.all(
        model.classifier.fc7.bias == 1.0
    )
    assert torch.all(model.classifier.fc8.bias == 0.0)  # logits are not a hidden layer
    w = model.features.conv3.weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / w[0].numel()), rel=0.1)
    opt = train._optimizer(spec, model)
    train._set_lr(opt, spec, 1.0, step=4, steps=10)  # half-way through a 1-epoch warm-up
    assert opt.param_groups[0]["lr"] == pytest.approx(spec.profile.lr * 0.5)
    train._set_lr(opt, spec, 0.1, step=50, steps=10)
    assert opt.param_groups[0]["lr"] == pytest.approx(spec.profile.lr * 0.1)
    assert isinstance(
        train._optimizer(train.make_spec("tiny", optimizer="adamw"), model), torch.optim.AdamW
    )


def test_logits_init_std_and_late_dropout():
    small = train.build_model(train.make_spec("tiny", init="he"))
    he = train.build_model(train.make_spec("tiny", init="he", logits_init_std=None))
    assert small.classifier.fc8.weight.std().item() == pytest.approx(1e-2, rel=0.1)
    w = he.classifier.fc8.weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / w.shape[1]), rel=0.1)
    assert all(
        torch.equal(a, b)
        for (k, a), (_, b) in zip(small.state_dict().items(), he.state_dict().items())
        if not k.startswith("classifier.fc8.weight")
    )
    p = get_profile("tiny", dropout_after=1.0)
    drops = [m for m in small.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(drops) == 2
    for progress, rate in ((0.0, 0.0), (0.99, 0.0), (1.0, 0.5), (2.5, 0.5)):
        train.loop._set_dropout(small, p, progress)
        assert all(m.p == rate for m in drops)


def test_bf16_training_changes_the_arithmetic_not_the_keys_of_fp32_runs(tmp_path):
    fp32 = train.make_spec("tiny")
    assert "precision" not in fp32.key_config()["profile"]  # artefacts of fp32 runs keep their keys
    bf16 = train.make_spec("tiny", precision="bf16")
    assert bf16.entry() != fp32.entry()
    kw = dict(progress=False, epochs=1, n_train=128, n_val=64, batch_size=64)
    a = train.training_run("tiny", cache_dir=tmp_path, **kw).model().state_dict()
    b = train.training_run("tiny", precision="bf16", cache_dir=tmp_path, **kw).model().state_dict()
    c = (
        train.training_run("tiny", precision="bf16", cache_dir=tmp_path / "again", **kw)
        .model()
        .state_dict()
    )
    assert all(v.dtype == torch.float32 for v in b.values())  # weights stay fp32
    w = "features.conv2.weight"
    assert not torch.equal(a[w], b[w])  # the steps really ran in bfloat16
    assert torch.equal(b[w], c[w])  # ... deterministically
    w0 = train.build_model(
        train.make_spec("tiny", n_train=128, n_val=64, batch_size=64)
    ).state_dict()[w]
    step_fp32, gap = (a[w] - w0).norm(), (a[w] - b[w]).norm()
    assert gap < 0.5 * step_fp32  # ... and close to what fp32 learned


def test_history_records_health_and_eval_mode_training_error(tmp_path):
    run = train.training_run(
        "tiny", progress=False, epochs=1, n_train=128, n_val=64, batch_size=64, cache_dir=tmp_path
    )
    h = run.final
    assert set(h.dead_share) == {f"layer{i}" for i in range(1, 8)}
    assert 0 <= h.train_eval_top1_error <= 100 and h.max_filter_rms > 0
    # the eval-mode training error equals an independent evaluation of the same images
    from zfcore.data import get_dataset

    ds = get_dataset(run.spec.profile, "train")
    from zfcore.probes import per_image_correct

    correct = per_image_correct(run.model(), ds, list(range(64)))
    assert 100 * (1 - correct.float().mean().item()) == pytest.approx(
        h.train_eval_top1_error, abs=1e-6
    )


def test_per_map_topk_overlap_and_depth_verdict():
    a = torch.tensor([[1, 2, 3], [4, 5, 6]])
    b = torch.tensor([[3, 2, 9], [7, 8, 9]])
    assert topk_overlap_per_map(a, b).tolist() == pytest.approx([2 / 3, 0.0])
    assert topk_overlap(a, b) == pytest.approx(1 / 3)
    conv = Convergence(
        epochs=[1, 2, 4, 8],
        weight_similarity={},
        topk_similarity={},
        weight_threshold=0.9,
        topk_threshold=0.5,
        weight_converged={},
        topk_converged={},
        n_images=10,
        k=9,
        map_converged={"layer1": [1.0] * 20, "layer3": [2.0, 4.0] * 10, "layer5": [8.0] * 20},
    )
    v = conv.depth_verdict(n_boot=200)
    assert v.verdict == "held" and v.effect > 0.8
    conv.map_converged = {"layer1": [8.0, 1.0] * 10, "layer5": [1.0, 8.0] * 10}
    assert conv.depth_verdict(n_boot=200).verdict == "within noise"
    assert conv.spread("layer1")[0] == pytest.approx(4.5)


def test_profile_recipe_names_the_profiles_recipe():
    assert recipes.profile_recipe("mini") in recipes.RECIPES
    with pytest.raises(KeyError):
        recipes.recipe_overrides("nope")
