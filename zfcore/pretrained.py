"""Pretrained weight files: the paper's network with ImageNet weights (pytorchcv's model zoo) and
torchvision's classifiers; where each file lives, how it is fetched, and its state dict with
zfcore's layer names. :func:`zfcore.models.zfnet` (``weights="imagenet"``),
:func:`zfcore.models.from_pytorchcv` and :func:`zfcore.models.alexnet` build the networks.


Zeiler & Fergus (2014) trained the Fig. 3 network on ImageNet 2012; their weights were never
published. pytorchcv (MIT, ``pip install pytorchcv``) ships two ImageNet-1k trainings of it:

* ``zfnet``: Fig. 3 exactly (96-256-384-384-256 maps, 7x7 stride-2 first layer, 5x5 stride-2
  second, 3x3/2 max pools, local response normalisation after layers 1 and 2, 4096-4096 fully
  connected; 62,357,608 parameters). pytorchcv's published ImageNet validation error (224 crop):
  top-1 39.79 %, top-5 17.27 %.
* ``zfnetb``: Table 3's wider variant, layers 3, 4, 5 with 512, 1024, 512 maps
  (``TABLE3_VARIANTS["conv3_4_5_wide"]``; 107,627,624 parameters): top-1 36.37 %, top-5 14.90 %.

Layer order. pytorchcv normalises *before* each of the first two max pools (conv, ReLU, LRN,
pool), where Fig. 3's caption pools and then normalises, and applies dropout after the ReLUs of
layers 6 and 7 rather than before fc6 and fc7. ``ZFConfig(layout="pytorchcv")`` builds exactly that
order, so the converted network reproduces pytorchcv's outputs (tested to 1e-5 on photos); every
other detail (padding 1 and 0 in layers 1 and 2, ``ceil_mode`` pools, LRN size 5, alpha 1e-4,
beta 0.75, k 2) is already Fig. 3's. Layer names are zfcore's (``layer1`` ... ``layer7``,
``logits``), so the deconvnet, top-9 mining, occlusion and feature extraction all run on it.

Inputs are ImageNet-normalised RGB (mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225), 224x224
(pytorchcv evaluates a 224 centre crop of a 256 resize).

The weight files are pytorchcv's, in pytorchcv's folder ``~/.torch/models``: a model that has
been downloaded once by either package is found by both.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .cache import CacheError, load_tensors
from .errors import ZFCoreError
from .locations import download_allowed

__all__ = [
    "PYTORCHCV_WEIGHTS",
    "PYTORCHCV_KEYS",
    "WeightsError",
    "MissingWeightsError",
    "weights_folder",
    "weights_path",
    "weights_url",
    "variant_name",
    "pytorchcv_modules",
    "convert_pytorchcv_state",
    "imagenet_state",
    "torchvision_weights_path",
    "torchvision_state",
]


class WeightsError(ZFCoreError, ValueError):
    """A weights choice that does not exist (a variant without ImageNet weights, a model that
    is not pytorchcv's zfnet)."""


class MissingWeightsError(ZFCoreError, FileNotFoundError):
    """Pretrained weights are not on disk and may not (or could not) be downloaded."""


# variant -> (pytorchcv model name, weight file, release tag, sha1); from pytorchcv 0.0.74's
# model_metainfos.csv (tests check these against the installed pytorchcv).
PYTORCHCV_WEIGHTS: dict[str, tuple[str, str, str, str]] = {
    "zf": (
        "zfnet",
        "zfnet-1727-d010ddca.pth",
        "v0.0.395",
        "d010ddca1eb32a50a8cceb475c792f53e769b631",
    ),
    "conv3_4_5_wide": (
        "zfnetb",
        "zfnetb-1490-f6bec24e.pth",
        "v0.0.400",
        "f6bec24eba037c8e4956704ed5bafaed29966601",
    ),
}

# pytorchcv module -> zfcore module (each has a weight and a bias).
PYTORCHCV_KEYS: dict[str, str] = {
    "features.stage1.unit1.conv": "features.conv1",
    "features.stage2.unit1.conv": "features.conv2",
    "features.stage3.unit1.conv": "features.conv3",
    "features.stage3.unit2.conv": "features.conv4",
    "features.stage3.unit3.conv": "features.conv5",
    "output.fc1.fc": "classifier.fc6",
    "output.fc2.fc": "classifier.fc7",
    "output.fc3": "classifier.fc8",
}

# Fig. 3's geometry: (kernel, stride, padding) of the five convolutions.
_GEOMETRY = ((7, 2, 1), (5, 2, 0), (3, 1, 1), (3, 1, 1), (3, 1, 1))


def weights_folder() -> Path:
    """pytorchcv's weight folder, ``~/.torch/models`` (where ``pytorchcv`` downloads to)."""
    return Path(os.path.join("~", ".torch", "models")).expanduser()


def variant_name(variant: str) -> str:
    """The Table 3 name of a variant with ImageNet weights (``\"wide\"`` is ``conv3_4_5_wide``)."""
    if variant == "wide":
        variant = "conv3_4_5_wide"
    if variant not in PYTORCHCV_WEIGHTS:
        raise WeightsError(
            f"ImageNet weights exist for variant 'zf' (Fig. 3, pytorchcv's zfnet) and "
            f"'wide' / 'conv3_4_5_wide' (Table 3, pytorchcv's zfnetb), not "
            f"{variant!r}; build other Table 3 variants without weights"
        )
    return variant


def _variant_entry(variant: str) -> tuple[str, str, str, str]:
    return PYTORCHCV_WEIGHTS[variant_name(variant)]


def weights_path(variant: str = "zf") -> Path:
    """Where the ImageNet weights of ``variant`` (``"zf"`` or ``"wide"``) are read from."""
    return weights_folder() / _variant_entry(variant)[1]


def weights_url(variant: str = "zf") -> str:
    """The zip pytorchcv downloads the weights of ``variant`` from."""
    _, file, tag, _ = _variant_entry(variant)
    return f"https://github.com/osmr/imgclsmob/releases/download/{tag}/{file}.zip"


def pytorchcv_modules(net: nn.Module):
    """``(convs, fcs, dropout)`` of a pytorchcv zfnet/zfnetb, or a :class:`WeightsError` saying
    what differs from Fig. 3."""

    def fail(why: str):
        raise WeightsError(
            f"from_pytorchcv converts pytorchcv's zfnet or zfnetb "
            f"(pytorchcv.model_provider.get_model('zfnet')), not this "
            f"{type(net).__name__}: {why}"
        )

    try:
        stages = [net.features.get_submodule(f"stage{i}") for i in (1, 2, 3)]
        units = [
            st.get_submodule(f"unit{j}")
            for st, n in zip(stages, (1, 1, 3))
            for j in range(1, n + 1)
        ]
        fcs = [net.output.fc1.fc, net.output.fc2.fc, net.output.fc3]
        dropout = float(net.output.fc1.dropout.p)
    except AttributeError:
        fail("it lacks features.stage1-3.unit* and output.fc1-3 (pytorchcv's AlexNet class)")
    if len(list(net.features.children())) != 3 or len(list(stages[2].children())) != 4:
        fail("it does not have 3 stages with 1, 1 and 3 convolutions")
    convs = []
    for i, (u, (k, s, p)) in enumerate(zip(units, _GEOMETRY), 1):
        c = getattr(u, "conv", None)
        if not isinstance(c, nn.Conv2d):
            fail(f"layer {i} has no convolution")
        got = (c.kernel_size, c.stride, c.padding)
        if got != ((k, k), (s, s), (p, p)) or c.bias is None or c.groups != 1:
            fail(
                f"layer {i} is a {c.kernel_size[0]}x{c.kernel_size[1]} stride {c.stride[0]} "
                f"padding {c.padding[0]} convolution, Fig. 3 has {k}x{k} stride {s} padding {p}"
                + (
                    " (this looks like pytorchcv alexnet)"
                    if i == 1 and k != c.kernel_size[0]
                    else ""
                )
            )
        if (
            getattr(u, "use_lrn", None) is not (i <= 2)
            or getattr(u, "use_pad", False)
            or getattr(u, "normalize", False)
            or not isinstance(getattr(u, "activ", None), nn.ReLU)
        ):
            fail(f"layer {i} is not conv, ReLU{', LRN' if i <= 2 else ''}")
        convs.append(c)
    for st in stages:
        pool = [m for m in st.children() if isinstance(m, nn.MaxPool2d)]
        if len(pool) != 1 or (
            pool[0].kernel_size,
            pool[0].stride,
            pool[0].padding,
            pool[0].ceil_mode,
        ) != (3, 2, 0, True):
            fail("its max pools are not 3x3 stride 2 with ceil_mode")
    return convs, fcs, dropout


def convert_pytorchcv_state(state: dict) -> dict:
    """pytorchcv's zfnet state_dict with zfcore's names (entries pytorchcv ignores are dropped)."""
    out = {}
    for old, new in PYTORCHCV_KEYS.items():
        for p in ("weight", "bias"):
            if f"{old}.{p}" in state:
                out[f"{new}.{p}"] = state[f"{old}.{p}"]
    return out


def imagenet_state(variant: str = "zf", download: bool | None = None) -> tuple[dict, Path]:
    """pytorchcv's ImageNet state dict of ``variant`` (``"zf"``: Fig. 3, ``"wide"``: Table 3's
    wide layers 3-5) with zfcore's layer names, and the file it came from.

    The weight file (:func:`weights_path`: ``~/.torch/models/zfnet-1727-d010ddca.pth``, or
    ``zfnetb-1490-f6bec24e.pth``) is read if present; otherwise it is downloaded with pytorchcv's
    own downloader (checked against its SHA-1) when
    :func:`~zfcore.locations.download_allowed`. Otherwise a :class:`MissingWeightsError` names the
    file, the folder, the URL and how to allow the download."""
    name, file, _, _ = PYTORCHCV_WEIGHTS[variant_name(variant)]
    path = weights_path(variant)
    url = weights_url(variant)
    if not path.is_file():
        if download_allowed(download):
            try:
                from pytorchcv.models.common.model_store import get_model_file

                get_model_file(name, local_model_store_dir_path=str(path.parent))
                reason = "the download did not produce it"
            except Exception as e:  # no network, proxy, HTTP error, hash mismatch
                reason = f"the download failed ({type(e).__name__}: {e})"
        else:
            reason = "downloads are off (pass download=True or set ZFCORE_DOWNLOAD=1 to allow one)"
        if not path.is_file():
            raise MissingWeightsError(
                f"ImageNet weights {file} (pytorchcv's {name}) are not on disk and {reason}.\n"
                f"Fetch {url}\nand unzip it into the folder {path.parent}\n"
                f"(e.g. mkdir -p {path.parent} && curl -L -o {path}.zip {url} && "
                f"unzip {path}.zip -d {path.parent}), or run with ZFCORE_DOWNLOAD=1"
            )
    try:
        state = load_tensors(path)  # weights_only=True: a file cannot run code
    except CacheError as e:
        raise CacheError(f"{e}\nDelete it and fetch {url} again into {path.parent}") from None
    return convert_pytorchcv_state(state), path


def torchvision_weights_path(weights) -> Path:
    """Where torch hub keeps the file of torchvision ``weights`` (an enum member)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def torchvision_state(weights, download: bool | None = None) -> dict:
    """The state dict of torchvision ``weights``: read from torch hub's folder, else downloaded
    when :func:`~zfcore.locations.download_allowed`, else a :class:`MissingWeightsError` saying
    what to fetch and where to put it."""
    path = torchvision_weights_path(weights)
    if path.is_file():
        try:
            return load_tensors(path)  # weights_only=True: a file cannot run code
        except CacheError as e:
            raise CacheError(f"{e}\nDelete it and fetch {weights.url} again into {path}") from None
    if download_allowed(download):
        try:
            return weights.get_state_dict(progress=True, check_hash=True)
        except Exception as e:  # no network, proxy, HTTP error
            reason = f"the download failed ({type(e).__name__}: {e})"
    else:
        reason = "downloads are off (pass download=True or set ZFCORE_DOWNLOAD=1 to allow one)"
    raise MissingWeightsError(
        f"pretrained weights {path.name} are not on disk and {reason}.\n"
        f"Fetch {weights.url}\nand put it at {path}\n"
        f"(folder: {path.parent}; e.g. mkdir -p {path.parent} && curl -L -o {path} {weights.url})"
    )
