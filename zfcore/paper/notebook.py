"""What a notebook's first cells use: the checks of its ``parameters`` cell and the images its
figures are drawn on.

* :func:`check_parameters` with :class:`Int`, :class:`Number`, :class:`Choice`, :class:`Paths`,
  :class:`Folder`: one line per parameter, each failure naming the parameter and what it accepts;
  :func:`per_profile`, a parameter's default per profile.
* :func:`examples_for_profile`, :func:`photo_examples`, :func:`scene_examples`,
  :func:`example_image`, :func:`first_images`: the images a figure is drawn on, the user's photos
  (``ZFCORE_PHOTOS`` or a folder parameter) always before the samples.
* :func:`image_set`, :func:`mine_images`, :func:`labels_of`: the image set a top-9 is mined
  from (the profile's validation scenes, or the user's folder with the network's predictions).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..data import DataNotFoundError, denormalize, get_dataset, normalize
from ..data.images import SAMPLE_PHOTOS, PhotoFolder, photos_first, sample_photos
from ..errors import ZFCoreError
from ..mining import mine_dataset, mine_topk
from ..models import eval_mode
from ..profiles import Profile, get_profile
from ..zoo import class_names_for
from .fig5_invariance import ROTATION_SYMMETRIC_CLASSES, choose_examples

__all__ = [
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
    "mine_images",
    "labels_of",
    "first_images",
    "ParameterError",
]


class ParameterError(ZFCoreError, ValueError):
    """A notebook parameter out of range, of the wrong type, or a folder that does not exist."""


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
        raise ParameterError("; ".join(problems) + " (set it in the parameters cell)")


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

    P = get_profile(profile)
    batch = photos_first(list(photos), P, n)
    x = batch.images
    with eval_mode(model), torch.no_grad():
        targets = model(x).argmax(1).tolist()
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
    first (:func:`zfcore.paper.fig5_invariance.choose_examples`).
    """

    P = get_profile(profile)
    ds = get_dataset(P, split)
    names = list(ds.classes)
    scenes = ds.scenes(list(range(min(len(ds), pool))))
    if choose == "correct":
        x_all = normalize(scenes.images, P)
        with eval_mode(model), torch.no_grad():
            pred = model(x_all).argmax(1)
        chosen: list[int] = []
        for want_correct in (True, False):
            for i in range(len(scenes)):
                c = int(scenes.labels[i])
                new_class = c not in {int(scenes.labels[j]) for j in chosen}
                if len(chosen) < n and new_class and (pred[i] == c or not want_correct):
                    chosen.append(i)
    elif choose == "room":
        symmetric = [names.index(c) for c in ROTATION_SYMMETRIC_CLASSES if c in names]
        chosen = [
            int(i)
            for i in choose_examples(
                scenes.labels, scenes.boxes, P.image_size, n, classes=symmetric
            )
        ]
    else:
        raise ParameterError(f"choose must be 'correct' or 'room', not {choose!r}")
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

    P = get_profile(profile)
    if P.dataset == "scenes":
        ds = get_dataset(P, split)
        if not 0 <= index < len(ds):
            raise ParameterError(
                f"image_index must be below {len(ds)} (the {split} split of {P.name})"
            )
        scene = ds.scenes([index])
        return (
            scene.images[0],
            normalize(scene.images, P),
            f"{'validation' if split == 'val' else split} image {index}: "
            f"{ds.classes[int(scene.labels[0])]}",
        )

    names = list(SAMPLE_PHOTOS)
    if not 0 <= index < len(names):
        raise ParameterError(f"image_index must be below {len(names)} (sample photos {names})")
    x = sample_photos(P, [names[index]]).images
    return denormalize(x, P)[0], x, f"sample photo {names[index]!r}"


def first_images(
    profile: "str | Profile", n: int, split: str = "val"
) -> "tuple[torch.Tensor, torch.Tensor]":
    """``(x, images01)``: the first ``n`` images of a procedural ``split`` (fewer if it is
    smaller), or the first ``n`` of scikit-image's sample photos elsewhere, as normalised model
    inputs and in [0, 1] for display (e.g. the images of the sanity checks of notebook 13)."""

    P = get_profile(profile)
    if P.dataset == "scenes":
        ds = get_dataset(P, split)
        ids = list(range(min(n, len(ds))))
        return ds.images(ids)[0], ds.scenes(ids).images

    x = sample_photos(P).images[:n]
    return x, denormalize(x, P)


# ---------------------------------------------------------------------------------------------
# An image set to mine (Fig. 2): a profile's split, or any folder of photos
# ---------------------------------------------------------------------------------------------


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
        with eval_mode(self.model):
            return x, int(self.model(x[None]).argmax(1))


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

    P = get_profile(profile)
    try:
        return get_dataset(P, split)
    except DataNotFoundError as e:
        raise DataNotFoundError(
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

    if not isinstance(images, (PhotoFolder, _Predicted)):
        return mine_dataset(model, profile, split=split, k=k, n_images=n_images, layers=layers)
    n = len(images) if n_images is None else min(int(n_images), len(images))
    if n < k:
        raise ParameterError(f"the folder has {len(images)} photos; the top-{k} needs at least {k}")
    sub = images if n == len(images) else torch.utils.data.Subset(images, range(n))
    return mine_topk(model, sub, k=k, layers=layers, batch_size=16)
