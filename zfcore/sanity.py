"""Sanity checks for the deconvnet: cascading model-parameter randomisation.

Adebayo et al., "Sanity checks for saliency maps" (NeurIPS 2018), ask whether a visualisation
depends on what the network learned: re-initialise the weights layer by layer from the top
(``logits``, then ``layer7``, ``layer6``, ..., ``layer1``, cumulatively: "cascading") and measure
how similar the projections of the same images stay. A method whose pictures survive the
destruction of the layers above the input explains the input more than the model. They found
guided backpropagation nearly invariant and the plain gradient sensitive; Zeiler & Fergus's
deconvnet (section 2.1) shares guided backpropagation's rectification of the backward signal.

Here the projected unit is the logit of the class the *trained* model predicts for each image,
started from 1 (``scale="unit"``), for the three rules of :mod:`zfcore.deconv`; similarity to the
trained model's projection is measured on per-pixel maps (channels summed) by Spearman rank
correlation, with and without absolute values, and by SSIM (scikit-image) on the absolute maps
scaled to [0, 1]. A reference level of similarity is given by projections of *different* images
under the trained model (``baseline_*``): similarity at that level means "unrelated".
Re-initialisation uses PyTorch's default initialisation (``reset_parameters``) with a fixed seed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .deconv import RULES, project, requests
from .errors import ZFCoreError
from .models import in_eval_mode, layer_names
from .study import Result

__all__ = [
    "SanityResult",
    "randomization_stages",
    "randomize_top_down",
    "cascading_randomization",
    "spearman_rows",
    "ssim_rows",
    "pixel_maps",
    "SanityError",
]


class SanityError(ZFCoreError, ValueError):
    """Bad arguments to the randomisation checks."""


@dataclass
class SanityResult(Result):
    """Similarity of projections to the trained model's, as layers are randomised top-down.

    ``stages``: ``["trained", "logits", "layer7", ..., "layer1"]`` (stage ``s`` has every layer
    from the top down to ``stages[s]`` re-initialised); ``rules``; ``spearman_abs``,
    ``spearman``, ``ssim``: ``(rules, stages, images)``; ``baseline_*``: ``(rules,)`` the same
    similarity between projections of different images of the trained model; ``maps``:
    ``(rules, stages, show, H, W)`` absolute per-pixel projections of the first images (for
    drawing); ``images``: those images, normalised model inputs; ``targets``: the projected class
    per image.
    """

    stages: list
    rules: list
    spearman_abs: torch.Tensor
    spearman: torch.Tensor
    ssim: torch.Tensor
    baseline_spearman_abs: torch.Tensor
    baseline_spearman: torch.Tensor
    baseline_ssim: torch.Tensor
    maps: torch.Tensor
    images: torch.Tensor
    targets: torch.Tensor
    #: ``{metric: (rules, images)}``: the baseline per image (image ``i`` against image ``i - 1``)
    baseline_rows: dict | None = None

    def change_toward_unrelated(
        self, rule: str, stage: str = "layer6", metric: str = "spearman_abs"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per image, ``(midpoint, similarity)``: the midpoint ``(1 + b_i) / 2`` between identical
        (1) and the different-images level ``b_i`` of image ``i``, and the similarity of its
        projection after re-initialising the layers from the top down to ``stage`` to the
        trained one. ``midpoint - similarity > 0``: the picture changed more than halfway to an
        unrelated one, i.e. it depends on the learned layers (the premise of section 2.1)."""
        if self.baseline_rows is None:
            raise SanityError(
                "this result has no per-image baseline: recompute it with cascading_randomization"
            )
        if rule not in self.rules or stage not in self.stages or metric not in self.baseline_rows:
            raise SanityError(
                f"rule {rule!r}, stage {stage!r} or metric {metric!r} unknown: rules "
                f"{self.rules}, stages {self.stages}, metrics {list(self.baseline_rows)}"
            )
        r, s = self.rules.index(rule), self.stages.index(stage)
        base = self.baseline_rows[metric][r].double().numpy()
        sim = getattr(self, metric)[r, s].double().numpy()
        return (1 + base) / 2, sim


def _weighted_module(model: nn.Module, layer: str) -> nn.Module:
    """The convolution or fully connected module whose output ``layer`` rectifies."""
    target = layer_names(model)[layer]
    last = None
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            last = m
        if name == target:
            if last is None:
                raise SanityError(f"no weighted layer before {layer}")
            return last
    raise SanityError(f"{layer} ({target}) is not a module of the model")


def randomization_stages(model: nn.Module) -> list[str]:
    """The model's layers from the top down: ``logits``, ``layer7``, ..., ``layer1``."""
    names = layer_names(model)
    order = [n for n, _ in model.named_modules()]
    return sorted(names, key=lambda k: order.index(names[k]), reverse=True)


def randomize_top_down(model: nn.Module, down_to: str, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every layer from the top down to ``down_to`` (inclusive)
    re-initialised by ``reset_parameters`` (cascading randomisation); the rest keeps its weights."""
    stages = randomization_stages(model)
    if down_to not in stages:
        raise SanityError(f"unknown layer {down_to!r}: choose one of {', '.join(stages)}")
    m = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for layer in stages[: stages.index(down_to) + 1]:
            _weighted_module(m, layer).reset_parameters()
    return m.eval()


def _ranks(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(a, axis=1)


def spearman_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation (ties get average ranks) between rows of ``a`` and ``b``
    ``(N, ...)``, flattened; a constant row gives 0."""
    a = a.reshape(a.shape[0], -1).double().numpy()
    b = b.reshape(b.shape[0], -1).double().numpy()
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    num = (ra * rb).sum(1)
    return torch.from_numpy(np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)).float()


def ssim_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Structural similarity (scikit-image) between ``(N, H, W)`` maps, each scaled to [0, 1] by
    its maximum absolute value."""
    from skimage.metrics import structural_similarity

    def unit(m):
        m = m.abs().double()
        mx = m.flatten(1).amax(1).clamp_min(1e-30).view(-1, 1, 1)
        return (m / mx).numpy()

    ua, ub = unit(a), unit(b)
    win = min(7, ua.shape[-1] - (1 - ua.shape[-1] % 2), ua.shape[-2] - (1 - ua.shape[-2] % 2))
    return torch.tensor(
        [structural_similarity(x, y, data_range=1.0, win_size=win) for x, y in zip(ua, ub)],
        dtype=torch.float32,
    )


def pixel_maps(pixels: torch.Tensor, absolute: bool = True) -> torch.Tensor:
    """``(N, H, W)`` per-pixel maps of projections ``(N, C, H, W)``: channels summed (of the
    absolute values when ``absolute``), as Adebayo et al. do."""
    return pixels.abs().sum(1) if absolute else pixels.sum(1)


@in_eval_mode
def cascading_randomization(
    model: nn.Module,
    images: torch.Tensor,
    targets=None,
    rules=RULES,
    seed: int = 0,
    show: int = 3,
    progress: bool = True,
) -> SanityResult:
    """Cascading randomisation (Adebayo et al. 2018) of ``model`` on ``images`` (normalised
    ``(N, C, H, W)``, N >= 2). ``targets``: the logit projected per image (default: the trained
    model's predicted class). See the module docstring; returns a :class:`SanityResult`."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[0] < 2:
        raise SanityError(
            "images must be a (N, C, H, W) tensor with N >= 2 (the baseline pairs different images)"
        )
    rules = list(rules)
    for r in rules:
        if r not in RULES:
            raise SanityError(f"unknown rule {r!r}: choose from {', '.join(RULES)}")
    n = images.shape[0]
    if targets is None:
        with torch.no_grad():
            targets = model(images).argmax(1)
    targets = torch.as_tensor(targets, dtype=torch.long).reshape(-1)
    if targets.numel() != n:
        raise SanityError(f"{n} images but {targets.numel()} targets")
    stages = ["trained"] + randomization_stages(model)
    req = requests(torch.arange(n), targets)
    show = min(show, n)
    shape = (len(rules), len(stages), n)
    sp_abs, sp, ss = torch.zeros(shape), torch.zeros(shape), torch.zeros(shape)
    maps = torch.zeros(len(rules), len(stages), show, *images.shape[-2:])
    it = list(enumerate(stages))
    if progress:
        it = tqdm(it, desc="cascading randomisation", unit="stage")
    base = {}
    for s, stage in it:
        net = model if stage == "trained" else randomize_top_down(model, stage, seed)
        for r, rule in enumerate(rules):
            px = project(net, images, "logits", req, rule=rule, scale="unit").pixels
            if stage == "trained":
                base[rule] = px
            ref = base[rule]
            sp_abs[r, s] = spearman_rows(pixel_maps(ref), pixel_maps(px))
            sp[r, s] = spearman_rows(pixel_maps(ref, False), pixel_maps(px, False))
            ss[r, s] = ssim_rows(pixel_maps(ref), pixel_maps(px))
            maps[r, s] = pixel_maps(px[:show])
    perm = torch.roll(torch.arange(n), 1)  # pair each image with a different one
    rows = {
        "spearman_abs": torch.stack(
            [spearman_rows(pixel_maps(base[r]), pixel_maps(base[r][perm])) for r in rules]
        ),
        "spearman": torch.stack(
            [
                spearman_rows(pixel_maps(base[r], False), pixel_maps(base[r][perm], False))
                for r in rules
            ]
        ),
        "ssim": torch.stack(
            [ssim_rows(pixel_maps(base[r]), pixel_maps(base[r][perm])) for r in rules]
        ),
    }
    return SanityResult(
        stages,
        rules,
        sp_abs,
        sp,
        ss,
        rows["spearman_abs"].mean(1),
        rows["spearman"].mean(1),
        rows["ssim"].mean(1),
        maps,
        images[:show].clone(),
        targets,
        rows,
    )
