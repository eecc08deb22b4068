"""Receptive fields against hand-worked values and against the empirical support of gradients."""

import copy

import pytest
import torch
from torch import nn

from zfcore import models
from zfcore.receptive import (
    ReceptiveField,
    ReceptiveFieldError,
    affected_positions,
    crop_patch,
    crop_patches,
    receptive_field,
    receptive_fields,
)


def test_zfnet_fields_by_hand():
    # Fig. 3: conv1 7x7/2 pad 1; pool 3/2; conv2 5x5/2; pool 3/2; conv3-5 3x3 pad 1.
    m = models.zfnet(width=0.125, image_size=224, fc_units=64)
    want = {
        "layer1": (7, 2, -1),
        "layer2": (27, 8, -1),
        "layer3": (75, 16, -17),
        "layer4": (107, 16, -33),
        "layer5": (139, 16, -49),
    }
    for k, (size, stride, offset) in want.items():
        assert receptive_field(m, k) == ReceptiveField(size, stride, offset), k
    assert receptive_field(m, 5) == receptive_field(m, "layer5")
    assert receptive_field(m, "layer6").is_global and receptive_field(m, "logits").is_global


@pytest.mark.slow
def test_alexnet_and_vgg_fields_by_hand():
    a = models.alexnet(pretrained=False)
    assert receptive_field(a, "layer1") == ReceptiveField(11, 4, -2)
    assert receptive_field(a, "layer5") == ReceptiveField(163, 16, -66)  # the known 163 px
    v = models.vgg16(pretrained=False)
    assert receptive_field(v, "layer1") == ReceptiveField(5, 1, -2)
    assert receptive_field(v, "layer5") == ReceptiveField(196, 16, -90)  # conv5_3: 196 px
    assert set(receptive_fields(v)) == set(v.layer_names)


def test_krizhevsky_and_table3_variants_have_fields():
    k = models.krizhevsky(width=0.125, image_size=224, fc_units=64)
    assert receptive_field(k, "layer1") == ReceptiveField(11, 4, -2)
    for variant in models.TABLE3_VARIANTS:
        m = models.build(variant, width=0.0625, image_size=96, fc_units=64, num_classes=5)
        fields = receptive_fields(m)
        assert set(fields) == set(m.layer_names)
    m = models.build("no_layers3_4", width=0.0625, image_size=96, fc_units=64)
    with pytest.raises(models.LayerError, match="layer3"):
        receptive_field(m, "layer3")


def _linearised(model: nn.Module) -> nn.Module:
    """A copy whose unit gradients have the full analytic support: positive weights, no ReLU or
    LRN, max pools replaced by average pools of the same geometry."""
    m = copy.deepcopy(model).eval()

    def swap(parent):
        for name, child in parent.named_children():
            if isinstance(child, (nn.ReLU, nn.LocalResponseNorm, nn.Dropout)):
                setattr(parent, name, nn.Identity())
            elif isinstance(child, nn.MaxPool2d):
                setattr(
                    parent,
                    name,
                    nn.AvgPool2d(
                        child.kernel_size, child.stride, child.padding, ceil_mode=child.ceil_mode
                    ),
                )
            else:
                swap(child)

    swap(m)
    with torch.no_grad():
        for p in m.parameters():
            p.abs_().add_(1e-3)
    m.layer_names = model.layer_names
    return m


def _layer_output(model, x, layer):
    out = {}
    mod = model.get_submodule(model.layer_names[layer])
    h = mod.register_forward_hook(lambda m, i, o: out.setdefault("a", o))
    try:
        model.features(x)
    finally:
        h.remove()
    return out["a"]


CASES = [
    ("zf_tiny", lambda: models.zfnet(width=0.0625, image_size=64, fc_units=32), 64),
    ("zf_224", lambda: models.zfnet(width=0.03125, image_size=224, fc_units=32), 224),
    ("krizhevsky", lambda: models.krizhevsky(width=0.0625, image_size=160, fc_units=32), 160),
    ("alexnet", lambda: models.alexnet(pretrained=False), 200),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,make,size", CASES, ids=[c[0] for c in CASES])
def test_field_equals_gradient_support(name, make, size):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = _linearised(make())
    x = torch.rand(1, 3, size, size, requires_grad=True)
    for layer in ("layer1", "layer2", "layer3", "layer5"):
        if layer not in model.layer_names:
            continue
        rf = receptive_field(model, layer)
        a = _layer_output(model, x, layer)
        h, w = a.shape[-2:]
        for y, xx in [(h // 2, w // 2), (0, 0), (h - 1, w - 1)]:
            (g,) = torch.autograd.grad(a[0, 0, y, xx], x, retain_graph=True)
            support = g[0].abs().sum(0) > 0
            x0, y0, x1, y1 = rf.box(y, xx, size)
            want = torch.zeros_like(support)
            want[y0:y1, x0:x1] = True
            # every pixel that matters is inside the field, and the field is no larger than it
            # must be (each of its pixels matters for the linearised, positive network)
            assert torch.equal(support, want), (name, layer, y, xx, rf)


@pytest.mark.slow
def test_vgg16_layer5_centre_field_is_tight():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    v = models.vgg16(pretrained=False)
    model = _linearised(v)
    rf = receptive_field(model, "layer3")
    x = torch.rand(1, 3, 96, 96, requires_grad=True)
    a = _layer_output(model, x, "layer3")
    y = a.shape[-1] // 2
    (g,) = torch.autograd.grad(a[0, 0, y, y], x)
    ys, xs = torch.nonzero(g[0].abs().sum(0) > 0, as_tuple=True)
    x0, y0, x1, y1 = rf.box(y, y, 96)
    assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == (y0, y1, x0, x1)
    assert y1 - y0 == rf.size == 40  # conv3_3 of VGG16: 40 px


def test_affected_positions_matches_brute_force():
    rf = ReceptiveField(27, 8, -1)
    out = 12
    for box in [(0, 0, 5, 5), (30, 40, 45, 41), (90, 90, 100, 100), (10, 3, 11, 4)]:
        y0, y1, x0, x1 = affected_positions(rf, box, out)
        want_y = [
            i
            for i in range(out)
            if max(box[1], rf.offset + i * rf.stride)
            < min(box[3], rf.offset + i * rf.stride + rf.size)
        ]
        want_x = [
            i
            for i in range(out)
            if max(box[0], rf.offset + i * rf.stride)
            < min(box[2], rf.offset + i * rf.stride + rf.size)
        ]
        assert list(range(y0, y1)) == want_y
        assert list(range(x0, x1)) == want_x
    with pytest.raises(ReceptiveFieldError, match="empty box"):
        affected_positions(rf, (5, 5, 5, 9), out)


def test_affected_positions_is_the_cone_that_changes():
    torch.manual_seed(0)
    model = models.zfnet(width=0.0625, image_size=64, fc_units=32).eval()
    x = torch.rand(1, 3, 64, 64)
    box = (20, 30, 28, 38)
    x2 = x.clone()
    x2[..., box[1] : box[3], box[0] : box[2]] = 0.5
    with torch.no_grad():
        for layer in ("layer1", "layer2", "layer3"):
            a, b = _layer_output(model, x, layer), _layer_output(model, x2, layer)
            y0, y1, x0, x1 = affected_positions(receptive_field(model, layer), box, a.shape[-2:])
            outside = torch.ones(a.shape[-2:], dtype=torch.bool)
            outside[y0:y1, x0:x1] = False
            assert torch.equal(a[..., outside], b[..., outside]), layer


def test_crop_patch_pads_outside_the_image():
    img = torch.arange(2 * 10 * 10, dtype=torch.float32).view(2, 10, 10)
    rf = ReceptiveField(5, 2, -1)
    p = crop_patch(img, rf, 0, 0, fill=-1.0)
    assert p.shape == (2, 5, 5)
    assert (p[:, 0, :] == -1).all() and (p[:, :, 0] == -1).all()
    assert torch.equal(p[:, 1:, 1:], img[:, 0:4, 0:4])
    p = crop_patch(img, rf, 2, 3)
    assert torch.equal(p, img[:, 3:8, 5:10])
    ps = crop_patches(img[None].repeat(3, 1, 1, 1), rf, [0, 2, 1], [0, 3, 1])
    assert ps.shape == (3, 2, 5, 5) and torch.equal(ps[1], p)
    assert rf.box(0, 0, 10) == (0, 0, 4, 4)
    with pytest.raises(ReceptiveFieldError, match="outside"):
        rf.box(20, 0, 10)
    with pytest.raises(ReceptiveFieldError, match="one"):
        crop_patch(img[None], rf, 0, 0)


def test_input_problem_matches_what_torch_can_run():
    from zfcore.receptive import input_problem

    torch.set_num_threads(1)
    m = models.zfnet(width=0.0625, image_size=64, fc_units=32).eval()
    convs = m.features
    for size in range(20, 72, 3):
        x = torch.zeros(1, 3, size, size)
        for layer in ("layer2", "layer5"):
            idx = [n for n, _ in convs.named_children()].index(m.layer_names[layer].split(".")[1])
            try:
                convs[: idx + 1](x)
                ran = True
            except RuntimeError:
                ran = False
            assert (input_problem(m, layer, x) is None) == ran, (size, layer)
    msg = input_problem(m, "layer5", torch.zeros(1, 3, 16, 16))
    assert "16x16" in msg and "at least" in msg
    assert "channel" in input_problem(m, "layer1", torch.zeros(1, 1, 64, 64))
    assert "64x64" in input_problem(m, "layer6", torch.zeros(1, 3, 96, 96))
    assert input_problem(m, "layer6", torch.zeros(1, 3, 64, 64)) is None
    a = models.alexnet(pretrained=False)  # adaptive pool: any large enough size
    assert input_problem(a, "layer7", torch.zeros(1, 3, 256, 256)) is None
