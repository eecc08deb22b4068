"""``zfcore.attribute``: one call shape for the deconvnet, guided backpropagation, the gradient
and occlusion, each checked against an independent computation (autograd, Captum)."""

import warnings

import pytest
import torch

import zfcore
from zfcore import models
from zfcore.attribution import METHODS, AttributionError, attribute, default_targets


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return models.he_init_(
        models.zfnet(width=0.125, image_size=64, fc_units=128, num_classes=10)
    ).eval()


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.randn(3, 3, 64, 64)


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def test_the_package_exports_the_verb():
    assert zfcore.attribute is attribute


@pytest.mark.parametrize("method", METHODS)
def test_every_method_has_one_shape_and_restores_the_mode(net, images, method):
    net.train()
    try:
        out = attribute(
            net,
            images,
            target=[1, 2, 3],
            method=method,
            **({"window": 16, "stride": 16} if method == "occlusion" else {}),
        )
        assert net.training and all(m.training for m in net.modules())
    finally:
        net.eval()
    assert out.shape == images.shape and torch.isfinite(out).all() and out.abs().max() > 0


def test_gradient_is_the_logit_gradient(net, images):
    x = images.clone().requires_grad_(True)
    t = torch.tensor([4, 0, 7])
    net(x)[torch.arange(3), t].sum().backward()
    got = attribute(net, images, target=t, method="gradient", scale="unit")
    assert _rel(got, x.grad) < 1e-5
    # the paper's scale: the same gradient times the projected unit's value
    logits = net(images).detach()[torch.arange(3), t]
    got = attribute(net, images, target=t, method="gradient")
    assert _rel(got, x.grad * logits.view(-1, 1, 1, 1)) < 1e-5


@pytest.mark.parametrize(
    "method,cls", [("deconvnet", "Deconvolution"), ("guided", "GuidedBackprop")]
)
def test_the_backward_rules_are_captums(net, images, method, cls):
    captum = pytest.importorskip("captum.attr")
    import copy

    from zfcore.deconv import out_of_place

    # the deconvnet passes contrast normalisation through (as the paper's does), Captum
    # differentiates it: compare on the same network without it
    net = copy.deepcopy(net)
    net.features.norm1 = torch.nn.Identity()
    net.features.norm2 = torch.nn.Identity()
    t = default_targets(net, images)
    with warnings.catch_warnings(), out_of_place(net):
        warnings.simplefilter("ignore")
        theirs = getattr(captum, cls)(net).attribute(images, target=t.tolist())
    ours = attribute(net, images, target=t, method=method, scale="unit")
    assert _rel(ours, theirs) < 1e-4


def test_occlusion_is_captums_in_every_channel(net, images):
    captum = pytest.importorskip("captum.attr")
    occ = captum.Occlusion(lambda x: torch.softmax(net(x), 1))
    t = torch.tensor([2, 5, 9])
    theirs = occ.attribute(
        images,
        sliding_window_shapes=(3, 16, 16),
        strides=(3, 8, 8),
        baselines=0.0,
        target=t,
        perturbations_per_eval=16,
    )
    ours = attribute(net, images, target=t, method="occlusion", window=16, stride=8, fill=0.0)
    assert theirs.abs().max() > 1e-4
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_fast_occlusion_through_the_one_call(net, images, monkeypatch):
    monkeypatch.setattr("zfcore.occlusion.low_precision_is_fast", lambda device: True)
    t = torch.tensor([2, 5, 9])
    exact = attribute(net, images, target=t, method="occlusion", window=16, stride=8)
    fast = attribute(net, images, target=t, method="occlusion", window=16, stride=8, mode="fast")
    forced = attribute(
        net, images, target=t, method="occlusion", window=16, stride=8, precision="bf16"
    )
    assert float((fast - exact).abs().max()) <= 0.01 and not torch.equal(fast, exact)
    assert float((forced - exact).abs().max()) <= 0.01


def test_a_hidden_layer_target_is_a_feature_map(net, images):
    with torch.no_grad(), models.capture_layers(net, ["layer3"]) as out:
        net(images)
    default = default_targets(net, images, "layer3")
    assert torch.equal(default, out["layer3"].detach().flatten(2).amax(2).argmax(1))
    got = attribute(net, images, method="gradient", layer=3, scale="unit")
    peak = out["layer3"].detach()[torch.arange(3), default].flatten(1).amax(1)
    x2 = images.clone().requires_grad_(True)
    with models.capture_layers(net, ["layer3"]) as o2:
        net(x2)
    # the start signal is the whole map divided by its maximum
    start = out["layer3"].detach()[torch.arange(3), default] / peak.view(-1, 1, 1)
    (o2["layer3"][torch.arange(3), default] * start).sum().backward()
    assert _rel(got, x2.grad) < 1e-5


def test_bad_arguments_are_named(net, images):
    with pytest.raises(AttributionError, match="unknown method 'lrp'"):
        attribute(net, images, method="lrp")
    with pytest.raises(AttributionError, match=r"images\[None\]"):
        attribute(net, images[0])
    with pytest.raises(AttributionError, match="one int per image"):
        attribute(net, images, target=[1, 2])
    with pytest.raises(AttributionError, match="window"):
        attribute(net, images, method="gradient", window=8)
    with pytest.raises(models.LayerError, match="layer9"):
        attribute(net, images, layer="layer9")
