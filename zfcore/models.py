"""The paper's networks, with every layer addressable as ``layer1`` ... ``layer7``.

* :func:`zfnet` is exactly Fig. 3 of Zeiler & Fergus (2014): 224x224x3 input; layer 1: 96 filters
  7x7 stride 2, ReLU, 3x3 max pool stride 2, local contrast normalisation; layer 2: 256 filters 5x5
  stride 2, ReLU, pool, normalisation; layers 3, 4: 384 filters 3x3; layer 5: 256 filters 3x3, pool
  to 6x6x256; layers 6, 7: 4096 units, dropout 0.5; a softmax over the classes. Spatial sizes
  224 > 110 > 55 > 26 > 13 > 13 > 13 > 6.
* :func:`krizhevsky` is the single-column layout of Krizhevsky et al. (2012) that section 4.1 and
  Fig. 6 compare against: the first layer is 96 filters 11x11 stride 4.
* Both scale by ``width`` and ``image_size`` for the ``tiny`` and ``mini`` profiles, keeping the
  layer structure, and take Table 3's changes (removed layers, resized layers) as parameters:
  :data:`TABLE3_VARIANTS` names them.
* :func:`alexnet`, :func:`vgg16` and :func:`resnet18` wrap torchvision's pretrained networks behind
  the same naming.
* ``zfnet(weights="imagenet")`` is Fig. 3 itself with ImageNet weights (pytorchcv's ``zfnet``;
  ``variant="wide"``: Table 3's wider layers 3-5, pytorchcv's ``zfnetb``) and
  :func:`from_pytorchcv` converts a pytorchcv model object; the weight files themselves (where they
  live, how they are fetched) are :mod:`zfcore.pretrained`'s.

Layer addressing: every supported model carries ``model.layer_names``, a dict from ``"layer1"``
... ``"layer7"`` and ``"logits"`` to the qualified name of the module whose output is that layer's
rectified feature map (the ReLU after the convolution or fully connected layer). The paper's
deconvnet and top-9 mining look at exactly these maps. :func:`get_layer` returns the module.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from .errors import ZFCoreError
from .pretrained import (
    convert_pytorchcv_state,
    imagenet_state,
    pytorchcv_modules,
    torchvision_state,
    variant_name,
)

__all__ = [
    "ZFConfig",
    "ZFNet",
    "zfnet",
    "krizhevsky",
    "build",
    "TABLE3_VARIANTS",
    "alexnet",
    "vgg16",
    "resnet18",
    "get_layer",
    "eval_mode",
    "in_eval_mode",
    "layer_key",
    "layer_keys",
    "hidden_layers",
    "layer_names",
    "leaf_modules",
    "capture_layers",
    "forward_layers",
    "conv_layers",
    "paper_init_",
    "he_init_",
    "clip_filters_",
    "filter_rms",
    "ModelError",
    "ModelTypeError",
    "LayerError",
    "load_model_state",
    "model_fingerprint",
    "from_pytorchcv",
    "model_device",
    "to_device",
    "clip_filters_count_",
]


class ModelError(ZFCoreError, ValueError):
    """A network that cannot be built or loaded as asked (an unknown variant, a size too small for
    the layout, a state dict that does not fit); the message says what to change."""


class ModelTypeError(ModelError, TypeError):
    """An argument of the wrong type where a model, a state dict or a module was expected."""


class LayerError(ZFCoreError, KeyError, TypeError):
    """An unknown layer for this model, or a layer argument that is not a name or a number: the
    one error every module raises for a bad layer (a ``KeyError`` and a ``TypeError`` as well)."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


@dataclass(frozen=True)
class ZFConfig:
    """The layout of a ZF-style network (Fig. 3) with the knobs of Table 3 and Fig. 6.

    ``conv_channels`` and ``fc_units`` are the paper's sizes before ``width`` is applied.
    ``removed`` lists layers taken out (3, 4, 6 or 7, as in Table 3).
    ``layout="pytorchcv"`` orders layers 1-2 as conv, ReLU, normalisation, pool (Fig. 3 pools,
    then normalises) and drops out after the ReLUs of layers 6-7 (not before fc6/fc7): pytorchcv's
    ``zfnet``, whose ImageNet weights :mod:`zfcore.pretrained` loads. Same parameters and sizes.
    """

    first_layer: str = "zf"  # "zf" (7x7/2) or "krizhevsky" (11x11/4)
    conv_channels: tuple[int, ...] = (96, 256, 384, 384, 256)
    fc_units: tuple[int, int] = (4096, 4096)
    removed: tuple[int, ...] = ()
    width: float = 1.0
    image_size: int = 224
    in_channels: int = 3
    num_classes: int = 1000
    dropout: float = 0.5
    layout: str = "paper"  # "paper" (Fig. 3) or "pytorchcv" (see above)

    def scaled(self, n: int) -> int:
        return max(1, int(round(n * self.width)))


# Table 3 of the paper, as changes to ZFConfig. "zf" is the unchanged Fig. 3 model.
TABLE3_VARIANTS: dict[str, dict] = {
    "zf": {},
    "no_layer7": {"removed": (7,)},
    "no_layers6_7": {"removed": (6, 7)},
    "no_layers3_4": {"removed": (3, 4)},
    "no_layers3_4_6_7": {"removed": (3, 4, 6, 7)},
    "fc6_7_2048": {"fc_units": (2048, 2048)},
    "fc6_7_8192": {"fc_units": (8192, 8192)},
    "conv3_4_5_wide": {"conv_channels": (96, 256, 512, 1024, 512)},
    "conv3_4_5_wide_fc_8192": {
        "conv_channels": (96, 256, 512, 1024, 512),
        "fc_units": (8192, 8192),
    },
}


def _pool_out(n: int, k: int = 3, s: int = 2) -> int:
    return math.ceil((n - k) / s) + 1


class ZFNet(nn.Module):
    """A ZF-style convnet (Fig. 3) built from a :class:`ZFConfig`.

    ``features`` holds ``conv1, relu1, pool1, norm1, conv2, relu2, pool2, norm2, conv3, relu3,
    conv4, relu4, conv5, relu5, pool5`` (minus removed layers), ``classifier`` holds ``drop6, fc6,
    relu6, drop7, fc7, relu7, fc8``. Max pools are 3x3 stride 2 with ``ceil_mode`` so that a 224
    input gives the paper's 110 > 55 > 26 > 13 > 6. Works with any torch code: a plain module.
    """

    def __init__(self, config: ZFConfig = ZFConfig()):
        super().__init__()
        c = config
        self.config = c
        for r in c.removed:
            if r not in (3, 4, 6, 7):
                raise ModelError(f"Table 3 removes layers 3, 4, 6 or 7, not {r}")
        if c.layout not in ("paper", "pytorchcv"):
            raise ModelError(f"layout must be 'paper' or 'pytorchcv', not {c.layout!r}")
        norm_first = c.layout == "pytorchcv"
        ch = [c.scaled(n) for n in c.conv_channels]
        fc = [c.scaled(n) for n in c.fc_units]
        if c.first_layer == "zf":
            k1, s1, p1 = 7, 2, 1
        elif c.first_layer == "krizhevsky":
            k1, s1, p1 = 11, 4, 2
        else:
            raise ModelError(f"first_layer must be 'zf' or 'krizhevsky', not {c.first_layer!r}")

        f: "OrderedDict[str, nn.Module]" = OrderedDict()
        names: dict[str, str] = {}
        f["conv1"] = nn.Conv2d(c.in_channels, ch[0], k1, stride=s1, padding=p1)
        f["relu1"] = nn.ReLU()
        self._pool_and_norm(f, "1", norm_first)
        names["layer1"] = "features.relu1"
        f["conv2"] = nn.Conv2d(
            ch[0],
            ch[1],
            5,
            stride=2 if c.first_layer == "zf" else 1,
            padding=0 if c.first_layer == "zf" else 2,
        )
        f["relu2"] = nn.ReLU()
        self._pool_and_norm(f, "2", norm_first)
        names["layer2"] = "features.relu2"
        prev = ch[1]
        for i in (3, 4, 5):
            if i in c.removed:
                continue
            f[f"conv{i}"] = nn.Conv2d(prev, ch[i - 1], 3, padding=1)
            f[f"relu{i}"] = nn.ReLU()
            names[f"layer{i}"] = f"features.relu{i}"
            prev = ch[i - 1]
        f["pool5"] = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.features = nn.Sequential(f)

        side = self.feature_side(c)
        if side < 1:
            raise ModelError(f"image_size {c.image_size} is too small for this layout")
        n_in = prev * side * side
        k: "OrderedDict[str, nn.Module]" = OrderedDict()
        for i, units in zip((6, 7), fc):
            if i in c.removed:
                continue
            if not norm_first:
                k[f"drop{i}"] = nn.Dropout(c.dropout)
            k[f"fc{i}"] = nn.Linear(n_in, units)
            k[f"relu{i}"] = nn.ReLU()
            if norm_first:
                k[f"drop{i}"] = nn.Dropout(c.dropout)
            names[f"layer{i}"] = f"classifier.relu{i}"
            n_in = units
        k["fc8"] = nn.Linear(n_in, c.num_classes)
        names["logits"] = "classifier.fc8"
        self.classifier = nn.Sequential(k)
        self.layer_names = names
        self.input_size = c.image_size

    @staticmethod
    def _pool_and_norm(f: dict, i: str, norm_first: bool) -> None:
        """Fig. 3: pool, then normalise; pytorchcv's layout: normalise, then pool."""
        if not norm_first:
            f[f"pool{i}"] = nn.MaxPool2d(3, 2, ceil_mode=True)
        f[f"norm{i}"] = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
        if norm_first:
            f[f"pool{i}"] = nn.MaxPool2d(3, 2, ceil_mode=True)

    @staticmethod
    def feature_side(c: ZFConfig) -> int:
        """Side of the pooled layer-5 map (6 for the paper's 224 input)."""
        if c.first_layer == "zf":
            n = (c.image_size + 2 - 7) // 2 + 1
            n = _pool_out(n)
            n = (n - 5) // 2 + 1
        else:
            n = (c.image_size + 4 - 11) // 4 + 1
            n = _pool_out(n)  # conv2 (5x5, padding 2, stride 1) keeps the size
        n = _pool_out(n)
        return _pool_out(n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(torch.flatten(x, 1))


def build(
    variant: str = "zf",
    *,
    first_layer: str = "zf",
    width: float = 1.0,
    image_size: int = 224,
    num_classes: int = 1000,
    fc_units: int | None = None,
    dropout: float = 0.5,
    in_channels: int = 3,
) -> ZFNet:
    """Build any network of the paper from one parametrised layout.

    ``variant`` is a key of :data:`TABLE3_VARIANTS`; ``first_layer`` picks ZF (7x7/2) or
    Krizhevsky (11x11/4); ``fc_units`` overrides the paper's 4096 for layers 6 and 7 (a profile's
    scaled size) and Table 3's 2048/8192 variants scale with it.
    """
    if variant not in TABLE3_VARIANTS:
        raise ModelError(f"unknown variant {variant!r}: choose one of {sorted(TABLE3_VARIANTS)}")
    changes = dict(TABLE3_VARIANTS[variant])
    if fc_units is not None:
        base = changes.get("fc_units", (4096, 4096))
        changes["fc_units"] = tuple(int(u * fc_units / 4096) for u in base)
    cfg = ZFConfig(
        first_layer=first_layer,
        width=width,
        image_size=image_size,
        num_classes=num_classes,
        dropout=dropout,
        in_channels=in_channels,
        **changes,
    )
    return ZFNet(cfg)


def zfnet(
    *,
    width: float = 1.0,
    image_size: int = 224,
    num_classes: int = 1000,
    fc_units: int | None = None,
    dropout: float = 0.5,
    variant: str = "zf",
    weights: str | None = None,
    download: bool | None = None,
) -> ZFNet:
    """The paper's Fig. 3 network (ZFNet); ``width``/``image_size`` scale it for small profiles.

    ``variant="wide"`` is Table 3's ``"conv3_4_5_wide"`` (layers 3, 4, 5 with 512, 1024, 512
    maps). ``weights="imagenet"`` returns the full-size network with pytorchcv's ImageNet weights
    (``zfnet``, or ``zfnetb`` for the wide variant) in pytorchcv's layer order
    (``ZFConfig.layout="pytorchcv"``); the file must be on disk or downloadable (``download``, as
    in :func:`alexnet`), else a :class:`MissingWeightsError` names it
    (:func:`zfcore.pretrained.imagenet_state`). The ImageNet network is full size: ``width``,
    ``image_size``, ``num_classes`` and ``fc_units`` keep their defaults.
    """
    if variant == "wide":
        variant = "conv3_4_5_wide"
    if weights is not None:
        if weights != "imagenet":
            raise ModelError(f"weights must be 'imagenet' or None, not {weights!r}")
        changed = [
            f"{k}={v!r}"
            for k, v, d in (
                ("width", width, 1.0),
                ("image_size", image_size, 224),
                ("num_classes", num_classes, 1000),
            )
            if v != d
        ] + ([f"fc_units={fc_units!r}"] if fc_units not in (None, 4096) else [])
        if changed:
            raise ModelError(
                f"the ImageNet weights fit only the full-size network: drop "
                f"{', '.join(changed)} (or pass weights=None to build a scaled one)"
            )
        name = variant_name(variant)
        state, path = imagenet_state(name, download)
        cfg = ZFConfig(
            first_layer="zf", dropout=dropout, layout="pytorchcv", **TABLE3_VARIANTS[name]
        )
        return load_model_state(ZFNet(cfg), state, source=str(path))
    return build(
        variant,
        first_layer="zf",
        width=width,
        image_size=image_size,
        num_classes=num_classes,
        fc_units=fc_units,
        dropout=dropout,
    )


def krizhevsky(
    *,
    width: float = 1.0,
    image_size: int = 224,
    num_classes: int = 1000,
    fc_units: int | None = None,
    dropout: float = 0.5,
    variant: str = "zf",
) -> ZFNet:
    """Krizhevsky et al.'s single-column layout: first layer 96 filters 11x11 stride 4 (Fig. 6)."""
    return build(
        variant,
        first_layer="krizhevsky",
        width=width,
        image_size=image_size,
        num_classes=num_classes,
        fc_units=fc_units,
        dropout=dropout,
    )


# ---------------------------------------------------------------------------------------------
# Layer addressing
# ---------------------------------------------------------------------------------------------


def leaf_modules(model: nn.Module, upto: "str | int | None" = None) -> list[tuple[str, nn.Module]]:
    """The model's leaf modules as ``(qualified name, module)`` in registration order, which is
    the forward order of every network of this module; with ``upto`` (a layer, as
    :func:`layer_key` reads it) the list ends at that layer's module. The one walker over a
    model's layers: the deconvnet, receptive fields and the layer table read the chain here."""
    target = None if upto is None else layer_names(model)[layer_key(upto, model)]
    out = []
    for name, m in model.named_modules():
        if name and next(m.children(), None) is None:
            out.append((name, m))
            if name == target:
                return out
    if target is not None:
        raise LayerError(f"layer {upto!r} ({target!r}) is not a leaf module of the model")
    return out


def layer_names(model: nn.Module) -> dict[str, str]:
    """``{"layer1": "features.relu1", ...}`` for any supported model."""
    names = getattr(model, "layer_names", None)
    if not isinstance(names, dict):
        raise ModelTypeError(
            f"{type(model).__name__} has no layer_names: build it with zfcore.models "
            f"or set model.layer_names = {{'layer1': '<module name>', ...}}"
        )
    return names


def layer_key(layer: "str | int", among: "nn.Module | Iterable[str]") -> str:
    """The name of ``layer`` ("layer5", 5 or "logits") among the layers of a model (its
    ``layer_names``) or a given list of names: the one place a layer argument is checked.

    A number ``n`` means ``"layer<n>"``; anything unknown, a bool or another type raises
    :class:`LayerError` naming the layers there are.
    """
    names = list(layer_names(among) if isinstance(among, nn.Module) else among)
    owner = f" for {type(among).__name__}" if isinstance(among, nn.Module) else ""
    if isinstance(layer, bool) or not isinstance(layer, (str, int)):
        raise LayerError(
            f"layer must be a name such as 'layer5' or a number such as 5, not "
            f"{type(layer).__name__}; the layers{owner} are {', '.join(names)}"
        )
    key = f"layer{layer}" if isinstance(layer, int) else layer
    if key not in names:
        raise LayerError(f"unknown layer {layer!r}{owner}: the layers are {', '.join(names)}")
    return key


def layer_keys(
    layers: "str | int | Iterable[str | int]", among: "nn.Module | Iterable[str]"
) -> list[str]:
    """:func:`layer_key` for each of ``layers`` (one layer or several), in order, repeats dropped;
    an empty list raises :class:`LayerError`."""
    if isinstance(layers, (str, int)):
        layers = [layers]
    keys = list(dict.fromkeys(layer_key(l, among) for l in layers))
    if not keys:
        raise LayerError("no layers given: name at least one, e.g. ['layer5']")
    return keys


def hidden_layers(model: nn.Module) -> list[str]:
    """The model's numbered layers (``layer1`` ...), without ``logits``."""
    return [k for k in layer_names(model) if k.startswith("layer")]


def get_layer(model: nn.Module, layer: "str | int") -> nn.Module:
    """The module whose output is ``layer`` ("layer5", 5 or "logits") of ``model``."""
    return model.get_submodule(layer_names(model)[layer_key(layer, model)])


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block with ``model`` in eval mode (dropout off, BatchNorm on its running
    statistics) and give every submodule its own mode back afterwards: the one policy of every
    analysis in ``zfcore`` (the caller's model is never left changed)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, t in modes:
            m.training = t


def in_eval_mode(fn: Callable) -> Callable:
    """Decorate an analysis whose first argument is the model with :func:`eval_mode`."""

    @functools.wraps(fn)
    def run(model, *args, **kwargs):
        with eval_mode(model):
            return fn(model, *args, **kwargs)

    return run


class _StopForward(Exception):
    """Raised from a hook once every requested layer has been seen: the rest of the pass is
    skipped."""


@contextlib.contextmanager
def capture_layers(
    model: nn.Module,
    layers: Sequence["str | int"],
    *,
    transform: "Callable[[str, torch.Tensor], Any] | None" = None,
    stop: bool = False,
) -> Iterator[dict]:
    """Record the outputs of ``layers`` ("layer5", 5, "logits") of every forward pass of ``model``
    run inside the block, into the yielded dict (keyed by the layers as given; the last pass wins).

    ``transform(layer, output)``, if given, is applied as each output appears (feature extraction
    pools there, so a full-size layer-1 map is freed before layer 2 runs). ``stop=True`` ends the
    pass as soon as every layer has been recorded (use :func:`forward_layers`, which catches it).
    The one way ``zfcore`` reads a layer's output: mining, deconvnet, occlusion, invariance,
    correspondence and transfer all go through it.
    """
    keys = list(dict.fromkeys(layers))
    out: dict = {}

    def make_hook(key: str):
        def hook(_module, _inputs, output):
            out[key] = output if transform is None else transform(key, output)
            if stop and len(out) == len(keys):
                raise _StopForward

        return hook

    handles = [get_layer(model, k).register_forward_hook(make_hook(k)) for k in keys]
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


def forward_layers(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence["str | int"],
    *,
    transform: "Callable[[str, torch.Tensor], Any] | None" = None,
) -> dict:
    """``{layer: output}`` for ``layers`` from ONE forward pass of ``model`` on ``x``, stopping
    after the deepest of them (asking for layer 5 never runs layers 6 and 7), keyed by the layers
    as given. Runs in the model's current mode, with
    gradients unless the caller turns them off (fine-tuning backpropagates through them)."""
    with capture_layers(model, layers, transform=transform, stop=True) as out:
        try:
            model(x)
        except _StopForward:
            pass
    keys = list(dict.fromkeys(layers))
    missing = [k for k in keys if k not in out]
    if missing:  # a layer whose module was never called (a model whose forward skips it)
        raise LayerError(
            f"the forward pass of {type(model).__name__} never reached {missing}; "
            f"check model.layer_names"
        )
    return {k: out[k] for k in keys}


def model_device(model: nn.Module) -> torch.device:
    """The device ``model`` runs on (that of its first parameter or buffer; the CPU for a model
    without either). Every analysis of ``zfcore`` runs where the model is: it moves its inputs
    there once, keeps its working tensors there, and brings results back to the CPU once at the
    end, never inside a loop."""
    t = next(model.parameters(), None)
    if t is None:
        t = next(model.buffers(), None)
    return t.device if t is not None else torch.device("cpu")


def to_device(t: torch.Tensor, device: "torch.device | str") -> torch.Tensor:
    """``t`` on ``device``; a host-to-GPU copy is asynchronous (``non_blocking``: it does not
    wait for the GPU's queue, unlike a plain ``.to``), so loops can hand small index tensors to
    the device without stalling it."""
    return t.to(device, non_blocking=True)


def conv_layers(model: nn.Module) -> list[nn.Conv2d]:
    """All convolutions of ``model`` in order (those that feature-scale clipping renormalises)."""
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


# ---------------------------------------------------------------------------------------------
# Section 3: initialisation and feature-scale clipping
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def paper_init_(model: nn.Module, weight: float = 1e-2, bias: float = 0.0) -> nn.Module:
    """The paper's initialisation (section 3): "all weights initialized to 1e-2 and biases to 0".

    The paper's sentence is read, as in every reimplementation, as weights drawn with standard
    deviation ``weight`` (constant weights would make every filter identical).
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.normal_(0.0, weight)
            if m.bias is not None:
                m.bias.fill_(bias)
    return model


@torch.no_grad()
def he_init_(model: nn.Module, seed: int = 0) -> nn.Module:
    """He (Kaiming) normal weights and zero biases, seeded: a random-weight control whose signal
    keeps its scale through the layers (PyTorch's default init shrinks it to almost nothing), so
    outputs react visibly to input changes (used by occlusion tests and benchmarks)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            if m.bias is not None:
                m.bias.zero_()
    return model


def filter_rms(conv: nn.Conv2d) -> torch.Tensor:
    """Root mean square of each filter of ``conv`` (one value per output channel)."""
    w = conv.weight.detach()
    return w.pow(2).flatten(1).mean(1).sqrt()


@torch.no_grad()
def clip_filters_(model: nn.Module, radius: float = 0.1) -> int:
    """Feature-scale clipping (section 3): renormalise every conv filter whose RMS exceeds
    ``radius`` to an RMS of exactly ``radius``. Returns how many filters were renormalised."""
    return int(clip_filters_count_(model, radius))


@torch.no_grad()
def clip_filters_count_(model: nn.Module, radius: float = 0.1) -> torch.Tensor:
    """:func:`clip_filters_` without reading anything back: the count of renormalised filters
    stays a tensor on the model's device (the trainer adds it up and reads it once per epoch), so
    a training step never waits for the GPU. Filters within ``radius`` are multiplied by exactly
    1, which leaves them bit for bit as they were."""
    n = torch.zeros((), dtype=torch.int64, device=model_device(model))
    for conv in conv_layers(model):
        rms = filter_rms(conv)
        over = rms > radius
        scale = torch.where(over, radius / rms, torch.ones_like(rms))
        conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))))
        n += over.sum()
    return n


# ---------------------------------------------------------------------------------------------
# torchvision's pretrained networks behind the same naming
# ---------------------------------------------------------------------------------------------


def _unplace_relus(model: nn.Module) -> None:
    # In-place ReLUs break forward/backward hooks on the layer outputs we address.
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False


def _torchvision(
    builder, weights, names: dict[str, str], pretrained: bool, download: bool | None
) -> nn.Module:
    """A torchvision classifier with our layer naming (and its ImageNet weights if asked)."""
    m = builder(weights=None)
    if pretrained:
        m.load_state_dict(torchvision_state(weights, download))
    _unplace_relus(m)
    m.layer_names = dict(names)
    m.input_size = 224
    return m


def alexnet(pretrained: bool = True, download: bool | None = None) -> nn.Module:
    """torchvision's AlexNet (single-column Krizhevsky et al.) with ``layer1`` ... ``layer7``.

    With ``pretrained=True`` the ImageNet weights must be on disk (torch hub's checkpoints
    folder) or downloadable; offline, a :class:`MissingWeightsError` names the file and folder.
    """
    from torchvision.models import AlexNet_Weights
    from torchvision.models import alexnet as tv_alexnet

    return _torchvision(
        tv_alexnet,
        AlexNet_Weights.IMAGENET1K_V1,
        {
            "layer1": "features.1",
            "layer2": "features.4",
            "layer3": "features.7",
            "layer4": "features.9",
            "layer5": "features.11",
            "layer6": "classifier.2",
            "layer7": "classifier.5",
            "logits": "classifier.6",
        },
        pretrained,
        download,
    )


def vgg16(pretrained: bool = True, download: bool | None = None) -> nn.Module:
    """torchvision's VGG16; ``layer1`` ... ``layer5`` are the last ReLU of each conv block."""
    from torchvision.models import VGG16_Weights
    from torchvision.models import vgg16 as tv_vgg16

    return _torchvision(
        tv_vgg16,
        VGG16_Weights.IMAGENET1K_V1,
        {
            "layer1": "features.3",
            "layer2": "features.8",
            "layer3": "features.15",
            "layer4": "features.22",
            "layer5": "features.29",
            "layer6": "classifier.1",
            "layer7": "classifier.4",
            "logits": "classifier.6",
        },
        pretrained,
        download,
    )


def resnet18(pretrained: bool = True, download: bool | None = None) -> nn.Module:
    """torchvision's ResNet-18 under the same naming, for comparison with the paper's networks.

    A residual network has no ZF-style layers, so the stages are mapped by depth: ``layer1`` is
    the first convolution's ReLU (112x112), ``layer2`` ... ``layer5`` the outputs of the four
    residual stages (56, 28, 14 and 7 px; each ends in a ReLU), so ``layer5`` is the deepest
    convolutional map, as the paper's layer 5 is; there is no ``layer6``/``layer7`` (one fully
    connected layer, ``logits``). The last block of each stage is addressed (not its ReLU module,
    which a block calls twice). Project it with ``method="autograd"``.
    """
    from torchvision.models import ResNet18_Weights
    from torchvision.models import resnet18 as tv_resnet18

    return _torchvision(
        tv_resnet18,
        ResNet18_Weights.IMAGENET1K_V1,
        {
            "layer1": "relu",
            "layer2": "layer1.1",
            "layer3": "layer2.1",
            "layer4": "layer3.1",
            "layer5": "layer4.1",
            "logits": "fc",
        },
        pretrained,
        download,
    )


def load_model_state(model: nn.Module, state: dict, source: str = "checkpoint") -> nn.Module:
    """``model.load_state_dict(state)`` with an error that names every mismatch plainly."""
    from collections.abc import Mapping

    if not isinstance(state, Mapping):
        raise ModelTypeError(
            f"{source} holds a {type(state).__name__}, not a state_dict (a dict of "
            f"parameter name -> tensor)"
        )
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        hint = (
            f"; it looks like a training checkpoint: pass its {bad[0]!r} entry"
            if len(state) <= 8 and any(isinstance(state[k], Mapping) for k in bad)
            else ""
        )
        raise ModelError(f"{source} is not a state_dict: entries {bad[:5]} are not tensors{hint}")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state
        and hasattr(state[k], "shape")
        and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append("shape mismatch: " + "; ".join(shapes[:5]))
        if missing:
            parts.append(f"missing from {source}: {missing[:5]}")
        if unexpected:
            parts.append(f"not in the model: {unexpected[:5]}")
        raise ModelError(
            f"{source} does not fit {type(model).__name__} "
            f"({' | '.join(parts)}): it was saved from another architecture or "
            f"profile; rebuild the model with the same settings"
        )
    model.load_state_dict(state)
    return model


def model_fingerprint(model: nn.Module) -> str:
    """A hash of a model's class, layer names and every parameter and buffer: its identity in the
    cache keys of everything computed from it (mined top-9, features, occlusion maps, ...).

    Hashing AlexNet's 61 M parameters takes a moment, so the hash is remembered on the model
    together with each tensor's storage address and in-place version counter: any change to the
    weights (an optimiser step, ``load_state_dict``, ``copy_``) invalidates it.
    """
    state = model.state_dict(keep_vars=True)
    stamp = tuple((k, t.data_ptr(), t._version) for k, t in state.items())
    memo = getattr(model, "_zfcore_fingerprint", None)
    if memo is not None and memo[0] == stamp:
        return memo[1]
    h = hashlib.sha256()
    h.update(type(model).__name__.encode())
    h.update(repr(sorted(getattr(model, "layer_names", {}).items())).encode())
    layout = getattr(getattr(model, "config", None), "layout", "paper")
    if layout != "paper":  # same weights, other layer order: another function
        h.update(f"layout={layout}".encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(
            t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b""
        )
    digest = h.hexdigest()[:16]
    object.__setattr__(model, "_zfcore_fingerprint", (stamp, digest))
    return digest


def from_pytorchcv(net: nn.Module) -> "ZFNet":
    """zfcore's :class:`ZFNet` with the weights of a pytorchcv ``zfnet`` or ``zfnetb`` model
    object (Fig. 3; Table 3's wide layers 3-5), in pytorchcv's layer order
    (``ZFConfig(layout="pytorchcv")``: LRN before the first two pools) so its outputs equal
    ``net``'s; with zfcore's layer names, so every analysis runs on it. ``net`` is not changed;
    the result is in ``net``'s train/eval mode and on the CPU.
    """
    if not isinstance(net, nn.Module):
        raise ModelError(
            f"from_pytorchcv takes a pytorchcv model (torch.nn.Module), got {type(net).__name__}"
        )
    convs, fcs, dropout = pytorchcv_modules(net)
    size = getattr(net, "in_size", (224, 224))
    if size[0] != size[1]:
        raise ModelError(f"from_pytorchcv needs a square input size, this net has in_size {size}")
    cfg = ZFConfig(
        first_layer="zf",
        conv_channels=tuple(c.out_channels for c in convs),
        fc_units=(fcs[0].out_features, fcs[1].out_features),
        image_size=int(size[0]),
        in_channels=convs[0].in_channels,
        num_classes=fcs[2].out_features,
        dropout=dropout,
        layout="pytorchcv",
    )
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    model = load_model_state(
        ZFNet(cfg), convert_pytorchcv_state(state), source=f"pytorchcv {type(net).__name__}"
    )
    return model.train(net.training)
