"""One place that picks the network for a profile or a name.

Zeiler & Fergus look inside one network, the ImageNet-trained model of Fig. 3 (section 3); the
notebooks do the same on whichever network the profile names:

* :func:`model_for_profile` ``(profile, weights=None, arch=None)``: ``tiny`` / ``mini`` /
  ``imagenette`` give the profile's trained ZF network (:func:`zfcore.train.trained_model`,
  trained on first use and cached); ``imagenet`` gives the pretrained ImageNet network (the
  paper's ZFNet). ``weights="random"`` gives the same layout untrained and downloads nothing (for
  offline runs and tests); the environment variable ``ZFCORE_WEIGHTS`` sets the default.
* :func:`get_model` ``(name, weights="imagenet")``: ``zfnet``, ``alexnet``, ``vgg16``,
  ``resnet18`` or a file ``FILE.pt`` (a state dict or a training checkpoint of a zfcore model;
  files holding pickled Python objects are refused, nothing in them can run).
* :func:`class_names_for`: the label names of a network's outputs.

Every model comes back in eval mode with ``model.layer_names`` (``layer1`` ... ``logits``) and
``model.zoo_name`` (what it is, for titles and JSON records).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from . import models
from .cache import CacheError, load_tensors
from .data import class_names
from .errors import ZFCoreError
from .models import ZFConfig, ZFNet, get_layer, he_init_
from .profiles import Profile, get_profile
from .train import build_model, make_spec, trained_model

__all__ = [
    "ZooError",
    "NAMES",
    "WEIGHTS",
    "get_model",
    "load_model_file",
    "model_for_profile",
    "class_names_for",
    "imagenet_classes",
]

#: Names :func:`get_model` accepts besides a ``.pt`` file.
NAMES = ("zfnet", "alexnet", "vgg16", "resnet18")
#: ``weights`` values: pretrained on ImageNet, untrained (seeded), or the profile's trained network.
WEIGHTS = ("imagenet", "random", "trained")
_SUFFIXES = (".pt", ".pth")


class ZooError(ZFCoreError, ValueError):
    """A bad model name, weights choice or model file; the message says what to do."""


# ---------------------------------------------------------------------------------------------
# Networks by name
# ---------------------------------------------------------------------------------------------


def _random_(model: nn.Module) -> nn.Module:
    # He-initialised, seeded: an untrained control whose outputs react to the input (PyTorch's
    # default initialisation shrinks the signal to almost nothing through eight layers).

    return he_init_(model, seed=0)


def _pretrained_zfnet(download: "bool | None") -> nn.Module:
    """The paper's ZFNet with ImageNet weights (pytorchcv's ``zfnet``, converted by
    :func:`zfcore.models.zfnet`; a missing weight file raises an error naming it)."""

    m = models.zfnet(weights="imagenet", download=download)
    m.zoo_name = "zfnet (ImageNet, pytorchcv's weights)"
    return m


def _check_weights(weights: Any, allowed: Sequence[str]) -> str:
    if weights not in allowed:
        raise ZooError(f"weights must be one of {', '.join(map(repr, allowed))}, not {weights!r}")
    return weights


def get_model(
    name: "str | os.PathLike", weights: str = "imagenet", *, download: "bool | None" = None
) -> nn.Module:
    """A network by name, in eval mode, with ``layer_names`` and ``zoo_name``.

    ``name``: ``"zfnet"`` (the paper's Fig. 3 network at 224 px, 1000 classes), ``"alexnet"``,
    ``"vgg16"``, ``"resnet18"`` (torchvision's, see :func:`zfcore.models.resnet18` for its layer
    mapping), or the path of a ``.pt`` / ``.pth`` file (see :func:`load_model_file`).
    ``weights``: ``"imagenet"`` (pretrained; the file must be on disk or downloadable, see
    :func:`zfcore.models.alexnet`) or ``"random"`` (He-initialised with seed 0; nothing is read or
    downloaded). Ignored for a file.
    """

    if isinstance(name, os.PathLike) or (
        isinstance(name, str) and name.lower().endswith(_SUFFIXES)
    ):
        return load_model_file(name)
    if not isinstance(name, str) or name not in NAMES:
        raise ZooError(
            f"unknown model {name!r}: choose one of {', '.join(NAMES)} or give the path "
            f"of a saved model (FILE.pt)"
        )
    _check_weights(weights, ("imagenet", "random"))
    if weights == "imagenet" and name == "zfnet":
        m = _pretrained_zfnet(download)
    elif name == "zfnet":
        # the layout of the ImageNet weights (LRN before the first two pools, as pytorchcv has it)
        m = _random_(
            models.ZFNet(
                models.ZFConfig(
                    first_layer="zf", image_size=224, num_classes=1000, layout="pytorchcv"
                )
            )
        )
        m.zoo_name = "zfnet (random weights, the ImageNet weights' layout)"
    else:
        builder = getattr(models, name)
        m = builder(pretrained=weights == "imagenet", download=download)
        if weights == "random":
            _random_(m)
        m.zoo_name = f"{name} ({'ImageNet' if weights == 'imagenet' else 'random weights'})"
    return m.eval()


def _zf_config_from_state(state: dict, image_size: "int | None") -> dict:
    """The :func:`zfcore.models.build` arguments that produce a ZF-layout state dict."""

    w1 = state["features.conv1.weight"]
    first = {7: "zf", 11: "krizhevsky"}.get(int(w1.shape[-1]))
    if first is None:
        raise ZooError(
            f"features.conv1 has {w1.shape[-1]}x{w1.shape[-1]} filters: not a ZF (7x7) "
            f"or Krizhevsky (11x11) layout"
        )
    removed = tuple(i for i in (3, 4) if f"features.conv{i}.weight" not in state) + tuple(
        i for i in (6, 7) if f"classifier.fc{i}.weight" not in state
    )
    convs = [
        int(state[f"features.conv{i}.weight"].shape[0])
        for i in range(1, 6)
        if f"features.conv{i}.weight" in state
    ]
    fcs = [
        int(state[f"classifier.fc{i}.weight"].shape[0])
        for i in (6, 7)
        if f"classifier.fc{i}.weight" in state
    ]
    num_classes = int(state["classifier.fc8.weight"].shape[0])
    first_fc = next(
        k
        for k in ("classifier.fc6.weight", "classifier.fc7.weight", "classifier.fc8.weight")
        if k in state
    )
    n_in, last = int(state[first_fc].shape[1]), convs[-1]
    width = convs[0] / 96
    sizes = [image_size] if image_size else [224, 112, 64] + list(range(32, 513))
    for s in sizes:
        cfg = ZFConfig(first_layer=first, width=width, image_size=s, removed=removed)
        side = ZFNet.feature_side(cfg)
        if side >= 1 and last * side * side == n_in:
            conv_channels = [96, 256, 384, 384, 256]
            kept = [i for i in range(5) if i + 1 not in removed]
            for i, c in zip(kept, convs):
                conv_channels[i] = c
            fc_units = (fcs + fcs[-1:] * 2)[:2] if fcs else (4096, 4096)
            return dict(
                first_layer=first,
                image_size=s,
                num_classes=num_classes,
                conv_channels=tuple(conv_channels),
                fc_units=tuple(fc_units),
                removed=removed,
            )
    raise ZooError(
        f"no input size gives layer 5 the {n_in} inputs of its first fully connected "
        f"layer; pass image_size="
    )


def load_model_file(path: "str | os.PathLike", image_size: "int | None" = None) -> nn.Module:
    """A saved zfcore model: a state dict (``torch.save(model.state_dict(), path)``, the
    ``weights_e*.pt`` files of :mod:`zfcore.train`) or a training checkpoint holding one under
    ``"model"`` (``resume_e*.pt``). Files are read with ``weights_only=True``: one that holds
    pickled Python objects (a whole ``torch.save(model)``) is refused with the fix.

    The layout is read from the tensors' shapes: the ZF / Krizhevsky layouts of any width,
    Table 3 variant and class count, or torchvision's AlexNet, VGG16 and ResNet-18. The input size
    of a ZF layout is the first that fits its fully connected layer (224, 112, 64, ...); give
    ``image_size`` when several do.
    """

    p = Path(path)
    if not p.is_file():
        raise ZooError(
            f"{p}: no such model file; give the path of a .pt file saved with "
            f"torch.save(model.state_dict(), path)"
        )
    try:
        state = load_tensors(p, verify=False)
    except CacheError as e:
        raise ZooError(str(e)) from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise ZooError(
            f"{p} holds a {type(state).__name__}, not a state dict (parameter name -> tensor)"
        )
    state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from DDP
    if "features.conv1.weight" in state:
        cfg = models.ZFConfig(**_zf_config_from_state(state, image_size))
        m = models.ZFNet(cfg)
        kind = f"{cfg.first_layer} layout, {cfg.image_size} px, {cfg.num_classes} classes"
    else:
        candidates = {
            "resnet18": "layer4.1.conv2.weight",
            "vgg16": "features.28.weight",
            "alexnet": "features.10.weight",
        }
        arch = next((a for a, key in candidates.items() if key in state), None)
        if arch is None:
            raise ZooError(
                f"{p}: not a zfcore model (no features.conv1.weight) nor torchvision's "
                f"AlexNet, VGG16 or ResNet-18; keys start {list(state)[:4]}"
            )
        m = getattr(models, arch)(pretrained=False)
        kind = arch
    models.load_model_state(m, state, source=str(p))
    m.zoo_name = f"{p.name} ({kind})"
    return m.eval()


def _default_weights(P: Profile, weights: "str | None") -> str:
    if weights is None:
        env = os.environ.get("ZFCORE_WEIGHTS", "").strip()
        weights = env or ("imagenet" if P.name == "imagenet" else "trained")
        if env and env not in WEIGHTS:
            raise ZooError(
                f"ZFCORE_WEIGHTS={env!r}: set it to one of {', '.join(WEIGHTS)} or unset it"
            )
        if weights == "trained" and P.name == "imagenet":
            weights = "imagenet"
        if weights == "imagenet" and P.name != "imagenet":
            weights = "trained"
    return weights


def model_for_profile(
    profile: "str | Profile", weights: "str | None" = None, arch: "str | None" = None
) -> nn.Module:
    """The network a notebook looks inside on ``profile``, in eval mode.

    * ``tiny``, ``mini``, ``imagenette``: the profile's trained network
      (:func:`zfcore.train.trained_model`; ``arch`` ``"zfnet"`` (default, Fig. 3) or
      ``"krizhevsky"`` (Fig. 6)); ``weights="random"``: the same network before training (the
      untrained control, initialised as training starts).
    * ``imagenet``: the pretrained ImageNet network (``arch`` default ``"zfnet"``, the paper's; or
      ``"alexnet"``, ``"vgg16"``, ``"resnet18"``), ``weights="random"``: that layout untrained.

    ``weights=None`` takes ``$ZFCORE_WEIGHTS`` if set, else the trained / pretrained network.
    """
    P = get_profile(profile)
    w = _default_weights(P, weights)
    if P.name == "imagenet":
        _check_weights(w, ("imagenet", "random"))
        arch = arch or "zfnet"
        if arch not in NAMES:
            raise ZooError(
                f"arch must be one of {', '.join(NAMES)} on the imagenet profile, not {arch!r}"
            )
        return get_model(arch, weights=w)
    _check_weights(w, ("trained", "random"))
    arch = arch or "zfnet"
    if arch not in ("zfnet", "krizhevsky"):
        raise ZooError(
            f"arch must be 'zfnet' or 'krizhevsky' on the {P.name} profile (the networks "
            f"it trains), not {arch!r}; pretrained networks are on the imagenet profile"
        )

    if w == "random":
        m = build_model(make_spec(P, arch))
        m.zoo_name = f"{arch} ({P.name}, untrained)"
    else:
        m = trained_model(P, arch=arch)
        m.zoo_name = f"{arch} ({P.name}, trained)"
    return m.eval()


def imagenet_classes() -> list[str]:
    """ImageNet's 1000 class names in torchvision's order (no download: they ship with it)."""
    from torchvision.models import AlexNet_Weights

    return list(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


def class_names_for(model: nn.Module, profile: "str | Profile | None" = None) -> list[str]:
    """Names of the model's output classes: ImageNet's for a 1000-way network, the profile's
    classes otherwise (``class i`` where unknown)."""

    try:
        out = get_layer(model, "logits")
        n = int(getattr(out, "out_features", 0))
    except Exception:
        n = 0
    if n == 1000:
        return imagenet_classes()
    if profile is not None:
        try:
            names = list(class_names(profile))
            if not n or len(names) == n:
                return names
        except Exception:
            pass
    return [f"class {i}" for i in range(n)]
