"""Fig. 7 (section 4.2): occlusion sensitivity, and its claim measured by the pointing game.

Zeiler & Fergus ask whether the network "is truly identifying the location of the object in the
image, or just using the surrounding context", slide a grey square over the image and watch the
classifier (:func:`zfcore.occlusion.occlude` computes the maps). Notebook 07 shows Fig. 7's
panels and measures the claim:

* :func:`strongest_map_projections`: Fig. 7 (c), the followed layer-5 map's strongest activation
  projected to pixels with the deconvnet (section 2.1);
* :func:`example_numbers` / :func:`examples_text`: the numbers under Fig. 7's examples;
  :func:`photo_numbers` / :func:`photo_text` where photos have no object box;
* :func:`pointing_game` / :func:`pointing_game_split`: the share of images whose most damaging
  square lies inside the object's box (Zhang et al. 2016), against chance
  (:class:`PointingGameResult`, its record keys ``pointing_game_*``);
* :func:`pointing_verdicts`: the claim decided against chance and against the untrained network
  (:mod:`zfcore.paper.verdicts`), :func:`control_numbers` and :func:`claim_text` for what the
  notebook records and prints.

Points and boxes follow :mod:`zfcore.boxes` (half-open boxes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from ..boxes import inside_interval, points_in_boxes
from ..data import get_dataset, normalize
from ..deconv import layer_activations, project
from ..models import in_eval_mode, model_device
from ..occlusion import (
    OCCLUSION_VERSION,
    PRESETS,
    OcclusionError,
    default_window,
    occlude,
    preset_settings,
)
from ..profiles import get_profile
from ..receptive import receptive_field
from ..study import Result, cached_study
from .headline import Numbers
from .verdicts import Verdict, paired_bootstrap

__all__ = [
    "PointingGameError",
    "POINTING_TARGET",
    "PointingGameResult",
    "pointing_game",
    "pointing_game_split",
    "pointing_verdicts",
    "control_numbers",
    "claim_text",
    "strongest_map_projections",
    "example_numbers",
    "examples_text",
    "prob_drops",
    "photo_numbers",
    "photo_text",
]

#: The pointing game's target hit rate on ``mini`` (the share of test images whose most damaging
#: square lies on the object), recorded beside the measured one.
POINTING_TARGET = 0.8


class PointingGameError(OcclusionError):
    """Bad arguments to the pointing game (images, labels, boxes, split size, a profile without
    object boxes, an untrained network's game on other images)."""


@dataclass
class PointingGameResult(Result):
    """Localisation by occlusion over a set of images (Fig. 7's claim, measured).

    For each image, ``points`` is the centre ``(x, y)`` of the square that lowers p(correct class)
    the most and ``hits`` whether it falls inside the object's box (``boxes``, pixels).
    ``chance_box`` is the box's share of the image (a uniformly random point); ``chance_grid`` the
    share of square centres inside the box (a uniformly random square position). ``correct``
    marks images the model classifies correctly unoccluded.
    """

    points: torch.Tensor
    boxes: torch.Tensor
    hits: torch.Tensor
    chance_box: torch.Tensor
    chance_grid: torch.Tensor
    correct: torch.Tensor
    prob_drop: torch.Tensor
    window: int
    stride: int

    @property
    def hit_rate(self) -> float:
        """The share of images whose point lies inside the box."""
        return float(self.hits.double().mean())

    @property
    def chance_rate(self) -> float:
        """The share expected by chance: mean box area / image area."""
        return float(self.chance_box.double().mean())

    @property
    def chance_grid_rate(self) -> float:
        """The share expected from a random position of the square on its grid."""
        return float(self.chance_grid.double().mean())

    @property
    def hit_rate_correct(self) -> float:
        """Hit rate over the images the model classifies correctly (NaN if none)."""
        m = self.correct.bool()
        return float(self.hits[m].double().mean()) if m.any() else float("nan")

    def numbers(self) -> dict:
        """The numbers notebook 07 records for the pointing game (``pointing_game_*``): hit rates,
        both chance levels, the image count, window, stride and :data:`POINTING_TARGET`."""
        return dict(
            pointing_game_hit_rate=self.hit_rate,
            pointing_game_chance_box_area=self.chance_rate,
            pointing_game_chance_level=self.chance_grid_rate,  # the verdicts' chance
            pointing_game_hit_rate_correctly_classified=self.hit_rate_correct,
            pointing_game_images=len(self.hits),
            pointing_game_window_px=self.window,
            pointing_game_stride_px=self.stride,
            pointing_game_target=POINTING_TARGET,
        )

    def summary(self) -> str:
        """One sentence: the hit rate overall and on the correctly classified images, beside
        chance."""
        return (
            f"Pointing game over {len(self.hits)} test images: the most damaging square falls "
            f"inside the object's box in {100 * self.hit_rate:.0f} % of them "
            f"({100 * self.hit_rate_correct:.0f} % of the correctly classified); chance level "
            f"(a random position of the square on its grid): {100 * self.chance_grid_rate:.0f} % "
            f"(box area: {100 * self.chance_rate:.0f} %)."
        )


def pointing_game(
    model: nn.Module,
    images: torch.Tensor,
    labels,
    boxes,
    *,
    window: int = 16,
    stride: int = 4,
    fill="mean",
    batch_size: int = 128,
    incremental: bool = True,
    progress: bool = True,
    mode: str = "exact",
) -> PointingGameResult:
    """The pointing game (Zhang et al. 2016) for occlusion maps: over ``images`` (N, 3, H, W,
    normalised), the share whose most damaging square for p(``labels[i]``) has its centre inside
    ``boxes[i]`` (``(x0, y0, x1, y1)`` pixels), against chance (box area / image area).
    Each image is occluded on the model's device (:func:`zfcore.occlusion.occlude`, ``mode`` as
    there)."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise PointingGameError(
            f"images must be a (N, 3, H, W) tensor, got "
            f"{getattr(images, 'shape', type(images).__name__)}"
        )
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    boxes = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    N, _, H, W = images.shape
    if len(labels) != N or len(boxes) != N:
        raise PointingGameError(
            f"need one label and one box per image: got {N} images, "
            f"{len(labels)} labels, {len(boxes)} boxes"
        )
    points = torch.empty(N, 2, dtype=torch.float64)
    hits = torch.empty(N, dtype=torch.bool)
    chance_grid = torch.empty(N, dtype=torch.float64)
    correct = torch.empty(N, dtype=torch.bool)
    drop = torch.empty(N, dtype=torch.float64)
    for i in tqdm(range(N), desc="pointing game", disable=not progress, leave=False):
        res = occlude(
            model,
            images[i],
            int(labels[i]),
            window=window,
            stride=stride,
            fill=fill,
            batch_size=batch_size,
            incremental=incremental,
            mode=mode,
        )
        x, y = res.most_damaging()
        x0, y0, x1, y1 = boxes[i].tolist()
        points[i] = torch.tensor([x, y])
        hits[i] = bool(points_in_boxes(points[i : i + 1], boxes[i : i + 1])[0])
        cy, cx = res.centres
        inside_y = inside_interval(cy, y0, y1).double().mean()
        inside_x = inside_interval(cx, x0, x1).double().mean()
        chance_grid[i] = inside_x * inside_y
        correct[i] = res.clean_top_class == int(labels[i])
        drop[i] = res.prob_target_clean - float(res.prob_target.min())
    area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    return PointingGameResult(
        points=points,
        boxes=boxes,
        hits=hits,
        chance_box=area / (H * W),
        chance_grid=chance_grid,
        correct=correct,
        prob_drop=drop,
        window=window,
        stride=stride,
    )


def pointing_game_split(
    model: nn.Module,
    profile,
    split: str = "test",
    n: "int | None" = None,
    *,
    window: "int | None" = None,
    stride: "int | None" = None,
    fill="mean",
    batch_size: int = 128,
    chunk: int = 64,
    progress: bool = True,
    mode: str = "exact",
) -> PointingGameResult:
    """:func:`pointing_game` over the first ``n`` images (default: all) of a procedural split,
    rendered ``chunk`` at a time, cached under ``<cache_dir>/pointing_game/`` by a hash of the
    model's weights, the profile and the settings. The images go to the model's device a chunk
    at a time; ``window``/``stride`` default to :func:`zfcore.occlusion.default_window`;
    ``mode`` as in :func:`zfcore.occlusion.occlude` (committed figures use ``"exact"``)."""
    P = get_profile(profile)
    ds = get_dataset(P, split)
    if not hasattr(ds, "scenes"):
        raise PointingGameError(
            f"the pointing game needs object boxes; profile {P.name!r} has real "
            f"photos without them (use the tiny or mini profile)"
        )
    n = len(ds) if n is None else int(n)
    if not 1 <= n <= len(ds):
        raise PointingGameError(
            f"n must be between 1 and the {len(ds)} images of the {split} split"
        )
    dw, ds_ = default_window(P.image_size)
    window, stride = window or dw, stride or ds_
    settings = dict(split=split, n=n, window=window, stride=stride, fill=fill)
    preset_settings(mode)  # a bad mode fails before any work
    if mode != "exact":  # the exact game's key has no mode
        settings["mode"] = mode
        settings["preset"] = PRESETS[mode]  # what the mode meant when cached

    def build():
        parts = []
        for lo in tqdm(range(0, n, chunk), desc="pointing game", disable=not progress):
            sb = ds.scenes(list(range(lo, min(n, lo + chunk))))
            images = normalize(sb.images, P).to(model_device(model))
            parts.append(
                pointing_game(
                    model,
                    images,
                    sb.labels,
                    sb.boxes,
                    window=window,
                    stride=stride,
                    fill=fill,
                    batch_size=batch_size,
                    progress=False,
                    mode=mode,
                )
            )
        return {
            k: (torch.cat([getattr(r, k) for r in parts]) if isinstance(v, torch.Tensor) else v)
            for k, v in parts[0].to_dict().items()
        }

    return PointingGameResult.from_dict(
        cached_study("pointing_game", OCCLUSION_VERSION, model, P, settings, build)
    )


def pointing_verdicts(result: PointingGameResult, untrained: PointingGameResult) -> list[Verdict]:
    """Fig. 7's claim that the network localises the object rather than using context, decided
    twice from the per-image hits (paired bootstraps over the images, percentage points; seed
    variance not included): against chance (the share of the square's grid positions inside
    the box, per image) and against the untrained network of the same layout on the same images."""
    if len(untrained.hits) != len(result.hits):
        raise PointingGameError(
            f"the untrained network's pointing game needs the same {len(result.hits)} images, "
            f"got {len(untrained.hits)}"
        )
    hits = result.hits.double().numpy()
    return [
        paired_bootstrap(
            "pointing_game_above_chance", hits, result.chance_grid.numpy(), scale=100, unit="pp"
        ),
        paired_bootstrap(
            "pointing_game_above_untrained",
            hits,
            untrained.hits.double().numpy(),
            scale=100,
            unit="pp",
        ),
    ]


def control_numbers(result: PointingGameResult, untrained: PointingGameResult) -> dict:
    """What notebook 07 records beside the verdicts: the untrained network's hit rate (the
    chance level they use is :meth:`PointingGameResult.numbers`' ``pointing_game_chance_level``)."""
    return dict(pointing_game_hit_rate_untrained=untrained.hit_rate)


def claim_text(
    result: PointingGameResult, untrained: PointingGameResult, verdicts: list[Verdict]
) -> str:
    """The sentence under the verdicts: hit rate against chance and the untrained network, and
    whether Fig. 7's claim held against each (``verdicts`` from :func:`pointing_verdicts`)."""
    above_chance, above_untrained = verdicts
    return (
        f"The most damaging square hits the object in {100 * result.hit_rate:.0f} % of "
        f"{len(result.hits)} images, against {100 * result.chance_grid_rate:.0f} % by chance and "
        f"{100 * untrained.hit_rate:.0f} % for the untrained network: the paper's claim that the "
        f"trained model localises the object rather than using context {above_chance.verdict} "
        f"against chance and {above_untrained.verdict} against the untrained network here."
    )


@in_eval_mode
def strongest_map_projections(model: nn.Module, x: torch.Tensor, results, layer: str = "layer5"):
    """Fig. 7 (c): for each image ``x[i]`` and its :class:`~zfcore.occlusion.OcclusionResult`,
    the strongest activation (in the unoccluded image) of the map the result follows, projected
    to pixels with the deconvnet (section 2.1). Returns ``(pixels (N, 3, H, W), boxes)``,
    ``boxes[i]`` the receptive field ``(x0, y0, x1, y1)`` of that activation."""
    acts = layer_activations(model, x, [layer])[layer]
    field = receptive_field(model, layer)
    req, fields = [], []
    for i, res in enumerate(results):
        fmap = acts[i, res.feature]
        y, xx = divmod(int(fmap.argmax()), fmap.shape[1])
        req.append((i, res.feature, y, xx))
        fields.append(field.box(y, xx, tuple(x.shape[-2:])))
    return project(model, x, layer, req).pixels, fields


def example_numbers(results) -> dict:
    """Per Fig. 7 example: p(correct class) unoccluded and at worst, the layer-5 map followed and
    the share of its total activation the worst square removes."""
    return dict(
        example_prob_correct_unoccluded=[r.prob_target_clean for r in results],
        example_prob_correct_min=[float(r.prob_target.min()) for r in results],
        example_layer5_feature=[r.feature for r in results],
        example_layer5_total_drop_fraction=[
            1 - float(r.feature_total.min()) / max(r.feature_total_clean, 1e-9) for r in results
        ],
    )


def examples_text(titles, results) -> str:
    """One printed line per Fig. 7 example: p(correct) unoccluded and at worst, the layer-5 map's
    total activation unoccluded and at least."""
    return "\n".join(
        f"{t}: p(correct) {res.prob_target_clean:.3f} unoccluded, "
        f"{float(res.prob_target.min()):.3f} at worst; layer-5 map {res.feature}: total "
        f"{res.feature_total_clean:.1f} unoccluded, {float(res.feature_total.min()):.1f} at least"
        for t, res in zip(titles, results)
    )


def prob_drops(results) -> list[float]:
    """Per result, how much the worst square lowers p(target): unoccluded minus minimum."""
    return [r.prob_target_clean - float(r.prob_target.min()) for r in results]


def photo_numbers(results) -> dict:
    """What notebook 07 records on photos without object boxes (no pointing game): each
    example's :func:`prob_drops`."""
    return dict(example_prob_correct_drop=prob_drops(results))


def photo_text(profile_name: str, results) -> str:
    """The sentence printed instead of the pointing game on photos without object boxes."""
    drops = prob_drops(results)
    return (
        f"No object boxes on the {profile_name} profile, so no pointing game; on these photos "
        f"the square lowers p(predicted class) by {min(drops):.2f} to {max(drops):.2f} at its "
        f"worst position."
    )


#: The README's headlines (:mod:`zfcore.paper.readme`): the paper's claim and how the
#: numbers notebook 07_occlusion records read.
HEADLINES: list[tuple[str, Callable[[Numbers], str]]] = [
    (
        "Fig. 7: the model localises the object",
        lambda n: (
            "occlusion minimum of p(correct) inside the object box in "
            f"{n.pct('pointing_game_hit_rate', 1)} "
            f"of {n.f('pointing_game_images', 'd')} test images (chance "
            f"{n.pct('pointing_game_chance_level', 1)}; the "
            f"untrained network {n.pct('pointing_game_hit_rate_untrained', 1)})"
        ),
    ),
]
