"""Section 4.4 of Zeiler & Fergus (2014): Fig. 5, feature invariance (notebook 05).

"Fig. 5 shows 5 example images being translated, rotated and scaled by varying degrees while
looking at the changes in the feature vectors from the top and bottom layers of the model,
relative to the untransformed feature. Small transformations have a dramatic effect in the first
layer of the model, but a lesser impact at the top feature layer, being quasi-linear for
translation & scaling. The network output is stable to translations and scalings. In general, the
output is not invariant to rotation, except for object with rotational symmetry."

* :func:`invariance_curves` measures, for each step of a transform
  (:func:`zfcore.invariance.transform_scenes`, swept over :func:`default_amounts`), the Euclidean
  distance between the original and transformed feature vectors at chosen layers (layers 1 and 7
  in the paper) and p(true class); steps that push the object partly out of view are flagged
  (``in_view``) so the summaries keep the object in view, as the paper's translations do.
  :func:`invariance_split` runs it over a procedural split, cached.
* :func:`layer_growth` and :func:`mean_true_probability` turn the curves into the two measured
  claims: the layer-7 distance grows more slowly than the layer-1 distance (each normalised by its
  largest value), and p(true class) stays higher under translation and scaling than under
  rotation, except for rotation-symmetric classes (:data:`ROTATION_SYMMETRIC_CLASSES`);
  :func:`summarize` gives both per transform (:class:`InvarianceSummary`) and
  :func:`invariance_checks` decides them (:class:`InvarianceChecks`), bootstraps over images
  against the untrained network.
* :func:`choose_examples`: Fig. 5's example images, those whose objects have the most room.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..data import get_dataset, normalize
from ..invariance import (
    IDENTITY,
    TRANSFORMS,
    InvarianceError,
    check_images,
    check_transform,
    transform_scenes,
)
from ..models import capture_layers, in_eval_mode
from ..profiles import get_profile
from ..study import Result, cached_study
from . import verdicts
from .headline import Numbers

__all__ = [
    "ROTATION_SYMMETRIC_CLASSES",
    "InvarianceStudyError",
    "default_amounts",
    "InvarianceCurves",
    "invariance_curves",
    "layer_growth",
    "mean_true_probability",
    "per_class_true_probability",
    "choose_examples",
    "invariance_split",
    "INVARIANCE_VERSION",
    "per_image_growth",
    "per_image_true_probability",
    "class_mask",
    "InvarianceSummary",
    "summarize",
    "InvarianceChecks",
    "invariance_checks",
]

#: Bump when what the invariance analysis computes changes (part of every cache key).
INVARIANCE_VERSION = 2

#: Procedural classes whose object looks (almost) the same after any rotation: the clock is a disc
#: inside a ring; only its two short hands break the symmetry (the paper's example is the
#: entertainment centre).
ROTATION_SYMMETRIC_CLASSES = ("clock",)


class InvarianceStudyError(InvarianceError):
    """Bad arguments to Fig. 5's measurements (amounts, labels and boxes per image, a split
    without object boxes)."""


def default_amounts(kind: str, image_size: int) -> torch.Tensor:
    """Fig. 5's sweeps at our image size: vertical shifts of up to a quarter of the image in
    both directions, scale factors 0.7 to 1.5, and a full turn in 15-degree steps."""
    check_transform(kind)
    if kind == "translate_y":
        q = image_size // 4
        step = max(1, q // 7)
        return torch.arange(-q, q + 1, step, dtype=torch.float64)
    if kind == "scale":
        return torch.linspace(0.7, 1.5, 17, dtype=torch.float64)
    return torch.arange(0, 361, 15, dtype=torch.float64)


@dataclass
class InvarianceCurves(Result):
    """Fig. 5's curves for one transform: ``distances[layer]`` (N, S) is the Euclidean distance
    between the feature vectors of image ``n`` and of its transform by ``amounts[s]``;
    ``prob_true`` (N, S) is p(true class), ``top_class`` the prediction; ``in_view`` marks steps
    that keep the whole object in the image."""

    kind: str
    amounts: torch.Tensor
    labels: torch.Tensor
    distances: dict
    prob_true: torch.Tensor
    top_class: torch.Tensor
    in_view: torch.Tensor

    @property
    def identity_step(self) -> torch.Tensor:
        """Boolean (S,): the untransformed step(s)."""
        return (
            (self.amounts - IDENTITY[self.kind]).abs() < 1e-9
            if self.kind != "rotate"
            else (torch.remainder(self.amounts, 360.0).abs() < 1e-9)
        )

    def normalized(self, layer: str) -> torch.Tensor:
        """``distances[layer]`` divided by each image's largest in-view distance (NaN where the
        object left the view)."""
        d = self.distances[layer].double().masked_fill(~self.in_view, float("nan"))
        peak = torch.nan_to_num(d, nan=0.0).amax(1, keepdim=True).clamp(min=1e-12)
        return d / peak


def _layer_outputs(
    model: nn.Module, x: torch.Tensor, layers: Sequence[str]
) -> tuple[dict, torch.Tensor]:
    """Flattened feature vectors of ``layers`` and the model's output, from one forward pass."""
    with capture_layers(model, layers, transform=lambda _, o: o.flatten(1)) as store:
        logits = model(x)
    return store, logits


@torch.inference_mode()
@in_eval_mode
def invariance_curves(
    model: nn.Module,
    images: torch.Tensor,
    labels,
    boxes,
    *,
    kind: str,
    amounts: "Sequence[float] | torch.Tensor | None" = None,
    layers: Sequence[str] = ("layer1", "layer7"),
    batch_size: int = 64,
    progress: bool = False,
) -> InvarianceCurves:
    """Transform every image of ``images`` (N, 3, H, W, the model's normalised input) by each of
    ``amounts`` (default :func:`default_amounts`) and record the feature distances at ``layers``
    and p(true class). Fig. 5's measurement."""
    images = check_images(images)
    N, _, H, W = images.shape
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    boxes = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    if len(labels) != N or len(boxes) != N:
        raise InvarianceStudyError(
            f"need one label and one box per image: {N} images, "
            f"{len(labels)} labels, {len(boxes)} boxes"
        )
    check_transform(kind)
    amounts = (
        default_amounts(kind, H)
        if amounts is None
        else torch.as_tensor(amounts, dtype=torch.float64).reshape(-1)
    )
    if len(amounts) == 0:
        raise InvarianceStudyError("amounts is empty: give at least one transform step")
    layers = tuple(layers)
    S = len(amounts)
    dist = {l: torch.zeros(N, S) for l in layers}
    prob = torch.zeros(N, S)
    top = torch.zeros(N, S, dtype=torch.long)
    in_view = torch.zeros(N, S, dtype=torch.bool)
    from tqdm.auto import tqdm

    bar = tqdm(
        total=S * ((N + batch_size - 1) // batch_size),
        desc=f"invariance: {kind}",
        disable=not progress,
        leave=False,
    )
    for lo in range(0, N, batch_size):
        sl = slice(lo, min(N, lo + batch_size))
        ref, _ = _layer_outputs(model, images[sl], layers)
        for s, a in enumerate(amounts.tolist()):
            t = transform_scenes(images[sl], boxes[sl], kind=kind, amount=a)
            feats, logits = _layer_outputs(model, t.images, layers)
            for l in layers:
                dist[l][sl, s] = (feats[l] - ref[l]).norm(dim=1)
            p = torch.softmax(logits, 1)
            prob[sl, s] = p.gather(1, labels[sl, None])[:, 0]
            top[sl, s] = p.argmax(1)
            in_view[sl, s] = t.in_view
            bar.update(1)
    bar.close()
    return InvarianceCurves(
        kind=kind,
        amounts=amounts,
        labels=labels,
        distances=dist,
        prob_true=prob,
        top_class=top,
        in_view=in_view,
    )


def layer_growth(curves: InvarianceCurves, layer: str, mask: "torch.Tensor | None" = None) -> float:
    """How fast ``layer``'s distance grows: the mean of its normalised curve
    (:meth:`InvarianceCurves.normalized`) over the transformed, in-view steps. Near 1: the
    distance jumps to its maximum at the smallest transform (the paper's layer 1); small: it
    grows gradually (the paper's quasi-linear layer 7)."""
    d = curves.normalized(layer)[:, ~curves.identity_step]
    if mask is not None:
        d = d[mask]
    return float(torch.nanmean(d))


def mean_true_probability(curves: InvarianceCurves, mask: "torch.Tensor | None" = None) -> float:
    """Mean p(true class) over the transformed, in-view steps (and the images in ``mask``)."""
    keep = curves.in_view.clone()
    keep[:, curves.identity_step] = False
    if mask is not None:
        keep &= mask[:, None]
    if not keep.any():
        return float("nan")
    return float(curves.prob_true[keep].double().mean())


def per_image_growth(curves: InvarianceCurves, layer: str) -> torch.Tensor:
    """``(N,)`` float64: :func:`layer_growth` of each image on its own (the mean of its
    normalised curve over the transformed, in-view steps; NaN if none is in view). The unit of
    a bootstrap over images of Fig. 5's "layer 1 changes faster than layer 7"."""
    d = curves.normalized(layer)[:, ~curves.identity_step]
    return (
        torch.nanmean(d, dim=1)
        if d.shape[1]
        else torch.full((d.shape[0],), float("nan"), dtype=d.dtype)
    )


def per_image_true_probability(curves: InvarianceCurves) -> torch.Tensor:
    """``(N,)`` float64: each image's mean p(true class) over its transformed, in-view steps
    (NaN if none is in view); :func:`mean_true_probability` per image."""
    keep = curves.in_view.clone()
    keep[:, curves.identity_step] = False
    p = curves.prob_true.double().masked_fill(~keep, float("nan"))
    return torch.nanmean(p, dim=1)


def choose_examples(
    labels: torch.Tensor,
    boxes: torch.Tensor,
    image_size: int,
    n: int = 5,
    classes: "Sequence[int] | None" = None,
) -> torch.Tensor:
    """Indices of ``n`` images of distinct classes (``classes`` first, in order) whose objects
    have the most room around them, so Fig. 5's translations, scalings and rotations keep them in
    view: room is the distance from the circle around the object's ellipse to the image border."""
    labels = torch.as_tensor(labels).reshape(-1)
    b = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    radius = torch.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) / 2
    room = torch.stack([cx, cy, image_size - cx, image_size - cy], 1).amin(1) - radius
    order = list(classes or []) + [
        int(c) for c in labels.unique().tolist() if int(c) not in (classes or [])
    ]
    chosen = []
    for c in order:
        idx = (labels == c).nonzero()[:, 0]
        if len(idx):
            chosen.append(int(idx[room[idx].argmax()]))
        if len(chosen) == n:
            break
    return torch.tensor(chosen, dtype=torch.long)


def per_class_true_probability(curves: InvarianceCurves, n_classes: int) -> torch.Tensor:
    """``(n_classes,)`` mean p(true class) over each class's images and transformed, in-view
    steps (NaN for a class without images)."""
    out = torch.full((n_classes,), float("nan"), dtype=torch.float64)
    for c in range(n_classes):
        m = curves.labels == c
        if m.any():
            out[c] = mean_true_probability(curves, m)
    return out


def invariance_split(
    model: nn.Module,
    profile,
    split: str = "test",
    n: int = 100,
    *,
    kinds: Sequence[str] = TRANSFORMS,
    layers: Sequence[str] = ("layer1", "layer7"),
    batch_size: int = 50,
    progress: bool = True,
) -> dict:
    """``{kind: InvarianceCurves}`` over the first ``n`` images of a procedural split (classes
    cycle with the index, so any ``n`` is balanced), each transform swept over
    :func:`default_amounts`; cached under ``<cache_dir>/invariance/`` by a hash of the model's
    weights, the profile and the settings."""
    P = get_profile(profile)
    ds = get_dataset(P, split)
    if not hasattr(ds, "scenes"):
        raise InvarianceStudyError(
            f"profile {P.name!r} has no object boxes to centre the transforms "
            f"on: use invariance_curves on your own images and boxes"
        )
    if not 1 <= n <= len(ds):
        raise InvarianceStudyError(
            f"n must be between 1 and the {len(ds)} images of the {split} split"
        )
    for k in kinds:
        check_transform(k)
    settings = dict(split=split, n=n, kinds=list(kinds), layers=list(layers))

    def build():
        sb = ds.scenes(list(range(n)))
        x = normalize(sb.images, P)
        return {
            k: invariance_curves(
                model,
                x,
                sb.labels,
                sb.boxes,
                kind=k,
                layers=layers,
                batch_size=batch_size,
                progress=progress,
            ).to_dict()
            for k in kinds
        }

    got = cached_study("invariance", INVARIANCE_VERSION, model, P, settings, build)
    return {k: InvarianceCurves.from_dict(v) for k, v in got.items()}


# ---------------------------------------------------------------------------------------------
# Fig. 5's readings over many images, and their verdicts
# ---------------------------------------------------------------------------------------------


def class_mask(labels: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """``(N,)`` bool: which ``labels`` are one of ``classes`` (e.g. the rotation-symmetric ones)."""
    labels = torch.as_tensor(labels)
    mask = torch.zeros_like(labels, dtype=torch.bool)
    for c in classes:
        mask |= labels == c
    return mask


@dataclass
class InvarianceSummary:
    """Section 4.4's two readings of Fig. 5 over many images (:func:`summarize`): per transform
    (``rows``), the growth of the layer-1 and layer-7 distances (:func:`layer_growth`) and the mean
    p(true class) of the classes without and with rotational symmetry
    (:func:`mean_true_probability`); ``n_images`` measured."""

    rows: list
    n_images: int

    @property
    def by(self) -> dict:
        """The rows by transform."""
        return {r["transform"]: r for r in self.rows}

    def as_record(self) -> dict:
        """Flat JSON keys per transform (notebook 05)."""
        out = {}
        for r in self.rows:
            k = r["transform"]
            out.update(
                {
                    f"{k}_growth_layer1": r["growth_layer1"],
                    f"{k}_growth_layer7": r["growth_layer7"],
                    f"{k}_mean_p_true_asymmetric_classes": r["p_true_asymmetric"],
                    f"{k}_mean_p_true_symmetric_classes": r["p_true_symmetric"],
                }
            )
        return out

    def readings(self) -> dict:
        """Section 4.4's readings as JSON keys (notebook 05): ``layer7_grows_slower_for``
        (:meth:`layer7_slower`), ``measured_images`` and
        ``rotation_symmetric_minus_asymmetric_p_true`` (:meth:`symmetric_gap`)."""
        return {
            "layer7_grows_slower_for": self.layer7_slower(),
            "measured_images": self.n_images,
            "rotation_symmetric_minus_asymmetric_p_true": self.symmetric_gap(),
        }

    def layer7_slower(self) -> list:
        """The transforms under which layer 7's distance grows more slowly than layer 1's."""
        return [r["transform"] for r in self.rows if r["growth_layer7"] < r["growth_layer1"]]

    def symmetric_gap(self) -> float:
        """Mean p(true class) under rotation: rotation-symmetric classes minus the others."""
        rot = self.by["rotate"]
        return rot["p_true_symmetric"] - rot["p_true_asymmetric"]

    def table(self) -> str:
        """The rows as a text table."""
        lines = [
            f"{self.n_images} images; growth: mean of distance / its maximum over the "
            f"transformed steps",
            f"{'transform':12s} {'growth L1':>10s} {'growth L7':>10s} {'p(true) asym.':>14s} "
            f"{'p(true) sym.':>13s}",
        ]
        lines += [
            f"{r['transform']:12s} {r['growth_layer1']:10.3f} {r['growth_layer7']:10.3f} "
            f"{r['p_true_asymmetric']:14.3f} {r['p_true_symmetric']:13.3f}"
            for r in self.rows
        ]
        return "\n".join(lines)


def summarize(curves: dict, symmetric: torch.Tensor) -> InvarianceSummary:
    """:class:`InvarianceSummary` of ``{kind: InvarianceCurves}`` (one per transform of
    :data:`TRANSFORMS`); ``symmetric`` marks the images of rotation-symmetric classes."""
    rows = []
    for k in TRANSFORMS:
        rows.append(
            dict(
                transform=k,
                growth_layer1=layer_growth(curves[k], "layer1"),
                growth_layer7=layer_growth(curves[k], "layer7"),
                p_true_asymmetric=mean_true_probability(curves[k], ~symmetric),
                p_true_symmetric=(
                    mean_true_probability(curves[k], symmetric) if symmetric.any() else float("nan")
                ),
            )
        )
    return InvarianceSummary(rows, len(curves["rotate"].labels))


@dataclass
class InvarianceChecks:
    """The verdicts of :func:`invariance_checks`: ``growth[kind]`` (layer 1 faster than layer 7,
    then the same beyond the untrained network when a control was given), ``output`` (output
    more stable to translation, to scaling, than to rotation; then the rotation-symmetric class
    more stable under rotation, when measurable) and the control's ``numbers``."""

    numbers: dict
    growth: dict
    output: list

    @property
    def all(self) -> list:
        """Every verdict, growth first."""
        return [v for k in self.growth for v in self.growth[k]] + self.output

    def sentences(self, summary: InvarianceSummary) -> str:
        """The verdicts in two sentences, with the mean p(true class) of ``summary``."""
        by, out = summary.by, self.output
        growth = "; ".join(
            f"{k} {c[0].verdict}"
            + (f" (beyond the untrained network: {c[1].verdict})" if len(c) > 1 else "")
            for k, c in self.growth.items()
        )
        p = {k: by[k]["p_true_asymmetric"] for k in TRANSFORMS}
        symmetric = (
            f"; the rotation-symmetric class keeps p(true class) better under rotation than "
            f"the others: {out[2].verdict}."
            if len(out) > 2
            else "."
        )
        return (
            f"Layer 1's distance grows faster than layer 7's: {growth}.\n"
            f"The output is more stable to translation than to rotation: {out[0].verdict}; "
            f"to scaling than to rotation: {out[1].verdict} (mean p(true class) "
            f"{p['translate_y']:.2f}, {p['scale']:.2f}, {p['rotate']:.2f})" + symmetric
        )


def _finite(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def invariance_checks(
    curves: dict, symmetric: torch.Tensor, control: "dict | None" = None
) -> InvarianceChecks:
    """Section 4.4's claims as verdicts (:mod:`zfcore.paper.verdicts`), bootstraps over images.

    * "small transformations have a dramatic effect in the first layer ..., but a lesser impact
      at the top feature layer": per image, :func:`per_image_growth` of layer 1 minus layer 7
      against zero and, with ``control`` (the same ``{kind: InvarianceCurves}`` of the untrained
      network on the same images), against the control's gap (paired);
    * "the network output is stable to translations and scalings ... not invariant to
      rotation": per image of the classes without rotational symmetry, mean p(true class) under
      translation (scaling) minus under rotation (paired);
    * "except for object with rotational symmetry": under rotation, the ``symmetric`` images'
      mean p(true class) minus the others' (unpaired).

    With a ``control``, :attr:`InvarianceChecks.numbers` holds the untrained network's readings
    per transform: its growths, its mean per-image gap
    (``<kind>_growth_gap_layer1_minus_layer7_untrained``; the trained network's is the effect of
    ``layer1_faster_than_layer7_<kind>``) and its mean p(true class)."""
    numbers, growth = {}, {}
    for k in TRANSFORMS:
        gap = (
            per_image_growth(curves[k], "layer1") - per_image_growth(curves[k], "layer7")
        ).numpy()
        growth[k] = [verdicts.bootstrap(f"layer1_faster_than_layer7_{k}", gap[np.isfinite(gap)])]
        if control is not None:
            gap0 = (
                per_image_growth(control[k], "layer1") - per_image_growth(control[k], "layer7")
            ).numpy()
            numbers.update(
                {
                    f"{k}_growth_layer1_untrained": layer_growth(control[k], "layer1"),
                    f"{k}_growth_layer7_untrained": layer_growth(control[k], "layer7"),
                    f"{k}_growth_gap_layer1_minus_layer7_untrained": float(np.nanmean(gap0)),
                }
            )
            growth[k].append(
                verdicts.paired_bootstrap(
                    f"layer1_faster_than_layer7_{k}_vs_untrained", *_finite(gap, gap0)
                )
            )
    sym = symmetric.numpy()
    p_true = {k: per_image_true_probability(curves[k]).numpy()[~sym] for k in TRANSFORMS}
    output = [
        verdicts.paired_bootstrap(
            f"output_stable_{k}_vs_rotate", *_finite(p_true[k], p_true["rotate"])
        )
        for k in ("translate_y", "scale")
    ]
    p_rotate = per_image_true_probability(curves["rotate"]).numpy()
    sym_rot, asym_rot = p_rotate[sym], p_rotate[~sym]
    if min(np.isfinite(sym_rot).sum(), np.isfinite(asym_rot).sum()) >= 2:
        output.append(
            verdicts.unpaired_bootstrap(
                "rotation_symmetric_class_more_stable",
                sym_rot[np.isfinite(sym_rot)],
                asym_rot[np.isfinite(asym_rot)],
            )
        )
    if control is not None:
        numbers.update(
            {
                f"{k}_mean_p_true_asymmetric_classes_untrained": mean_true_probability(
                    control[k], ~symmetric
                )
                for k in TRANSFORMS
            }
        )
    return InvarianceChecks(numbers, growth, output)


#: The README's headlines (:mod:`zfcore.paper.readme`): the paper's claim and how the
#: numbers notebook 05_invariance records read.
HEADLINES: list[tuple[str, Callable[[Numbers], str]]] = [
    (
        "Fig. 5: layer 7 is more invariant than layer 1",
        lambda n: (
            "normalised distance growth, layer 1 / layer 7: "
            + ", ".join(
                f"{name} {n.f(f'{k}_growth_layer1')} / {n.f(f'{k}_growth_layer7')}"
                for name, k in (
                    ("translation", "translate_y"),
                    ("scale", "scale"),
                    ("rotation", "rotate"),
                )
            )
        ),
    ),
    (
        "Fig. 5: output invariant to translation and scale, not rotation, except symmetric objects",
        lambda n: (
            "mean p(true class): "
            + ", ".join(
                f"{name} {n.f(f'{k}_mean_p_true_asymmetric_classes')}"
                for name, k in (
                    ("translation", "translate_y"),
                    ("scale", "scale"),
                    ("rotation", "rotate"),
                )
            )
            + f"; rotation-symmetric classes keep {n.f('rotate_mean_p_true_symmetric_classes')} "
            "under rotation"
        ),
    ),
]
