"""One place that picks the network (and the example images) for a profile or a name.

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
* :func:`class_names_for`, :func:`photo_examples`, :func:`scene_examples`, :func:`image_set`:
  the label names and images the figures are drawn on, the user's photos always first.
* :func:`check_parameters`: the checks of a notebook's ``parameters`` cell, one line each.

Every model comes back in eval mode with ``model.layer_names`` (``layer1`` ... ``logits``) and
``model.zoo_name`` (what it is, for titles and JSON records).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .errors import ZFCoreError
from .profiles import Profile, get_profile

__all__ = [
    "ZooError",
    "NAMES",
    "WEIGHTS",
    "get_model",
    "load_model_file",
    "model_for_profile",
    "class_names_for",
    "imagenet_classes",
    "Int",
    "Number",
    "Choice",
    "Paths",
    "Folder",
    "check_parameters",
    "per_profile",
    "Examples",
    "photo_examples",
    "scene_examples",
    "examples_for_profile",
    "example_image",
    "image_set",
    "PhotoFolder",
    "mine_images",
    "labels_of",
    "first_images",
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
    from .models import he_init_

    return he_init_(model, seed=0)


def _pretrained_zfnet(download: "bool | None") -> nn.Module:
    """The paper's ZFNet with ImageNet weights (pytorchcv's ``zfnet``, converted by
    :func:`zfcore.models.zfnet`; a missing weight file raises an error naming it)."""
    from . import models

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
    from . import models

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
    from .models import ZFConfig, ZFNet

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
    from . import models
    from .cache import CacheError, load_tensors

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
    from .train import build_model, make_spec, trained_model

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
    from .models import get_layer

    try:
        out = get_layer(model, "logits")
        n = int(getattr(out, "out_features", 0))
    except Exception:
        n = 0
    if n == 1000:
        return imagenet_classes()
    if profile is not None:
        try:
            from .data import class_names

            names = list(class_names(profile))
            if not n or len(names) == n:
                return names
        except Exception:
            pass
    return [f"class {i}" for i in range(n)]


# ---------------------------------------------------------------------------------------------
# Parameter checks for notebooks' parameters cells
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Int:
    """An int in ``[lo, hi]`` (either end open with ``None``); ``none_ok`` also allows None."""

    lo: "int | None" = None
    hi: "int | None" = None
    none_ok: bool = False
    why: str = ""

    def problem(self, v) -> "str | None":
        if v is None and self.none_ok:
            return None
        lo = self.lo if isinstance(self.lo, int) else None
        hi = self.hi if isinstance(self.hi, int) else None
        if (
            isinstance(v, bool)
            or not isinstance(v, int)
            or (lo is not None and v < lo)
            or (hi is not None and v > hi)
        ):
            rng = (
                f"from {self.lo} to {self.hi}"
                if self.lo is not None and self.hi is not None
                else f">= {self.lo}"
                if self.lo is not None
                else f"<= {self.hi}"
                if self.hi is not None
                else ""
            )
            return f"must be {'None or ' if self.none_ok else ''}an int {rng}".rstrip() + (
                f" ({self.why})" if self.why else ""
            )
        return None


@dataclass(frozen=True)
class Number:
    """A real number with ``lo < v <= hi`` (``lo_open``) or ``lo <= v <= hi``."""

    lo: "float | None" = None
    hi: "float | None" = None
    lo_open: bool = False
    none_ok: bool = False

    def problem(self, v) -> "str | None":
        if v is None and self.none_ok:
            return None
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
        if ok and self.lo is not None:
            ok = v > self.lo if self.lo_open else v >= self.lo
        if ok and self.hi is not None:
            ok = v <= self.hi
        if not ok:
            lo = "" if self.lo is None else f"{'(' if self.lo_open else '['}{self.lo}, "
            hi = "" if self.hi is None else f"{self.hi}]"
            return f"must be {'None or ' if self.none_ok else ''}a number" + (
                f" in {lo}{hi}" if lo or hi else ""
            )
        return None


@dataclass(frozen=True)
class Choice:
    """One of ``options``."""

    options: tuple

    def problem(self, v) -> "str | None":
        return None if v in self.options else f"must be one of {', '.join(map(repr, self.options))}"


@dataclass(frozen=True)
class Paths:
    """A list of paths of existing files (the user's photos)."""

    def problem(self, v) -> "str | None":
        if not isinstance(v, (list, tuple)) or not all(
            isinstance(p, (str, os.PathLike)) for p in v
        ):
            return "must be a list of image paths, e.g. ['my_cat.jpg']"
        missing = [str(p) for p in v if not Path(p).is_file()]
        if missing:
            return (
                f"names files that do not exist: {', '.join(missing[:3])} (paths are relative "
                f"to the notebook's folder, {os.getcwd()})"
            )
        return None


@dataclass(frozen=True)
class Folder:
    """None or an existing folder."""

    def problem(self, v) -> "str | None":
        if v is None:
            return None
        if not isinstance(v, (str, os.PathLike)) or not Path(v).is_dir():
            return f"must be None or an existing folder of photos (relative to {os.getcwd()})"
        return None


def check_parameters(**params: "tuple[Any, Any]") -> None:
    """Check a notebook's parameters: ``name=(value, rule)`` with a rule :class:`Int`,
    :class:`Number`, :class:`Choice`, :class:`Paths` or :class:`Folder`. Raises ``ValueError``
    naming every bad parameter, what it must be and the value given."""
    problems = []
    for name, (value, rule) in params.items():
        p = rule.problem(value)
        if p:
            problems.append(f"{name} {p}, not {value!r}")
    if problems:
        raise ValueError("; ".join(problems) + " (set it in the parameters cell)")


def per_profile(value: Any, profile: "str | Profile", default: Any, **by_name: Any) -> Any:
    """``value`` unless it is None, else the profile's entry of ``by_name`` (else ``default``):
    e.g. ``per_profile(n_measure, P, 200, tiny=20)``."""
    if value is not None:
        return value
    return by_name.get(get_profile(profile).name, default)


# ---------------------------------------------------------------------------------------------
# The images a figure is drawn on
# ---------------------------------------------------------------------------------------------


@dataclass
class Examples:
    """Images for a figure: ``x`` (N, 3, S, S) normalised, ``images01`` for display, ``targets``
    (the true class, or the network's unoccluded prediction on photos), ``boxes`` (N, 4) object
    boxes or None, ``titles`` and ``names`` (file or sample names, ``test image i``),
    ``class_names``, and ``user`` (the names that are the user's own photos)."""

    x: torch.Tensor
    images01: torch.Tensor
    targets: list[int]
    boxes: "torch.Tensor | None"
    titles: list[str]
    names: list[str]
    class_names: list[str]
    user: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.targets)


def photo_examples(
    model: nn.Module,
    profile: "str | Profile",
    n: int,
    photos: Sequence = (),
    boxes: "str | None" = None,
) -> Examples:
    """The user's ``photos`` first (all of them), then scikit-image's sample photos up to ``n``
    (:func:`zfcore.data.images.photos_first`). No ground truth: the target is the network's
    prediction on the unaltered photo; ``boxes="centre"`` stands in the central half of each
    photo for the object's box (Fig. 5's rotation and scale centre), ``None`` gives no boxes."""
    from .data import denormalize
    from .data.images import photos_first

    P = get_profile(profile)
    batch = photos_first(list(photos), P, n)
    x = batch.images
    with torch.no_grad():
        targets = model.eval()(x).argmax(1).tolist()
    S = P.image_size
    b = (
        torch.tensor([[S / 4, S / 4, 3 * S / 4, 3 * S / 4]]).repeat(len(x), 1)
        if boxes == "centre"
        else None
    )
    user = list(batch.names[: len(photos)])
    titles = [
        f"your photo {n_}" if i < len(photos) else f"sample photo {n_}"
        for i, n_ in enumerate(batch.names)
    ]
    return Examples(
        x, denormalize(x, P), targets, b, titles, list(batch.names), class_names_for(model, P), user
    )


def scene_examples(
    model: nn.Module,
    profile: "str | Profile",
    n: int,
    split: str = "test",
    choose: str = "correct",
    pool: int = 200,
) -> Examples:
    """``n`` images of the first ``pool`` of a procedural ``split``, with ground truth.

    ``choose="correct"`` (Fig. 7): the first correctly classified image of each class, then (an
    untrained tiny model) any image of a new class. ``choose="room"`` (Fig. 5): images of
    distinct classes whose objects have the most room around them, the rotation-symmetric class
    first (:func:`zfcore.invariance.choose_examples`).
    """
    from .data import get_dataset, normalize

    P = get_profile(profile)
    ds = get_dataset(P, split)
    names = list(ds.classes)
    scenes = ds.scenes(list(range(min(len(ds), pool))))
    if choose == "correct":
        x_all = normalize(scenes.images, P)
        with torch.no_grad():
            pred = model.eval()(x_all).argmax(1)
        chosen: list[int] = []
        for want_correct in (True, False):
            for i in range(len(scenes)):
                c = int(scenes.labels[i])
                new_class = c not in {int(scenes.labels[j]) for j in chosen}
                if len(chosen) < n and new_class and (pred[i] == c or not want_correct):
                    chosen.append(i)
    elif choose == "room":
        from .invariance import ROTATION_SYMMETRIC_CLASSES, choose_examples

        symmetric = [names.index(c) for c in ROTATION_SYMMETRIC_CLASSES if c in names]
        chosen = [
            int(i)
            for i in choose_examples(
                scenes.labels, scenes.boxes, P.image_size, n, classes=symmetric
            )
        ]
    else:
        raise ValueError(f"choose must be 'correct' or 'room', not {choose!r}")
    images01 = scenes.images[chosen]
    titles = [f"{split} image {i}" for i in chosen]
    return Examples(
        normalize(images01, P),
        images01,
        [int(scenes.labels[i]) for i in chosen],
        scenes.boxes[chosen],
        titles,
        titles,
        names,
        [],
    )


def examples_for_profile(
    model: nn.Module,
    profile: "str | Profile",
    n: int,
    photos: Sequence = (),
    split: str = "test",
    choose: str = "correct",
    photo_boxes: "str | None" = None,
) -> Examples:
    """The images a figure is drawn on: the user's ``photos`` first, every one of them, then
    images of the profile filling up to ``n``: :func:`scene_examples` (with ground truth) on the
    procedural profiles, scikit-image's sample photos elsewhere (:func:`photo_examples`).
    ``boxes`` is a tensor when every image has one, else a list with ``None`` for the photos."""
    P = get_profile(profile)
    photos = list(photos)
    if P.dataset != "scenes":
        return photo_examples(model, P, n, photos, boxes=photo_boxes)
    fill = max(0, n - len(photos))
    parts = []
    if photos:
        parts.append(photo_examples(model, P, 0, photos, boxes=photo_boxes))
    if fill or not parts:
        parts.append(scene_examples(model, P, fill, split, choose))
    if len(parts) == 1:
        return parts[0]
    a, b = parts
    if a.boxes is not None and b.boxes is not None:
        boxes = torch.cat([a.boxes.to(b.boxes.dtype), b.boxes])
    else:
        boxes = [None] * len(a) + list(b.boxes)
    return Examples(
        torch.cat([a.x, b.x]),
        torch.cat([a.images01, b.images01]),
        a.targets + b.targets,
        boxes,
        a.titles + b.titles,
        a.names + b.names,
        b.class_names,
        a.user,
    )


def example_image(
    profile: "str | Profile", index: int = 0, split: str = "val"
) -> "tuple[torch.Tensor, torch.Tensor, str]":
    """One image to look at: ``(image01 (3, S, S), x (1, 3, S, S) normalised, caption)``; image
    ``index`` of the procedural ``split``, or scikit-image's sample photo ``index`` elsewhere."""
    from .data import denormalize, get_dataset, normalize

    P = get_profile(profile)
    if P.dataset == "scenes":
        ds = get_dataset(P, split)
        if not 0 <= index < len(ds):
            raise ValueError(f"image_index must be below {len(ds)} (the {split} split of {P.name})")
        scene = ds.scenes([index])
        return (
            scene.images[0],
            normalize(scene.images, P),
            f"{'validation' if split == 'val' else split} image {index}: "
            f"{ds.classes[int(scene.labels[0])]}",
        )
    from .data.images import SAMPLE_PHOTOS, sample_photos

    names = list(SAMPLE_PHOTOS)
    if not 0 <= index < len(names):
        raise ValueError(f"image_index must be below {len(names)} (sample photos {names})")
    x = sample_photos(P, [names[index]]).images
    return denormalize(x, P)[0], x, f"sample photo {names[index]!r}"


def first_images(
    profile: "str | Profile", n: int, split: str = "val"
) -> "tuple[torch.Tensor, torch.Tensor]":
    """``(x, images01)``: the first ``n`` images of a procedural ``split`` (fewer if it is
    smaller), or the first ``n`` of scikit-image's sample photos elsewhere, as normalised model
    inputs and in [0, 1] for display (e.g. the images of the sanity checks of notebook 13)."""
    from .data import denormalize, get_dataset

    P = get_profile(profile)
    if P.dataset == "scenes":
        ds = get_dataset(P, split)
        ids = list(range(min(n, len(ds))))
        return ds.images(ids)[0], ds.scenes(ids).images
    from .data.images import sample_photos

    x = sample_photos(P).images[:n]
    return x, denormalize(x, P)


# ---------------------------------------------------------------------------------------------
# An image set to mine (Fig. 2): a profile's split, or any folder of photos
# ---------------------------------------------------------------------------------------------


class PhotoFolder(torch.utils.data.Dataset):
    """A folder of photos as a ``Dataset`` of ``(normalised image, label)``, decoded on access,
    for top-9 mining (:func:`zfcore.mining.mine_topk`) and the explorer.

    Photos sorted into subfolders (``folder/<class>/*.jpg``, as ImageNet and Imagenette are) are
    labelled by their subfolder (``classes`` lists them); photos directly in ``folder`` have label
    ``-1`` (unknown). Files that are not images are listed in ``skipped``; ``names[i]`` is image
    ``i``'s path inside the folder."""

    def __init__(self, folder: "str | os.PathLike", profile: "str | Profile"):
        from .data.images import ImageLoadError, list_images

        self.profile = get_profile(profile)
        self.root = Path(folder)
        self.paths, self.skipped = list_images(folder, recursive=True)
        if not self.paths:
            raise ImageLoadError(self.root, "holds no image file", "add JPEG/PNG photos to it")
        rel = [p.relative_to(self.root) for p in self.paths]
        self.names = [str(r) for r in rel]
        self.classes = sorted({r.parts[0] for r in rel if len(r.parts) > 1})
        index = {c: i for i, c in enumerate(self.classes)}
        self._labels = torch.tensor(
            [index[r.parts[0]] if len(r.parts) > 1 else -1 for r in rel], dtype=torch.long
        )

    def __len__(self) -> int:
        return len(self.paths)

    def labels(self) -> torch.Tensor:
        """``(N,)`` class of each photo (its subfolder), ``-1`` where unknown."""
        return self._labels.clone()

    def __getitem__(self, i: int):
        from .data import load_image

        return load_image(self.paths[i], self.profile), int(self._labels[i])


class _Predicted(torch.utils.data.Dataset):
    """A data set whose label is the model's prediction on the unaltered image."""

    def __init__(self, base, model: nn.Module):
        self.base, self.model = base, model
        self.names = getattr(base, "names", None)

    def __len__(self) -> int:
        return len(self.base)

    @torch.no_grad()
    def __getitem__(self, i: int):
        x = self.base[i][0]
        return x, int(self.model.eval()(x[None]).argmax(1))


def image_set(
    profile: "str | Profile",
    split: str = "val",
    folder: "str | os.PathLike | None" = None,
    label_by: "nn.Module | None" = None,
):
    """The images to mine on ``profile``: ``folder`` (a :class:`PhotoFolder`) when given, else the
    profile's ``split`` (:func:`zfcore.data.get_dataset`; ImageNet's must be on disk for
    ``imagenet``: without it, pass a folder of your photos). ``label_by=model`` labels each photo
    of a folder with the model's prediction on it (what "correct class" means for a photo, as in
    Fig. 7 on photos) instead of its subfolder."""
    if folder is not None:
        ds = PhotoFolder(folder, profile)
        return ds if label_by is None else _Predicted(ds, label_by)
    from .data import get_dataset

    P = get_profile(profile)
    try:
        return get_dataset(P, split)
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"{e}\nOr look at a folder of your own photos instead: set photo_folder to its path."
        ) from None


def labels_of(images) -> torch.Tensor:
    """``(N,)`` the class of every image of a data set: its ``labels()`` where it has one (the
    procedural scenes, :class:`PhotoFolder`), else each item's label, read in order."""
    if hasattr(images, "labels"):
        return images.labels()
    return torch.tensor([int(images[i][1]) for i in range(len(images))])


def mine_images(
    model: nn.Module,
    profile: "str | Profile",
    images,
    n_images: "int | None" = None,
    k: int = 9,
    split: str = "val",
    layers: "Sequence[str] | None" = None,
):
    """Top-``k`` of every map of ``layers`` (default: layers 1-5; Fig. 2): over the profile's
    ``split`` (:func:`zfcore.mining.mine_dataset`, cached) or, for a :class:`PhotoFolder`, over its
    first ``n_images`` photos in one streaming pass."""
    from .mining import mine_dataset, mine_topk

    if not isinstance(images, (PhotoFolder, _Predicted)):
        return mine_dataset(model, profile, split=split, k=k, n_images=n_images, layers=layers)
    n = len(images) if n_images is None else min(int(n_images), len(images))
    if n < k:
        raise ValueError(f"the folder has {len(images)} photos; the top-{k} needs at least {k}")
    sub = images if n == len(images) else torch.utils.data.Subset(images, range(n))
    return mine_topk(model, sub, k=k, layers=layers, batch_size=16)
