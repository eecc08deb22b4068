"""Section 4.3 of Zeiler & Fergus (2014): Fig. 8 and Table 1, correspondence analysis
(notebook 08).

"Deep models differ from many existing recognition approaches in that there is no explicit
mechanism for establishing correspondence between specific object parts in different images.
However, an intriguing possibility is that deep models might be implicitly computing them." The
paper occludes the same part (left eye, right eye, nose) in 5 dog images, and random regions of
the same size, and for each image ``i`` takes the difference ``eps_i = x_i - x~_i`` of its layer-l
feature vectors before and after occlusion. The consistency of a part is

    Delta_l = sum_{i != j} H(sign(eps_i), sign(eps_j)),

``H`` the Hamming distance: a lower score means the occlusion changed the representation the same
way in every image. Table 1 reports it for layers 5 and 7 (mean and spread): the parts score lower
than random regions at layer 5; at layer 7 the gap is small.

Here the images are the procedural face class, whose ground-truth keypoints (``left_eye``,
``right_eye``, ``nose``) place each part's square; random squares of the same size are drawn inside
the face's box. The spread is over random draws (``seeds``) of the image set and of the random
squares. :func:`consistency_score` is the paper's formula (``normalize=True`` divides by the
number of ordered pairs and features: the mean fraction of features whose sign change differs
between two images, comparable across layers and set sizes).

Notebook 08 reads its images from :func:`face_images` (the procedural faces, or the user's dog
photos with their annotated keypoints), reads Table 1's trend with
:meth:`CorrespondenceResult.trend` and checks the measure on a positive control
(:func:`positive_control`) before the per-part verdicts
(:meth:`PairwiseCorrespondence.part_verdicts`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..data import denormalize, get_dataset, load_folder, normalize
from ..errors import ZFCoreError
from ..features import layer_outputs
from ..models import in_eval_mode
from ..profiles import get_profile
from ..study import Result, cached_study
from .headline import Numbers
from .verdicts import Verdict, from_interval

__all__ = [
    "PARTS",
    "RANDOM",
    "CorrespondenceError",
    "hamming_matrix",
    "consistency_score",
    "part_squares",
    "random_squares",
    "apply_squares",
    "sign_differences",
    "CorrespondenceResult",
    "correspondence_scores",
    "face_scenes",
    "correspondence_split",
    "CORRESPONDENCE_VERSION",
    "photo_keypoints",
    "keypoint_boxes",
    "keypoint_sides",
    "squares_at",
    "background_swap",
    "PairwiseCorrespondence",
    "pairwise_correspondence",
    "pair_bootstrap",
    "KEYPOINT_FRACTION",
    "FaceImages",
    "check_photo_inputs",
    "face_images",
    "positive_control",
    "correspondence_sentence",
]

#: Side of the keypoint-sized occluder as a fraction of the smallest offset between two of the
#: image's keypoints (the larger of its horizontal and vertical components: axis-aligned squares
#: of a smaller side never overlap). On the procedural faces that offset is eye to nose, 0.38 of
#: the face's half-width, so the square (0.34) covers a whole eye (diameter 0.32) and most of
#: the nose (0.30 x 0.38), and the squares of two parts stay disjoint.
KEYPOINT_FRACTION = 0.9

#: Bump when what the correspondence analysis computes changes (part of every cache key).
CORRESPONDENCE_VERSION = 1

#: The face parts occluded in Fig. 8 / Table 1 (the data's keypoint names).
PARTS = ("left_eye", "right_eye", "nose")
#: The name of the random-region control in results.
RANDOM = "random"


class CorrespondenceError(ZFCoreError, ValueError):
    """Bad arguments to the correspondence analysis (missing keypoints, too few images, ...)."""


def hamming_matrix(signs: torch.Tensor) -> torch.Tensor:
    """``(n, n)`` Hamming distances between the rows of ``signs`` (values in {-1, 0, 1})."""
    s = signs.to(torch.int8)
    if s.dim() != 2:
        raise CorrespondenceError(f"signs must be (n_images, n_features), got {tuple(s.shape)}")
    equal = torch.zeros(s.shape[0], s.shape[0], dtype=torch.float64)
    for v in (-1, 0, 1):
        onehot = (s == v).double()
        equal += onehot @ onehot.T
    return s.shape[1] - equal


def consistency_score(signs: torch.Tensor, normalize: bool = False) -> float:
    """The paper's ``Delta = sum over ordered pairs i != j of H(sign_i, sign_j)``; with
    ``normalize`` divided by ``n (n - 1)`` pairs and the number of features."""
    n, d = signs.shape
    if n < 2:
        raise CorrespondenceError("a consistency score needs at least 2 images")
    total = float(hamming_matrix(signs).sum())  # the diagonal is zero
    return total / (n * (n - 1) * d) if normalize else total


def _square_from_centre(
    cx: torch.Tensor, cy: torch.Tensor, side: torch.Tensor, size: "tuple[int, int]"
) -> torch.Tensor:
    """Integer squares ``(N, 4)`` ``(x0, y0, x1, y1)`` of ``side`` pixels around centres,
    shifted to lie inside the image."""
    H, W = size
    side = side.round().long().clamp(1, min(H, W))
    x0 = (cx - side / 2).round().long()
    y0 = (cy - side / 2).round().long()
    x0 = torch.minimum(x0.clamp(min=0), W - side)
    y0 = torch.minimum(y0.clamp(min=0), H - side)
    return torch.stack([x0, y0, x0 + side, y0 + side], 1)


def _sides(boxes: torch.Tensor, square: float) -> torch.Tensor:
    b = boxes.double()
    return square * ((b[:, 2] - b[:, 0]).clamp(min=1) * (b[:, 3] - b[:, 1]).clamp(min=1)).sqrt()


def part_squares(
    keypoints: dict,
    boxes: torch.Tensor,
    size: "tuple[int, int]",
    square: float = 0.3,
    parts: Sequence[str] = PARTS,
) -> dict:
    """``{part: (N, 4)}`` squares centred on each part's keypoint, of side ``square`` times the
    face box's geometric-mean side (so the square covers the part at any scale)."""
    missing = [p for p in parts if p not in keypoints]
    if missing:
        raise CorrespondenceError(
            f"keypoints {missing} are missing: pass the face images' "
            f"keypoints (zfcore.data scenes of the 'face' class)"
        )
    boxes = torch.as_tensor(boxes).reshape(-1, 4)
    side = _sides(boxes, square)
    out = {}
    for p in parts:
        kp = torch.as_tensor(keypoints[p]).double().reshape(-1, 2)
        if kp.isnan().any():
            raise CorrespondenceError(f"some images have no {p!r} keypoint: use face images only")
        out[p] = _square_from_centre(kp[:, 0], kp[:, 1], side, size)
    return out


def random_squares(
    boxes: torch.Tensor,
    size: "tuple[int, int]",
    square: float = 0.3,
    generator: "torch.Generator | None" = None,
    sides: "torch.Tensor | None" = None,
) -> torch.Tensor:
    """``(N, 4)`` squares of the same side as :func:`part_squares` (or of ``sides`` pixels),
    centred uniformly at random inside each object box: random regions of the object (Table 1's
    control)."""
    b = torch.as_tensor(boxes).double().reshape(-1, 4)
    u = torch.rand(len(b), 2, generator=generator, dtype=torch.float64)
    cx = b[:, 0] + u[:, 0] * (b[:, 2] - b[:, 0])
    cy = b[:, 1] + u[:, 1] * (b[:, 3] - b[:, 1])
    side = (
        _sides(b, square)
        if sides is None
        else torch.as_tensor(sides, dtype=torch.float64).reshape(-1)
    )
    return _square_from_centre(cx, cy, side, size)


def keypoint_sides(
    keypoints: dict, parts: Sequence[str] = PARTS, fraction: float = KEYPOINT_FRACTION
) -> torch.Tensor:
    """``(N,)`` occluder sides in pixels sized from the parts' keypoints: ``fraction`` times the
    smallest offset between two of the image's keypoints, measured as the larger of its
    horizontal and vertical components (:data:`KEYPOINT_FRACTION`), so each square covers its
    part and no two parts' squares overlap."""
    if len(parts) < 2:
        raise CorrespondenceError("keypoint-sized squares need at least 2 parts")
    if not 0 < fraction <= 1:
        raise CorrespondenceError(f"fraction must be in (0, 1], not {fraction!r}")
    missing = [p for p in parts if p not in keypoints]
    if missing:
        raise CorrespondenceError(f"keypoints {missing} are missing")
    pts = torch.stack(
        [torch.as_tensor(keypoints[p], dtype=torch.float64).reshape(-1, 2) for p in parts], 1
    )
    if pts.isnan().any():
        raise CorrespondenceError("some images lack a keypoint: use face images only")
    d = (pts[:, :, None, :] - pts[:, None, :, :]).abs().amax(-1)  # Chebyshev offsets
    d = d + torch.diag(torch.full((len(parts),), float("inf"), dtype=torch.float64))
    return fraction * d.flatten(1).amin(1)


def squares_at(
    keypoints: dict, sides: torch.Tensor, size: "tuple[int, int]", parts: Sequence[str] = PARTS
) -> dict:
    """``{part: (N, 4)}`` squares of ``sides`` pixels centred on each part's keypoint."""
    side = torch.as_tensor(sides, dtype=torch.float64).reshape(-1)
    out = {}
    for p in parts:
        kp = torch.as_tensor(keypoints[p], dtype=torch.float64).reshape(-1, 2)
        if len(kp) != len(side):
            raise CorrespondenceError(f"{len(kp)} {p!r} keypoints but {len(side)} sides")
        out[p] = _square_from_centre(kp[:, 0], kp[:, 1], side, size)
    return out


def background_swap(base_image: torch.Tensor, base_box, backgrounds: torch.Tensor) -> torch.Tensor:
    """The positive control of the correspondence measure: ``(N, C, H, W)`` copies of
    ``backgrounds`` with the pixels inside ``base_box`` (``(x0, y0, x1, y1)``) replaced by those
    of ``base_image``: the same face, at the same place, in front of N different backgrounds.
    Occluding a part there must change the representation the same way in every image, far
    more consistently than a random square."""
    if base_image.dim() != 3 or backgrounds.dim() != 4 or backgrounds.shape[1:] != base_image.shape:
        raise CorrespondenceError(
            f"base_image (C, H, W) and backgrounds (N, C, H, W) must match, got "
            f"{tuple(base_image.shape)} and {tuple(backgrounds.shape)}"
        )
    H, W = base_image.shape[-2:]
    x0, y0, x1, y1 = torch.as_tensor(base_box, dtype=torch.float64).reshape(4).tolist()
    x0, y0 = max(0, int(round(x0))), max(0, int(round(y0)))
    x1, y1 = min(W, int(round(x1))), min(H, int(round(y1)))
    out = backgrounds.clone()
    out[:, :, y0:y1, x0:x1] = base_image[:, y0:y1, x0:x1]
    return out


@dataclass
class PairwiseCorrespondence:
    """Table 1's measure pair by pair over a whole pool of images: ``distances[f"{part}/{layer}"]``
    is the ``(N, N)`` matrix of normalised Hamming distances (fraction of features whose sign
    change differs) between the sign vectors of images ``i`` and ``j`` when ``part`` is occluded;
    ``random`` averages ``n_random`` draws of one random square per image. The mean over pairs
    ``i != j`` is the expected normalised consistency score of a random set of images.
    ``sides``: the occluders' sides in pixels."""

    layers: tuple
    parts: tuple
    distances: dict
    sides: torch.Tensor
    n_random: int

    def mean(self, part: str, layer: str) -> float:
        m = self.distances[f"{part}/{layer}"].double()
        n = m.shape[0]
        return float(m.sum() / (n * (n - 1)))

    def verdict(
        self, claim: str, part: str, layer: str, n_boot: int = 2000, seed: int = 0
    ) -> Verdict:
        """:func:`pair_bootstrap` of ``random - part`` at ``layer`` (``part`` may be ``"parts"``:
        the mean over the parts)."""
        if part == "parts":
            own = [p for p in self.parts if p != RANDOM]
            pm = sum(self.distances[f"{p}/{layer}"].double() for p in own) / len(own)
        else:
            pm = self.distances[f"{part}/{layer}"]
        return pair_bootstrap(
            claim, self.distances[f"{RANDOM}/{layer}"], pm, n_boot=n_boot, seed=seed
        )

    def parts_mean(self, layer: str) -> float:
        """The mean over :data:`PARTS` of :meth:`mean` at ``layer``."""
        return sum(self.mean(p, layer) for p in PARTS) / len(PARTS)

    def part_verdicts(self, layers: Sequence[str]) -> dict:
        """``{(layer, part): verdict}``: each part of :data:`PARTS` more consistent than random
        occlusion at each layer (Table 1's reading), claim
        ``<layer>_<part>_more_consistent_than_random``."""
        return {
            (l, p): self.verdict(f"{l}_{p}_more_consistent_than_random", p, l)
            for l in layers
            for p in PARTS
        }

    def control_verdicts(
        self, layers: Sequence[str], name: str = "positive_control"
    ) -> dict[str, Verdict]:
        """``{layer: verdict}``: the parts (their mean) more consistent than random occlusion at
        each layer, claim ``<name>_<layer>``; on :func:`positive_control`'s images the measure
        must find this."""
        return {l: self.verdict(f"{name}_{l}", "parts", l) for l in layers}

    def control_numbers(self, layers: Sequence[str], name: str = "positive_control") -> dict:
        """``<name>_<layer>_parts_distance`` (:meth:`parts_mean`) and
        ``<name>_<layer>_random_distance`` per layer."""
        out = {}
        for l in layers:
            out[f"{name}_{l}_parts_distance"] = self.parts_mean(l)
            out[f"{name}_{l}_random_distance"] = self.mean(RANDOM, l)
        return out

    def numbers(self, layers: Sequence[str]) -> dict:
        """The mean pair distances per layer: ``<layer>_random_pair_distance`` and
        ``<layer>_<part>_pair_distance``."""
        out = {}
        for l in layers:
            out[f"{l}_random_pair_distance"] = self.mean(RANDOM, l)
            out.update({f"{l}_{p}_pair_distance": self.mean(p, l) for p in PARTS})
        return out


def pair_bootstrap(
    claim: str, control: torch.Tensor, model: torch.Tensor, *, n_boot: int = 2000, seed: int = 0
) -> Verdict:
    """A verdict on ``mean_{i != j} control[i, j] - model[i, j]`` (pairwise matrices over the same
    N images) from a bootstrap over images: each resample draws N images with replacement and
    averages over the pairs of two different draws (an image is never paired with itself).
    Positive: ``model`` (a part) is more consistent than ``control`` (random squares), as
    Table 1 says. Seed variance is not included."""
    d = (torch.as_tensor(control).double() - torch.as_tensor(model).double()).numpy()
    n = d.shape[0]
    if d.shape != (n, n) or n < 3:
        raise CorrespondenceError(f"need two (N, N) matrices with N >= 3, got {d.shape}")
    effect = float((d.sum() - np.trace(d)) / (n * (n - 1)))
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        sub = d[np.ix_(idx, idx)]
        ok = idx[:, None] != idx[None, :]
        stats[b] = sub[ok].mean() if ok.any() else np.nan  # a resample of one image has no pair
    stats = stats[np.isfinite(stats)]
    low, high = np.quantile(stats, [0.025, 0.975])
    return from_interval(
        claim,
        effect,
        float(low),
        float(high),
        source=f"bootstrap over {n} images, pairs of distinct images ({n_boot} resamples; "
        f"seed variance not included)",
    )


@in_eval_mode
def pairwise_correspondence(
    model: nn.Module,
    images: torch.Tensor,
    keypoints: dict,
    boxes: torch.Tensor,
    *,
    layers: Sequence[str] = ("layer5", "layer7"),
    parts: Sequence[str] = PARTS,
    fraction: float = KEYPOINT_FRACTION,
    n_random: int = 5,
    seed: int = 0,
    fill: float = 0.0,
    batch_size: int = 64,
) -> PairwiseCorrespondence:
    """Table 1's sign-change distances for every pair of a pool of images (normalised model
    inputs with their ``keypoints`` and face ``boxes``); occluders sized from the keypoints
    (:func:`keypoint_sides`), random squares of the same side inside the face box."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or len(images) < 3:
        raise CorrespondenceError("images must be a (N, 3, H, W) tensor with N >= 3")
    if n_random < 1:
        raise CorrespondenceError(f"n_random must be >= 1, not {n_random}")
    N, _, H, W = images.shape
    layers, parts = tuple(layers), tuple(parts)
    sides = keypoint_sides(keypoints, parts, fraction)
    sq = squares_at(keypoints, sides, (H, W), parts)
    boxes = torch.as_tensor(boxes).reshape(-1, 4)
    dist = {}
    for p in parts:
        signs = sign_differences(
            model, images, apply_squares(images, sq[p], fill), layers, batch_size
        )
        for l in layers:
            dist[f"{p}/{l}"] = hamming_matrix(signs[l]) / signs[l].shape[1]
    g = torch.Generator().manual_seed(seed)
    for l in layers:
        dist[f"{RANDOM}/{l}"] = torch.zeros(N, N, dtype=torch.float64)
    for _ in range(n_random):
        rnd = random_squares(boxes, (H, W), generator=g, sides=sides)
        signs = sign_differences(
            model, images, apply_squares(images, rnd, fill), layers, batch_size
        )
        for l in layers:
            dist[f"{RANDOM}/{l}"] += hamming_matrix(signs[l]) / signs[l].shape[1] / n_random
    return PairwiseCorrespondence(
        layers=layers, parts=parts + (RANDOM,), distances=dist, sides=sides, n_random=n_random
    )


def apply_squares(images: torch.Tensor, squares: torch.Tensor, fill=0.0) -> torch.Tensor:
    """Copies of ``images`` (N, C, H, W) with ``squares[i]`` filled with ``fill``: a number (0:
    the data set's mean colour in the normalised input, the paper's grey) or one value per
    channel (to draw the same grey on images in [0, 1])."""
    out = images.clone()
    value = torch.as_tensor(fill, dtype=images.dtype).reshape(-1, 1, 1)
    for i, (x0, y0, x1, y1) in enumerate(squares.tolist()):
        out[i, :, y0:y1, x0:x1] = value
    return out


def _features(model: nn.Module, x: torch.Tensor, layers: Sequence[str], batch_size: int) -> dict:
    """Flattened feature vectors of ``layers`` for ``x``, ``batch_size`` images per pass."""
    store: dict = {l: [] for l in layers}
    with torch.inference_mode():
        for lo in range(0, len(x), batch_size):
            out = layer_outputs(model, x[lo : lo + batch_size], layers)
            for l in layers:
                store[l].append(out[l].flatten(1))
    return {l: torch.cat(v) for l, v in store.items()}


@in_eval_mode
def sign_differences(
    model: nn.Module,
    images: torch.Tensor,
    occluded: torch.Tensor,
    layers: Sequence[str] = ("layer5", "layer7"),
    batch_size: int = 64,
) -> dict:
    """``{layer: (N, D) int8}``: ``sign(x_i - x~_i)`` of each layer's feature vector, original
    minus occluded (the paper's ``eps_i``)."""
    a = _features(model, images, layers, batch_size)
    b = _features(model, occluded, layers, batch_size)
    return {l: torch.sign(a[l] - b[l]).to(torch.int8) for l in layers}


@dataclass
class CorrespondenceResult(Result):
    """Table 1 for one model: ``scores[f"{part}/{layer}"]`` holds the normalised consistency
    score (:func:`consistency_score`) of each seed's draw of ``n_images`` images."""

    layers: tuple
    parts: tuple
    scores: dict
    n_images: int
    n_pool: int
    square: float

    def mean(self, part: str, layer: str) -> float:
        return float(self.scores[f"{part}/{layer}"].double().mean())

    def std(self, part: str, layer: str) -> float:
        return float(self.scores[f"{part}/{layer}"].double().std())

    def gap_in_sd(self, part: str, layer: str) -> float:
        """How many standard deviations (of the random control) ``part`` scores below random."""
        sd = self.std(RANDOM, layer)
        return (self.mean(RANDOM, layer) - self.mean(part, layer)) / sd if sd > 0 else float("nan")

    def rows(self) -> list[dict]:
        """Table 1's rows: occlusion location, then mean and std per layer."""
        out = []
        for part in self.parts:
            row = {"occlusion": part}
            for l in self.layers:
                row[f"{l}_mean"] = self.mean(part, l)
                row[f"{l}_std"] = self.std(part, l)
            out.append(row)
        return out

    def table1_numbers(self) -> dict:
        """Table 1 as recorded numbers: ``table1_<occlusion>_<layer>_mean`` and ``..._std``."""
        return {
            f"table1_{row['occlusion']}_{k}": v
            for row in self.rows()
            for k, v in row.items()
            if k != "occlusion"
        }

    def gaps(self, layer: str) -> dict:
        """``{part: gap_in_sd(part, layer)}`` for the parts of :data:`PARTS`."""
        return {p: self.gap_in_sd(p, layer) for p in PARTS}

    def trend_numbers(self) -> dict:
        """``layer5_<part>_below_random_in_sd`` and ``layer7_...``: Table 1's gaps, recorded."""
        return {
            **{f"layer5_{p}_below_random_in_sd": g for p, g in self.gaps("layer5").items()},
            **{f"layer7_{p}_below_random_in_sd": g for p, g in self.gaps("layer7").items()},
        }

    def trend(self) -> str:
        """Table 1's trend read from this result: every part scores below random at layer 5, and
        the summed gap (in standard deviations of the random score) is smaller at layer 7.
        Returns "holds here", "holds in part here: ..." or "does not hold here: ..."."""
        g5, g7 = self.gaps("layer5"), self.gaps("layer7")
        if not all(self.mean(p, "layer5") < self.mean(RANDOM, "layer5") for p in PARTS):
            return "does not hold here: at layer 5 not every part scores below random occlusion"
        if sum(g7.values()) < sum(g5.values()):
            return "holds here"
        return (
            "holds in part here: the parts score below random at layer 5, but the gap at layer 7 "
            "is not smaller"
        )

    def settings_numbers(self) -> dict:
        """The study's settings as recorded numbers: ``n_images_per_set``, ``draws`` (seeds),
        ``face_pool`` and ``square_fraction``."""
        return {
            "n_images_per_set": self.n_images,
            "draws": int(next(iter(self.scores.values())).numel()),
            "face_pool": self.n_pool,
            "square_fraction": self.square,
        }

    def gaps_text(self) -> str:
        """The gaps of layers 5 and 7 as a printed sentence."""
        return (
            "Parts below random, in standard deviations of the random score (left eye, right eye, "
            "nose): layer 5: "
            + ", ".join(f"{g:+.1f}" for g in self.gaps("layer5").values())
            + "; layer 7: "
            + ", ".join(f"{g:+.1f}" for g in self.gaps("layer7").values())
            + " (negative: above random)."
        )


@in_eval_mode
def correspondence_scores(
    model: nn.Module,
    images: torch.Tensor,
    keypoints: dict,
    boxes: torch.Tensor,
    *,
    layers: Sequence[str] = ("layer5", "layer7"),
    parts: Sequence[str] = PARTS,
    n_images: int = 5,
    seeds: int = 20,
    square: float = 0.3,
    fill: float = 0.0,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = False,
) -> CorrespondenceResult:
    """Table 1: for each of ``seeds`` draws of ``n_images`` face images from ``images`` (the
    pool, normalised, with their ``keypoints`` and ``boxes``), the consistency score of
    occluding each part and of occluding a random region of the same size, at each layer."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise CorrespondenceError(
            f"images must be a (N, 3, H, W) tensor, got "
            f"{getattr(images, 'shape', type(images).__name__)}"
        )
    N, _, H, W = images.shape
    if not 2 <= n_images <= N:
        raise CorrespondenceError(
            f"n_images must be between 2 and the {N} images given, not {n_images}"
        )
    if seeds < 2:
        raise CorrespondenceError(f"need at least 2 seeds for a spread, not {seeds}")
    if not 0 < square <= 1:
        raise CorrespondenceError(f"square is a fraction of the face size in (0, 1], not {square}")
    boxes = torch.as_tensor(boxes).reshape(-1, 4)
    layers, parts = tuple(layers), tuple(parts)
    sq = part_squares(keypoints, boxes, (H, W), square, parts)
    signs = {
        p: sign_differences(model, images, apply_squares(images, sq[p], fill), layers, batch_size)
        for p in parts
    }
    g = torch.Generator().manual_seed(seed)
    scores = {
        f"{p}/{l}": torch.zeros(seeds, dtype=torch.float64)
        for p in parts + (RANDOM,)
        for l in layers
    }
    from tqdm.auto import tqdm

    for s in tqdm(range(seeds), desc="correspondence", disable=not progress, leave=False):
        pick = torch.randperm(N, generator=g)[:n_images]
        rnd = random_squares(boxes[pick], (H, W), square, g)
        rs = sign_differences(
            model, images[pick], apply_squares(images[pick], rnd, fill), layers, batch_size
        )
        for l in layers:
            for p in parts:
                scores[f"{p}/{l}"][s] = consistency_score(signs[p][l][pick], normalize=True)
            scores[f"{RANDOM}/{l}"][s] = consistency_score(rs[l], normalize=True)
    return CorrespondenceResult(
        layers=layers,
        parts=parts + (RANDOM,),
        scores=scores,
        n_images=n_images,
        n_pool=N,
        square=square,
    )


def correspondence_sentence(
    control: dict, found: dict, layers: Sequence[str] = ("layer5", "layer7")
) -> str:
    """Notebook 08's conclusion: does the measure detect correspondence on the positive control
    (``control``: :meth:`PairwiseCorrespondence.control_verdicts`), and is each part more
    consistent than random occlusion at each layer (``found``:
    :meth:`PairwiseCorrespondence.part_verdicts`)."""
    ok = all(v.verdict == "held" for v in control.values())
    parts = "; ".join(
        f"{l}: " + ", ".join(f"{p} {found[l, p].verdict}" for p in PARTS) for l in layers
    )
    return (
        f"The measure {'does' if ok else 'does NOT'} detect correspondence where it must "
        f"(positive control). Parts more consistent than random occlusion: {parts}."
    )


def face_scenes(profile, split: str = "test", n: "int | None" = None):
    """The first ``n`` (default: all) face images of a procedural split as a ``SceneBatch`` (images
    in [0, 1], boxes, keypoints ``left_eye``, ``right_eye``, ``nose``)."""
    P = get_profile(profile)
    ds = get_dataset(P, split)
    if not hasattr(ds, "scenes") or "face" not in getattr(ds, "classes", ()):
        raise CorrespondenceError(
            f"profile {P.name!r} has no procedural face images with keypoints "
            f"(use tiny or mini, or pass your own images and keypoints to "
            f"correspondence_scores)"
        )
    faces = (ds.labels() == ds.classes.index("face")).nonzero()[:, 0]
    if n is not None:
        faces = faces[: int(n)]
    return ds.scenes(faces.tolist())


def correspondence_split(
    model: nn.Module, profile, split: str = "test", n_pool: "int | None" = None, **options
) -> CorrespondenceResult:
    """:func:`correspondence_scores` on the face images of a procedural split (the first
    ``n_pool``), cached under ``<cache_dir>/correspondence/`` by a hash of the model's weights,
    the profile and the options."""
    P = get_profile(profile)
    sb = face_scenes(P, split, n_pool)
    progress = options.pop("progress", True)
    settings = dict(split=split, n_pool=len(sb), options=options)

    def build():
        return correspondence_scores(
            model, normalize(sb.images, P), sb.keypoints, sb.boxes, progress=progress, **options
        ).to_dict()

    return CorrespondenceResult.from_dict(
        cached_study("correspondence", CORRESPONDENCE_VERSION, model, P, settings, build)
    )


def photo_keypoints(points: dict, original_size: "tuple[int, int]", image_size: int) -> dict:
    """Keypoints ``{name: (x, y)}`` given in a photo's own pixels (``original_size`` = (width,
    height), after EXIF rotation) mapped to the network input that :func:`zfcore.data.load_image`
    makes of it: the centre square of side ``min(width, height)`` resized to ``image_size``."""
    w, h = (int(v) for v in original_size)
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    out = {}
    for name, xy in points.items():
        x, y = (float(v) for v in xy)
        out[name] = torch.tensor([(x - left) * image_size / side, (y - top) * image_size / side])
    return out


def keypoint_boxes(keypoints: dict, margin: float = 0.75) -> torch.Tensor:
    """``(N, 4)`` boxes around each image's keypoints, grown by ``margin`` times their extent on
    every side: a stand-in for the head's box when only the parts are annotated (photos)."""
    pts = torch.stack(
        [torch.as_tensor(v, dtype=torch.float64).reshape(-1, 2) for v in keypoints.values()], 1
    )  # (N, K, 2)
    lo, hi = pts.amin(1), pts.amax(1)
    ext = (hi - lo).amax(1, keepdim=True).clamp(min=1.0)
    return torch.cat([lo - margin * ext, hi + margin * ext], 1)


@dataclass
class FaceImages:
    """The images of Fig. 8 and Table 1: ``images01`` in [0, 1], ``x`` the model's normalised
    input, ``keypoints[part]`` ``(N, 2)`` pixel positions, ``boxes`` ``(N, 4)`` the faces' boxes."""

    images01: torch.Tensor
    x: torch.Tensor
    keypoints: dict
    boxes: torch.Tensor


def check_photo_inputs(profile, photos, keypoints_file) -> None:
    """A profile without procedural faces needs the user's dog photos and their keypoints."""
    P = get_profile(profile)
    if P.dataset != "scenes" and (photos is None or keypoints_file is None):
        raise CorrespondenceError(
            f"the {P.name} profile has no procedural faces: set dog_photos to a folder of "
            f"your dog photos and dog_keypoints to a JSON file mapping each file name to "
            f'{{"left_eye": [x, y], "right_eye": [x, y], "nose": [x, y]}} in the photo\'s pixels'
        )


def face_images(
    profile, pool: "int | None" = None, n_images: int = 5, photos=None, keypoints_file=None
) -> FaceImages:
    """The images section 4.3 occludes: on the procedural profiles the first ``pool`` (default:
    all) faces of the test split with their keypoints and boxes; elsewhere the photos of the
    folder ``photos`` that ``keypoints_file`` (JSON ``{"photo.jpg": {"left_eye": [x, y], ...}}``
    in the photos' pixels) annotates, at least ``n_images`` of them, boxed around their
    keypoints."""
    P = get_profile(profile)
    check_photo_inputs(P, photos, keypoints_file)
    if P.dataset == "scenes":
        faces = face_scenes(P, "test", pool)
        return FaceImages(faces.images, normalize(faces.images, P), faces.keypoints, faces.boxes)
    with open(keypoints_file) as f:
        notes = json.loads(f.read())
    batch = load_folder(photos, P)
    keep = [i for i, n in enumerate(batch.names) if n in notes]
    if len(keep) < n_images:
        raise CorrespondenceError(
            f"only {len(keep)} photos in {photos} have keypoints in {keypoints_file}; "
            f"need at least n_images = {n_images}"
        )
    x = batch.images[keep]
    mapped = [
        photo_keypoints(notes[batch.names[i]], batch.original_sizes[i], P.image_size) for i in keep
    ]
    keypoints = {p: torch.stack([m[p] for m in mapped]) for p in PARTS}
    return FaceImages(denormalize(x, P), x, keypoints, keypoint_boxes(keypoints))


def positive_control(
    model: nn.Module,
    images: torch.Tensor,
    keypoints: dict,
    boxes: torch.Tensor,
    layers: Sequence[str] = ("layer5", "layer7"),
    fraction: float = KEYPOINT_FRACTION,
) -> PairwiseCorrespondence:
    """A positive control of Table 1's measure: the first face pasted at the same place over the
    backgrounds of the other images (:func:`background_swap`), so that occluding the same part
    must change the representation the same way in every image; measured with
    :func:`pairwise_correspondence` and keypoint-sized occluders."""
    others = torch.arange(len(images)) != 0
    swapped = background_swap(images[0], boxes[0], images[others])

    def same(t):
        return t[:1].repeat(len(swapped), *[1] * (t.dim() - 1))

    return pairwise_correspondence(
        model,
        swapped,
        {p: same(keypoints[p]) for p in PARTS},
        same(boxes),
        layers=layers,
        fraction=fraction,
    )


SD_SUFFIX = "_below_random_in_sd"

#: The README's headlines (:mod:`zfcore.paper.readme`): the paper's claim and how the
#: numbers notebook 08_correspondence records read.
HEADLINES: list[tuple[str, Callable[[Numbers], str]]] = [
    (
        "Table 1: parts correspond at layer 5",
        lambda n: (
            "Hamming consistency, standard deviations below random (positive: the parts "
            "correspond), "
            + "; ".join(
                f"layer {l}: left eye {n.f(f'layer{l}_left_eye{SD_SUFFIX}', '+.2f')}, right eye "
                f"{n.f(f'layer{l}_right_eye{SD_SUFFIX}', '+.2f')}, nose "
                f"{n.f(f'layer{l}_nose{SD_SUFFIX}', '+.2f')}"
                for l in (5, 7)
            )
        ),
    ),
]
