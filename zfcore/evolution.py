"""Feature evolution during training, measured: how close each layer is to its final state.

Fig. 4 of Zeiler & Fergus (2014) shows, for a random subset of feature maps of layers 1-5, "the
strongest activation (across all training examples) within a given feature map" at epochs 1, 2,
5, 10, 20, 30, 40 and 64, projected to pixel space, and section 4.2 reads it: "the lower layers
of the model can be seen to converge within a few epochs. However, the upper layers only develop
after a considerable number of epochs (40-50)".

For every checkpoint of a training run (:func:`zfcore.train.training_run` keeps them) and every
layer, :func:`layer_convergence` measures how close the layer already is to its final state, two
ways:

* **weights** (:func:`weight_progress`): the share of the way from initialisation to the final
  weights the layer has travelled (``1 - |W - W_final| / |W_init - W_final|``);
* **top-k** (:func:`topk_overlap_per_map`): the share of each feature map's top-9 training images
  (mined with :func:`zfcore.mining.mine_topk`) that are also its top-9 at the end, i.e. whether
  the map already responds to what it will finally respond to.

A layer's (or a map's) **convergence epoch** (:func:`convergence_epoch`) is the first checkpoint
after which its similarity stays at or above a threshold. :func:`strongest_projections` projects
the strongest activation of chosen maps to pixel space with the deconvnet (one checkpoint's
column of Fig. 4). The study of Fig. 4 and its verdict are :mod:`zfcore.paper.fig4_evolution`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from .cache import cached
from .data import get_dataset
from .deconv import project
from .errors import ZFCoreError
from .mining import mine_topk, top_requests
from .receptive import crop_patch, receptive_field
from .study import Result
from .train import TrainRun, build_model, layer_parameters, rendered_split

__all__ = [
    "Convergence",
    "weight_progress",
    "topk_overlap",
    "topk_overlap_per_map",
    "convergence_epoch",
    "spearman",
    "layer_convergence",
    "training_images",
    "strongest_projections",
    "EvolutionError",
    "EVOLUTION_VERSION",
    "CONV_LAYERS",
]

#: Part of the cache keys of :func:`layer_convergence` and of Fig. 4's projections
#: (:func:`zfcore.paper.fig4_evolution.fig4_projections`): bumped when what they compute changes.
EVOLUTION_VERSION = 2
#: The convolutional layers whose maps are mined (Fig. 4 shows layers 1-5).
CONV_LAYERS = ("layer1", "layer2", "layer3", "layer4", "layer5")


class EvolutionError(ZFCoreError, ValueError):
    """Bad arguments to the evolution analysis (thresholds, layers, too few checkpoints)."""


# ---------------------------------------------------------------------------------------------
# The measurements
# ---------------------------------------------------------------------------------------------


def weight_progress(
    model: nn.Module, init: dict, state: dict, final: dict, layers: Sequence[str] | None = None
) -> dict[str, float]:
    """How far each layer's weights have come from initialisation towards their final values:
    ``1 - |W - W_final| / |W_init - W_final|`` (Frobenius norms of the layer's weight): 0 at
    initialisation, 1 at the end (negative if a checkpoint is further away than the start).
    ``model`` only supplies the layer addressing (:func:`zfcore.train.layer_parameters`)."""
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for layer, params in layer_parameters(model).items():
        if layer == "other" or (layers is not None and layer not in layers):
            continue
        w = names[id(params[0])]  # the weight (params are weight, bias)
        total = (init[w].double() - final[w].double()).norm()
        left = (state[w].double() - final[w].double()).norm()
        out[layer] = float(1 - left / total) if total > 0 else 1.0
    return out


def topk_overlap_per_map(images_a: torch.Tensor, images_b: torch.Tensor) -> torch.Tensor:
    """``(C,)``: per feature map, the share of map ``c``'s top-k images (rows of ``(C, k)``
    data-set indices; ``-1`` = unfilled) that are also in its top-k in ``images_b``."""
    a, b = torch.as_tensor(images_a), torch.as_tensor(images_b)
    if a.shape != b.shape or a.dim() != 2:
        raise EvolutionError(
            f"need two (maps, k) index tables of one shape, got {tuple(a.shape)} "
            f"and {tuple(b.shape)}"
        )
    hit = (a[:, :, None] == b[:, None, :]) & (a[:, :, None] >= 0)
    return hit.any(2).float().sum(1).div(a.shape[1])


def topk_overlap(images_a: torch.Tensor, images_b: torch.Tensor) -> float:
    """Mean over feature maps of :func:`topk_overlap_per_map`."""
    return float(topk_overlap_per_map(images_a, images_b).mean())


def convergence_epoch(epochs: Sequence[float], values: Sequence[float], threshold: float) -> float:
    """The first of ``epochs`` from which every later value is ``>= threshold`` (the last epoch
    if only the final one is; NaN if not even that)."""
    if len(epochs) != len(values) or not epochs:
        raise EvolutionError("need one value per epoch")
    first = math.nan
    for e, v in zip(reversed(list(epochs)), reversed(list(values))):
        if v >= threshold:
            first = float(e)
        else:
            break
    return first


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when a side is constant."""

    def ranks(v):
        v = torch.as_tensor(list(v), dtype=torch.float64)
        order = torch.argsort(v)
        r = torch.empty_like(v)
        r[order] = torch.arange(len(v), dtype=torch.float64)
        for u in torch.unique(v):  # ties share their mean rank
            m = v == u
            r[m] = r[m].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = float(rx.norm() * ry.norm())
    return float((rx * ry).sum()) / den if den > 0 else math.nan


# ---------------------------------------------------------------------------------------------
# Per-layer convergence of a training run
# ---------------------------------------------------------------------------------------------


@dataclass
class Convergence(Result):
    """Per-layer similarity to the final checkpoint at every checkpoint, and the convergence
    epoch of every layer (see the module docstring). ``*_similarity[layer][i]`` belongs to
    ``epochs[i]``; top-k values exist for the convolutional layers 1-5. The paper-side readings
    (the depth correlation, its verdict, the printed table, the recorded numbers) are
    :mod:`zfcore.paper.fig4_evolution`'s."""

    epochs: list[float]
    weight_similarity: dict[str, list[float]]
    topk_similarity: dict[str, list[float]]
    weight_threshold: float
    topk_threshold: float
    weight_converged: dict[str, float]
    topk_converged: dict[str, float]
    n_images: int
    k: int

    #: per layer, the convergence epoch of each map that fires at the final checkpoint
    map_converged: dict[str, list[float]] = field(default_factory=dict)
    #: per layer, how many maps fire at the final checkpoint (on the mined images), and how many
    #: the layer has
    alive_maps: dict[str, int] = field(default_factory=dict)
    total_maps: dict[str, int] = field(default_factory=dict)

    def spread(self, layer: str) -> tuple[float, float, float]:
        """Median and interquartile range (25 %, 75 %) of the layer's per-map convergence epochs."""
        v = torch.tensor(self.map_converged[layer], dtype=torch.float64)
        v = v[~v.isnan()]
        if len(v) == 0:
            return (math.nan, math.nan, math.nan)
        q = torch.quantile(v, torch.tensor([0.5, 0.25, 0.75], dtype=torch.float64))
        return tuple(float(x) for x in q)


def training_images(run: TrainRun, n_images: int) -> torch.Tensor:
    """The first ``n_images`` training images of the run's data (un-augmented, normalised)."""
    p = run.spec.profile
    memo = rendered_split(p, "train")
    idx = list(range(n_images))
    if memo is not None:
        return memo.batch(idx, 0, augment=False)[0]
    return get_dataset(p, "train").images(idx)[0]


def layer_convergence(
    run: TrainRun,
    n_images: int = 1000,
    k: int = 9,
    weight_threshold: float = 0.9,
    topk_threshold: float = 0.5,
    progress: bool = True,
    cache: bool = True,
) -> Convergence:
    """Measure per-layer convergence over ``run``'s checkpoints (cached by configuration).

    Top-k mining runs over the first ``n_images`` training images (the paper mines the whole
    training set; a subset keeps it to seconds per checkpoint here).
    """
    for name, t in (("weight_threshold", weight_threshold), ("topk_threshold", topk_threshold)):
        if not 0 < t <= 1:
            raise EvolutionError(f"{name} must be in (0, 1], got {t!r}")
    epochs = list(run.checkpoint_epochs)
    if len(epochs) < 2:
        raise EvolutionError(
            f"{run.directory} has {len(epochs)} checkpoint(s); per-layer "
            f"convergence needs at least two"
        )
    n_images = min(int(n_images), run.spec.profile.n_train)

    def build() -> dict:
        images = training_images(run, n_images)
        final_model = run.model(epochs[-1])
        final_state = final_model.state_dict()
        init_state = build_model(run.spec).state_dict()
        layers = [l for l in CONV_LAYERS if l in final_model.layer_names]
        tops = {}
        weight_sim: dict[str, list[float]] = {}
        for e in tqdm(epochs, desc="checkpoints", unit="ckpt", disable=not progress):
            model = run.model(e)
            for layer, v in weight_progress(
                model, init_state, model.state_dict(), final_state
            ).items():
                weight_sim.setdefault(layer, []).append(v)
            res = mine_topk(model, images, k=k, layers=layers, batch_size=250, progress=False)
            tops[e] = {l: res[l].images for l in layers}
        alive = {l: (res[l].values[:, 0] > 0).tolist() for l in layers}  # res: the final checkpoint
        per_map = {
            l: [topk_overlap_per_map(tops[e][l], tops[epochs[-1]][l]).tolist() for e in epochs]
            for l in layers
        }
        topk_sim = {
            l: [topk_overlap(tops[e][l], tops[epochs[-1]][l]) for e in epochs] for l in layers
        }
        return {
            "epochs": epochs,
            "weight_similarity": weight_sim,
            "topk_similarity": topk_sim,
            "topk_per_map": per_map,
            "alive": alive,
        }

    config = {
        "version": EVOLUTION_VERSION,
        "run": run.spec.key_config(),
        "epochs": epochs,
        "n_images": n_images,
        "k": k,
    }
    raw = cached(run.spec.profile.cache_dir, "evolution", config, build) if cache else build()
    ws, ts = raw["weight_similarity"], raw["topk_similarity"]
    map_conv = {
        l: [
            convergence_epoch(
                epochs, [raw["topk_per_map"][l][i][c] for i in range(len(epochs))], topk_threshold
            )
            for c, ok in enumerate(raw["alive"][l])
            if ok
        ]
        for l in ts
    }
    return Convergence(
        map_converged=map_conv,
        alive_maps={l: sum(v) for l, v in raw["alive"].items()},
        total_maps={l: len(v) for l, v in raw["alive"].items()},
        epochs=[float(e) for e in raw["epochs"]],
        weight_similarity=ws,
        topk_similarity=ts,
        weight_threshold=weight_threshold,
        topk_threshold=topk_threshold,
        weight_converged={l: convergence_epoch(epochs, v, weight_threshold) for l, v in ws.items()},
        topk_converged={l: convergence_epoch(epochs, v, topk_threshold) for l, v in ts.items()},
        n_images=n_images,
        k=k,
    )


def strongest_projections(
    model: nn.Module, images: torch.Tensor, maps: "dict[str, Sequence[int]]"
) -> dict:
    """For each ``layer: [maps]``, the strongest activation of each map over ``images`` projected
    to pixels with the deconvnet and cropped to the receptive field, with the image patch under
    it, its value and the image's index: ``{"projections": {layer: (M, 3, s, s)}, "patches":
    ..., "activations": {layer: (M,)}, "image_index": {layer: (M,)}}`` (Fig. 2 with k = 1,
    Fig. 4 at one checkpoint, Fig. 6 (d)-(e))."""
    layers = list(maps)
    res = mine_topk(model, images, k=1, layers=layers, batch_size=250, progress=False)
    out = {"projections": {}, "patches": {}, "activations": {}, "image_index": {}}
    for l in layers:
        chans = list(maps[l])
        rf = receptive_field(model, l)
        idx, req = top_requests(res, l, chans, ranks=[0])
        pix = project(model, images[idx], l, req).pixels
        lt = res[l]
        ys, xs, img = lt.ys[chans, 0], lt.xs[chans, 0], lt.images[chans, 0]
        out["projections"][l] = torch.stack(
            [crop_patch(pix[i], rf, ys[i], xs[i]) for i in range(len(chans))]
        )
        out["patches"][l] = torch.stack(
            [crop_patch(images[img[i]], rf, ys[i], xs[i]) for i in range(len(chans))]
        )
        out["activations"][l] = lt.values[chans, 0]
        out["image_index"][l] = img
    return out
