"""The deconvnet (section 2.1, Fig. 1) against independent computations: the gradient form with
hooks, Captum, hand-worked unpooling with switches, a naive per-request loop, the receptive
field; its chunking and layouts against the plain computation, bit for bit."""

import functools
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zfcore import deconv, models
from zfcore.deconv import (
    DeconvError,
    DeconvTypeError,
    deconv_steps,
    layer_activations,
    out_of_place,
    project,
    requests,
    transposed_conv,
    unpool,
)
from zfcore.receptive import receptive_field


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _zf(seed=0, **kw):
    torch.manual_seed(seed)
    kw = {"width": 0.125, "image_size": 64, "fc_units": 64, "num_classes": 10, **kw}
    return models.zfnet(**kw).eval()


def _mixed_requests(n_images, shape):
    c, h, w = shape
    g = torch.Generator().manual_seed(1)
    n = 7
    img = torch.randint(0, n_images, (n,), generator=g)
    ch = torch.randint(0, c, (n,), generator=g)
    y = torch.randint(0, h, (n,), generator=g)
    x = torch.randint(0, w, (n,), generator=g)
    y[2] = x[2] = -1  # one whole-map request
    return requests(img, ch, y, x)


# --- hand-worked unpooling with switches -------------------------------------------------------


def test_unpool_1d_shared_switch_adds():
    # 1-D signal [1, 2, 9, 0, 3], pool 3 stride 2: both windows pick position 2 (the 9).
    x = torch.tensor([1.0, 2.0, 9.0, 0.0, 3.0]).view(1, 1, 1, 5)
    pooled, sw = F.max_pool2d(x, (1, 3), (1, 2), return_indices=True)
    assert pooled.flatten().tolist() == [9.0, 9.0] and sw.flatten().tolist() == [2, 2]
    out = unpool(torch.tensor([1.5, 2.5]).view(1, 1, 1, 2), sw, (1, 5))
    assert out.flatten().tolist() == [0.0, 0.0, 4.0, 0.0, 0.0]  # 1.5 + 2.5, nothing dropped
    # the pitfall the paper's overlapping pools expose: max_unpool2d keeps only one of them
    lossy = F.max_unpool2d(
        torch.tensor([1.5, 2.5]).view(1, 1, 1, 2), sw, (1, 3), (1, 2), output_size=(1, 5)
    )
    assert lossy.sum() < 4.0


def test_unpool_1d_distinct_switches():
    x = torch.tensor([1.0, 5.0, 2.0, 0.0, 3.0]).view(1, 1, 1, 5)
    _, sw = F.max_pool2d(x, (1, 3), (1, 2), return_indices=True)
    out = unpool(torch.tensor([7.0, -2.0]).view(1, 1, 1, 2), sw, (1, 5))
    assert out.flatten().tolist() == [0.0, 7.0, 0.0, 0.0, -2.0]


def test_unpool_2d_centre_shared_by_four_windows():
    # 5x5 map whose maximum sits at the centre: all four 3x3/2 windows switch to (2, 2).
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 10.0
    x[0, 0, 0, 0] = 1.0
    _, sw = F.max_pool2d(x, 3, 2, return_indices=True)
    assert sw.flatten().tolist() == [12, 12, 12, 12]
    out = unpool(torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2), sw, (5, 5))
    want = torch.zeros(5, 5)
    want[2, 2] = 10.0
    assert torch.equal(out[0, 0], want)


def test_unpool_2d_by_hand_with_ceil_mode():
    x = torch.tensor(
        [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 6.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 8.0]]
    ).view(1, 1, 4, 4)
    _, sw = F.max_pool2d(x, 3, 2, ceil_mode=True, return_indices=True)  # 2x2 windows
    # windows: rows/cols {0-2}x{0-2} -> 6 at (1,2); {0-2}x{2-3} -> 6 at (1,2);
    #          {2-3}x{0-2} -> 2 at (2,1); {2-3}x{2-3} -> 8 at (3,3)
    assert sw.flatten().tolist() == [6, 6, 9, 15]
    out = unpool(torch.tensor([[1.0, 1.0], [1.0, 1.0]]).view(1, 1, 2, 2), sw, (4, 4))
    want = torch.zeros(4, 4)
    want[1, 2], want[2, 1], want[3, 3] = 2.0, 1.0, 1.0
    assert torch.equal(out[0, 0], want)


def test_unpool_equals_max_pool_gradient():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 13, 13, requires_grad=True)
    y, sw = F.max_pool2d(x, 3, 2, ceil_mode=True, return_indices=True)
    g = torch.randn_like(y)
    (want,) = torch.autograd.grad(y, x, g)
    assert torch.equal(unpool(g, sw, (13, 13)), want)


# --- the two implementations agree -------------------------------------------------------------

MODELS = {
    "zf": lambda: _zf(),
    "krizhevsky": lambda: (
        torch.manual_seed(1),
        models.krizhevsky(width=0.125, image_size=96, fc_units=64, num_classes=10).eval(),
    )[1],
    "no_layers3_4": lambda: (
        torch.manual_seed(2),
        models.build(
            "no_layers3_4", width=0.125, image_size=64, fc_units=64, num_classes=10
        ).eval(),
    )[1],
}


@pytest.mark.parametrize("arch", list(MODELS))
@pytest.mark.parametrize("rule", ["deconvnet", "guided", "gradient"])
def test_explicit_equals_gradient_form(arch, rule):
    model = MODELS[arch]()
    size = model.input_size
    torch.manual_seed(3)
    x = torch.randn(3, 3, size, size)
    acts = layer_activations(model, x, list(model.layer_names))
    for layer, a in acts.items():
        if a.dim() == 4:
            req = _mixed_requests(3, a.shape[1:])
        else:
            req = requests([0, 2, 1], [0, 3, 5])
        ex = project(model, x, layer, req, rule=rule, method="explicit", batch_size=4)
        ag = project(model, x, layer, req, rule=rule, method="autograd", batch_size=3)
        assert _rel(ex.pixels, ag.pixels) < 1e-5, (arch, layer)
        assert torch.allclose(ex.activation, ag.activation)


@pytest.mark.slow
def test_alexnet_explicit_equals_gradient_form():
    torch.manual_seed(0)
    model = models.alexnet(pretrained=False).eval()
    x = torch.randn(2, 3, 224, 224)
    req = requests([0, 1, 1], [3, 100, 7], [6, 0, 12], [6, 12, 5])
    for rule in ("deconvnet", "guided"):
        ex = project(model, x, "layer5", req, rule=rule)
        ag = project(model, x, "layer5", req, rule=rule, method="autograd")
        assert _rel(ex.pixels, ag.pixels) < 1e-5


def test_gradient_rule_is_the_plain_input_gradient_times_activation():
    model = _zf()
    x = torch.randn(2, 3, 64, 64)
    xr = x[1:2].clone().requires_grad_(True)
    a = model.features[: model_index(model, "relu3")](xr)
    (g,) = torch.autograd.grad(a[0, 4, 2, 1], xr)
    p = project(model, x, "layer3", requests(1, 4, 2, 1), rule="gradient")
    assert _rel(p.pixels[0], g[0] * a[0, 4, 2, 1].detach()) < 1e-5


def model_index(model, name):
    return [n for n, _ in model.features.named_children()].index(name) + 1


# --- against Captum ----------------------------------------------------------------------------


def _captum(cls, net, x, flat):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = {"abs": False} if cls.__name__ == "Saliency" else {}
        return cls(net).attribute(x, target=flat.tolist(), **kw)


class _UpTo(nn.Module):
    """``model`` up to ``layer``, flattened: the network whose output unit Captum attributes."""

    def __init__(self, model, layer):
        super().__init__()
        self.model, self.layer = model, layer

    def forward(self, x):
        with models.capture_layers(self.model, [self.layer]) as out:
            self.model(x)
        return out[self.layer].flatten(1)


def _captum_agreement(model, x, layer, req, **kw):
    """``project`` (by ``kw``) of each rule against Captum's ``Deconvolution`` / ``GuidedBackprop``
    / ``Saliency`` of the same unit times its activation: ``{rule: max relative difference}``.
    Captum runs with ReLUs switched out of place; ``project`` gets ``model`` as given."""
    from captum.attr import Deconvolution, GuidedBackprop, Saliency

    up_to = _UpTo(model.eval(), layer)
    with torch.no_grad():
        a = up_to(x)
    shape = layer_activations(model, x[:1], [layer])[layer].shape[1:]
    flat = req.channel
    if len(shape) == 3:
        flat = req.channel * shape[1] * shape[2] + req.y * shape[2] + req.x
    unit = a[req.image, flat]
    assert (unit > 0).any(), "no request is on an active unit: the comparison would be 0 == 0"
    out = {}
    for rule, cls in [
        ("deconvnet", Deconvolution),
        ("guided", GuidedBackprop),
        ("gradient", Saliency),
    ]:
        with out_of_place(model):
            theirs = _captum(cls, up_to, x[req.image], flat) * unit.view(-1, 1, 1, 1)
        out[rule] = _rel(project(model, x, layer, req, rule=rule, **kw).pixels, theirs)
    return out


def _active_requests(model, x, layer, n=3):
    """``n`` requests on the strongest activations of ``layer`` (different images and maps)."""
    a = layer_activations(model, x, [layer])[layer]
    img = torch.arange(n) % len(x)
    if a.dim() == 2:
        return requests(img, a[img].argmax(1))
    c, h, w = a.shape[1:]
    ys, xs = [0, h // 2, h - 1][:n], [0, w // 2, w - 1][:n]
    ch = [int(a[i, :, y, xx].argmax()) for i, y, xx in zip(img.tolist(), ys, xs)]
    return requests(img, ch, ys, xs)


@pytest.mark.parametrize(
    "which", ["zf_without_lrn", pytest.param("alexnet", marks=pytest.mark.slow)]
)
def test_matches_captum_times_activation(which):
    torch.manual_seed(0)
    if which == "alexnet":
        model = models.alexnet(pretrained=False).eval()
        size = 224
    else:
        model = _zf()
        model.features.norm1 = nn.Identity()
        model.features.norm2 = nn.Identity()
        size = 64
    x = torch.randn(3, 3, size, size)
    c, h, w = layer_activations(model, x[:1], ["layer5"])["layer5"].shape[1:]
    # hand-picked units (dead ones among them) and the strongest ones (AlexNet's random layer 5
    # is mostly dead: hand-picked units alone would compare zeros)
    picked = requests([0, 1, 2, 2], [0, 5, c - 1, 9], [0, h // 2, h - 1, 1], [0, w // 2, 1, w - 1])
    strong = _active_requests(model, x, "layer5")
    req = requests(
        *(torch.cat([a, b]) for a, b in zip(picked.to_dict().values(), strong.to_dict().values()))
    )
    for rule, rel in _captum_agreement(model, x, "layer5", req).items():
        assert rel < 1e-5, rule


# --- batching against a naive loop ---------------------------------------------------------------


def test_batched_equals_one_request_at_a_time():
    model = _zf()
    x = torch.randn(4, 3, 64, 64)
    req = _mixed_requests(4, layer_activations(model, x[:1], ["layer4"])["layer4"].shape[1:])
    batched = project(model, x, "layer4", req, batch_size=5)
    for r in range(len(req)):
        one = project(
            model,
            x[req.image[r]][None],
            "layer4",
            requests(0, req.channel[r], req.y[r], req.x[r])
            if req.y[r] >= 0
            else requests(0, req.channel[r]),
        )
        assert torch.allclose(batched.pixels[r], one.pixels[0], rtol=1e-5, atol=1e-9)
        assert float(batched.activation[r]) == pytest.approx(float(one.activation[0]))


@pytest.mark.parametrize("rule", ["deconvnet", "guided", "gradient"])
@pytest.mark.parametrize("method", ["explicit", "autograd"])
def test_chunking_changes_no_bit(rule, method):
    """Chunks of any size (the default deconv.CHUNK_SIZE, single requests, chunks with one image
    or a few rows: below deconv.MIN_BATCH) and all requests at once give the same bits, requests
    sharing an image and whole maps included; so does projecting each request on its own."""
    model = _zf()
    x = torch.randn(6, 3, 64, 64)
    g = torch.Generator().manual_seed(4)
    n = 2 * deconv.CHUNK_SIZE + 5
    img = torch.randint(0, 6, (n,), generator=g)
    img[:9] = 2  # a chunk's worth of requests on one image
    for layer in ("layer2", "layer5", "logits"):
        c, *hw = layer_activations(model, x[:1], [layer])[layer].shape[1:]
        ch = torch.randint(0, c, (n,), generator=g)
        if hw:
            y = torch.randint(0, hw[0], (n,), generator=g)
            y[::4] = -1  # whole maps among them
            xx = torch.where(y < 0, -1, torch.randint(0, hw[1], (n,), generator=g))
            req = requests(img, ch, y, xx)
        else:
            req = requests(img, ch)
        whole = project(model, x, layer, req, rule=rule, method=method, batch_size=n)
        for bs in (None, 1, 3, 7):
            chunked = project(model, x, layer, req, rule=rule, method=method, batch_size=bs)
            assert torch.equal(chunked.pixels, whole.pixels), (layer, bs)
            assert torch.equal(chunked.activation, whole.activation), (layer, bs)
        for r in (0, 9, n - 1):
            one = requests(0, req.channel[r], req.y[r], req.x[r])
            alone = project(model, x[req.image[r]][None], layer, one, rule=rule, method=method)
            assert torch.equal(alone.pixels[0], whole.pixels[r]), (layer, r)


@pytest.mark.parametrize(
    "kernel,stride,padding,side",
    [(7, 2, 1, 64), (7, 2, 1, 63), (11, 4, 2, 96), (4, 2, 0, 16), (5, 3, 2, 20), (3, 2, 1, 9)],
)
def test_transposed_conv_equals_conv_transpose2d(kernel, stride, padding, side):
    """The polyphase form of the first layer's transposed filtering against PyTorch's
    conv_transpose2d (and the autograd input gradient of the convolution), odd sizes and output
    padding beyond the full transposed output included."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, kernel, stride, padding)
    assert conv.in_channels <= deconv.POLYPHASE_MAX_CHANNELS  # the polyphase path
    x = torch.randn(2, 3, side, side, requires_grad=True)
    out = conv(x)
    g = torch.randn_like(out)
    (want,) = torch.autograd.grad(out, x, g)
    with torch.no_grad():
        got = transposed_conv(g, conv, (side, side))
        cl = transposed_conv(g.contiguous(memory_format=torch.channels_last), conv, (side, side))
    assert got.shape == want.shape
    assert _rel(got, want) < 1e-5 and _rel(cl, want) < 1e-5


def test_transposed_conv_of_wide_and_grouped_layers_is_conv_transpose2d():
    torch.manual_seed(0)
    for conv in (nn.Conv2d(16, 8, 5, 2), nn.Conv2d(8, 8, 3, 2, 1, groups=2)):
        g = torch.randn(2, 8, 6, 6)
        want = F.conv_transpose2d(g, conv.weight, None, conv.stride, conv.padding, 1, conv.groups)
        assert torch.equal(transposed_conv(g, conv, want.shape[-2:]), want)


def test_unpool_channels_last_equals_contiguous():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 13, 13)
    _, sw = F.max_pool2d(x, 3, 2, ceil_mode=True, return_indices=True)
    _, sw_cl = F.max_pool2d(
        x.contiguous(memory_format=torch.channels_last), 3, 2, ceil_mode=True, return_indices=True
    )
    assert torch.equal(sw, sw_cl) and not sw_cl.is_contiguous()
    g = torch.randn(sw.shape)
    want = unpool(g, sw, (13, 13))
    assert torch.equal(unpool(g, sw_cl, (13, 13)), want)
    assert torch.equal(
        unpool(g.contiguous(memory_format=torch.channels_last), sw_cl, (13, 13)), want
    )


def test_walk_forward_is_the_models_own_bit_for_bit():
    """Pooling in another memory layout changes no bit of the walk's forward pass: the kept
    activation of every layer is the model's own (what layer_activations gives)."""
    model = _zf()
    x = torch.randn(3, 3, 64, 64)
    acts = layer_activations(model, x, list(model.layer_names))
    for layer, a in acts.items():
        p = project(model, x, layer, requests([0, 1, 2], [0, 1, 2]))  # units, or whole maps
        want = a[[0, 1, 2], [0, 1, 2]]
        if a.dim() == 4:
            want = want.flatten(1).amax(1)
        assert torch.equal(p.activation, want), layer


def test_whole_map_is_the_sum_of_its_activations_for_the_linear_rule():
    # The gradient rule is linear in the start signal: the whole-map projection is the sum of
    # the projections of each of its activations.
    model = _zf()
    x = torch.randn(1, 3, 64, 64)
    a = layer_activations(model, x, ["layer2"])["layer2"]
    h, w = a.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    each = project(model, x, "layer2", requests(0, 3, ys.flatten(), xs.flatten()), rule="gradient")
    whole = project(model, x, "layer2", requests(0, 3), rule="gradient")
    assert _rel(whole.pixels[0], each.pixels.sum(0)) < 1e-5
    assert float(whole.activation[0]) == pytest.approx(float(a[0, 3].max()))


def test_start_signal_keeps_only_the_unit():
    model = _zf()
    x = torch.randn(1, 3, 64, 64)
    a = layer_activations(model, x, ["layer3"])["layer3"][0]
    c, y, xx = (a == a.max()).nonzero()[0].tolist()
    steps = deconv_steps(model, x, "layer3", c, y, xx)
    start = steps[0].signal
    assert start[c, y, xx] == a[c, y, xx] and start.abs().sum() == a[c, y, xx]
    assert steps[-1].signal.shape == (3, 64, 64)
    p = project(model, x, "layer3", requests(0, c, y, xx))
    assert torch.allclose(steps[-1].signal, p.pixels[0])
    ops = [s.op for s in steps]
    assert ops[0] == "start" and ops.count("unpool") == 2 and ops.count("pass") == 2
    unpool_step = next(s for s in steps if s.op == "unpool")
    assert (
        unpool_step.switches is not None and unpool_step.forward.shape == unpool_step.signal.shape
    )


# --- the projection stays inside the receptive field ---------------------------------------------


@pytest.mark.parametrize("rule", ["deconvnet", "guided", "gradient"])
def test_projection_support_inside_receptive_field(rule):
    model = _zf(image_size=112)
    x = torch.randn(2, 3, 112, 112)
    for layer in ("layer1", "layer2", "layer3", "layer5"):
        rf = receptive_field(model, layer)
        a = layer_activations(model, x, [layer])[layer]
        h, w = a.shape[-2:]
        pos = [(0, 0), (h // 2, w // 2), (h - 1, w - 1)]
        # strongest map at each position so the projection is not trivially zero
        chans = [int(a[0, :, y, xx].argmax()) for y, xx in pos]
        req = requests(0, chans, [p[0] for p in pos], [p[1] for p in pos])
        proj = project(model, x, layer, req, rule=rule)
        for r, (y, xx) in enumerate(pos):
            x0, y0, x1, y1 = rf.box(y, xx, 112)
            nz = proj.pixels[r].abs().sum(0) > 0
            inside = torch.zeros_like(nz)
            inside[y0:y1, x0:x1] = True
            assert not (nz & ~inside).any(), (layer, y, xx)


# --- API behaviour -----------------------------------------------------------------------------


def test_bad_input_gets_clear_errors():
    model = _zf()
    x = torch.randn(2, 3, 64, 64)
    with pytest.raises(DeconvError, match="rule"):
        project(model, x, "layer2", requests(0, 0), rule="lrp")
    with pytest.raises(DeconvError, match="feature maps"):
        project(model, x, "layer2", requests(0, 999))
    with pytest.raises(DeconvError, match="outside"):
        project(model, x, "layer2", requests(0, 0, 99, 0))
    with pytest.raises(DeconvError, match="out of range"):
        project(model, x, "layer2", requests(5, 0))
    with pytest.raises(DeconvError, match="fully connected"):
        project(model, x, "layer6", requests(0, 0, 1, 1))
    with pytest.raises(DeconvError, match=r"\(N, C, H, W\)"):
        project(model, x[0], "layer2", requests(0, 0))
    with pytest.raises(models.LayerError, match="layer9"):
        project(model, x, "layer9", requests(0, 0))
    with pytest.raises(DeconvError, match="both"):
        requests(0, 0, y=1)
    with pytest.raises(DeconvError, match="entries"):
        requests([0, 1], [0, 1, 2])
    with pytest.raises(DeconvTypeError, match=r"torch\.nn\.Module") as err:
        project("model", x, "layer2", requests(0, 0))
    assert isinstance(err.value, TypeError)
    with pytest.raises(DeconvError, match="batch_size"):
        project(model, x, "layer2", requests(0, 0), batch_size=0)


def test_tuple_requests_and_train_mode_is_restored():
    model = _zf()
    model.train()
    x = torch.randn(2, 3, 64, 64)
    a = project(model, x, "layer3", [(0, 1, 2, 2), (1, 0, 1, 1)])
    b = project(model, x, "layer3", requests([0, 1], [1, 0], [2, 1], [2, 1]))
    assert torch.equal(a.pixels, b.pixels)
    assert model.training and model.classifier.drop6.training


@pytest.mark.parametrize("rule", ["deconvnet", "guided", "gradient"])
def test_unit_scale_agrees_across_methods_and_equals_activation_scale_over_value(rule):
    model = _zf()
    x = torch.randn(2, 3, 64, 64)
    a = layer_activations(model, x, ["layer3"])["layer3"]
    dead = (a[0] == 0).nonzero()[0].tolist()  # an inactive unit: the rules differ here
    live = (a[1] == a[1].max()).nonzero()[0].tolist()
    req = requests([0, 1, 1], [dead[0], live[0], 2], [dead[1], live[1], -1], [dead[2], live[2], -1])
    ex = project(model, x, "layer3", req, rule=rule, scale="unit")
    ag = project(model, x, "layer3", req, rule=rule, scale="unit", method="autograd")
    assert _rel(ex.pixels, ag.pixels) < 1e-5
    act = project(model, x, "layer3", req, rule=rule)
    assert _rel(ex.pixels[1:] * act.activation[1:, None, None, None], act.pixels[1:]) < 1e-5
    if rule == "gradient":
        assert ex.pixels[0].abs().max() == 0  # the gradient of an inactive unit is zero
    logit = project(model, x, "logits", requests([0, 1], [3, 3]), rule=rule, scale="unit")
    assert (
        _rel(
            logit.pixels,
            project(
                model,
                x,
                "logits",
                requests([0, 1], [3, 3]),
                rule=rule,
                scale="unit",
                method="autograd",
            ).pixels,
        )
        < 1e-5
    )


def test_overwrite_mode_loses_signal_only_where_switches_are_shared():
    model = _zf()
    img = torch.randn(1, 3, 64, 64)
    add = deconv_steps(model, img, "layer2", 0)
    over = deconv_steps(model, img, "layer2", 0, unpool_mode="overwrite")
    sw = next(s for s in add if s.op == "unpool").switches.flatten(1)
    shared = any(len(torch.unique(row)) < len(row) for row in sw)
    assert shared  # 3x3/2 pools on a random image: some windows share their maximum
    assert not torch.allclose(add[-1].signal, over[-1].signal)
    # a layer without pooling below it: nothing to overwrite, the two modes agree bit for bit
    one = deconv_steps(model, img, "layer1", 0)
    over1 = deconv_steps(model, img, "layer1", 0, unpool_mode="overwrite")
    assert torch.equal(one[-1].signal, over1[-1].signal)
    with pytest.raises(DeconvError, match="unpool_mode"):
        deconv_steps(model, img, "layer2", 0, unpool_mode="max")


# --- torchvision classifiers as shipped: in-place ReLUs, BatchNorm, residual blocks ------------


def _as_shipped(model):
    for m in model.modules():  # zfcore's wrappers switch them off; torchvision ships them on
        if isinstance(m, nn.ReLU):
            m.inplace = True
    return model


@functools.lru_cache(maxsize=None)
def _torchvision(arch):
    """A stock torchvision classifier with random weights (built once: VGG16's 138 M parameters
    take seconds to initialise) and the input side its tests use."""
    import torchvision

    torch.manual_seed(0)
    if arch == "alexnet":
        return _as_shipped(models.alexnet(pretrained=False)), 112
    if arch == "vgg16":
        return _as_shipped(models.vgg16(pretrained=False)), 64
    if arch == "vgg16_bn":
        m = torchvision.models.vgg16_bn(weights=None)
        m.layer_names = {
            "layer1": "features.5",
            "layer2": "features.12",
            "layer3": "features.22",
            "layer4": "features.32",
            "layer5": "features.42",
            "logits": "classifier.6",
        }
        return m, 64
    m = torchvision.models.resnet18(weights=None)
    m.layer_names = {
        "layer1": "relu",
        "layer2": "layer1",
        "layer3": "layer2",
        "layer4": "layer3",
        "layer5": "layer4",
        "logits": "fc",
    }
    return m, 112


_VGG = pytest.mark.slow  # VGG16 has 138 M parameters: seconds per case
TORCHVISION_CASES = [
    ("alexnet", "layer2", "autograd"),
    ("alexnet", "layer5", "autograd"),
    ("alexnet", "layer5", "auto"),
    pytest.param("vgg16", "layer3", "autograd", marks=_VGG),
    pytest.param("vgg16", "layer5", "auto", marks=_VGG),
    pytest.param("vgg16_bn", "layer5", "auto", marks=_VGG),
    ("resnet18", "layer1", "autograd"),
    ("resnet18", "layer4", "auto"),
    ("resnet18", "logits", "auto"),
]


@pytest.mark.parametrize("arch,layer,method", TORCHVISION_CASES)
def test_torchvision_models_match_captum(arch, layer, method):
    """Stock torchvision classifiers (random weights, in-place ReLUs as shipped, BatchNorm,
    residual blocks) against Captum, and the model is left as it was."""
    model, size = _torchvision(arch)
    model.eval()
    inplace = [m.inplace for m in model.modules() if isinstance(m, nn.ReLU)]
    x = torch.randn(2, 3, size, size)
    req = _active_requests(model, x, layer)
    for rule, rel in _captum_agreement(model, x, layer, req, method=method).items():
        assert rel < 1e-5, rule
    assert [m.inplace for m in model.modules() if isinstance(m, nn.ReLU)] == inplace


def test_batchnorm_models_refuse_explicit_and_auto_takes_autograd():
    model, size = _torchvision("resnet18")
    x = torch.randn(1, 3, size, size)
    req = _active_requests(model, x, "layer3", n=1)
    with pytest.raises(DeconvError, match=r"bn1 \(BatchNorm2d\).*method='autograd'"):
        project(model, x, "layer3", req, method="explicit")
    auto = project(model, x, "layer3", req)
    assert torch.equal(auto.pixels, project(model, x, "layer3", req, method="autograd").pixels)
    assert auto.pixels.abs().max() > 0


def test_module_called_twice_is_refused():
    # A BasicBlock applies its one `relu` twice: autograd would start from the first call while
    # capture_layers (mining, features) reads the second. The fix the error names works.
    import torchvision

    model, size = torchvision.models.resnet18(weights=None).eval(), 112
    model.layer_names = {"layer3": "layer2.1.relu"}
    x = torch.randn(1, 3, size, size)
    with pytest.raises(DeconvError, match=r"calls 2 times.*'layer2\.1'"):
        project(model, x, "layer3", requests(0, 0, 1, 1))
    model.layer_names["layer3"] = "layer2.1"
    assert (
        project(model, x, "layer3", _active_requests(model, x, "layer3", n=1)).pixels.abs().max()
        > 0
    )


class _Residual(nn.Module):
    """Supported leaf modules only, but a forward that the registration order does not describe."""

    def __init__(self):
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()
        self.layer_names = {"layer1": "relu1", "layer2": "relu2"}

    def forward(self, x):
        r = self.relu1(self.conv1(x))
        return self.relu2(self.conv2(r) + r)


def test_explicit_walk_refuses_a_forward_it_does_not_reproduce():
    torch.manual_seed(0)
    model = _Residual()
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(DeconvError, match="registration order.*method='autograd'"):
        project(model, x, "layer2", requests(0, 1, 4, 4), method="explicit")
    a = layer_activations(model, x, ["layer2"])["layer2"]
    c = int(a[0, :, 4, 4].argmax())
    auto = project(model, x, "layer2", requests(0, c, 4, 4), rule="gradient")
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xr)[0, c, 4, 4], xr)  # the plain input gradient
    assert _rel(auto.pixels[0], g[0] * a[0, c, 4, 4]) < 1e-5
    # the straight part of the same model is walked explicitly, as before
    assert torch.equal(
        project(model, x, "layer1", requests(0, 0)).pixels,
        project(model, x, "layer1", requests(0, 0), method="explicit").pixels,
    )
