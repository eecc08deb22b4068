"""Feature evolution during training (Fig. 4) and per-layer convergence, measured.

Fig. 4 of Zeiler & Fergus (2014) shows, for a random subset of feature maps of layers 1-5, "the
strongest activation (across all training examples) within a given feature map" at epochs 1, 2,
5, 10, 20, 30, 40 and 64, projected to pixel space, and section 4.2 reads it: "the lower layers
of the model can be seen to converge within a few epochs. However, the upper layers only develop
after a considerable number of epochs (40-50)".

This module makes that reading a number. For every checkpoint of a training run
(:func:`zfcore.train.training_run` keeps them) and every layer it measures how close the layer
already is to its final state, two ways:

* **weights**: the share of the way from initialisation to the final weights the layer has
  travelled (``1 - |W - W_final| / |W_init - W_final|``);
* **top-k**: the mean share of each feature map's top-9 training images that are also its top-9
  at the end (mined with :func:`zfcore.mining.mine_topk`), i.e. whether the map already responds to
  what it will finally respond to.

A layer's **convergence epoch** is the first checkpoint after which its similarity stays at or
above a threshold; the paper's claim is that it grows with depth. :func:`fig4_projections` gives
the pixel-space projections of the strongest activation of chosen maps at every checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from .cache import cached
from .errors import ZFCoreError
from .health import low_frequency_share
from .study import Result
from .train import TrainRun, layer_parameters

__all__ = [
    "Convergence",
    "Fig4Projections",
    "weight_progress",
    "topk_overlap",
    "convergence_epoch",
    "spearman",
    "layer_convergence",
    "fig4_projections",
    "strongest_projections",
    "history_text",
    "run_numbers",
    "EvolutionError",
    "EVOLUTION_VERSION",
]

EVOLUTION_VERSION = 2  # 2: per-map convergence; Fig. 4 draws among maps that fire
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
    ``epochs[i]``; top-k values exist for the convolutional layers 1-5."""

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
    #: per layer, how many maps fire at the final checkpoint (on the mined images) and how many exist
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

    def depth_verdict(self, n_boot: int = 2000, seed: int = 0):
        """Fig. 4's claim as a verdict: the Spearman correlation of depth (layer 1-5) with the
        per-map convergence epoch over every firing map, with a 95 % bootstrap interval that
        resamples the maps within each layer (seed variance not included). Positive = deeper
        layers settle later, as the paper says."""
        from .paper.verdicts import from_interval

        layers = [l for l in self.map_converged if self.map_converged[l]]
        if len(layers) < 2:
            raise EvolutionError(
                "the depth verdict needs per-map convergence of at least two layers"
            )
        vals = {l: torch.tensor(self.map_converged[l], dtype=torch.float64) for l in layers}
        vals = {l: torch.nan_to_num(v, nan=float(self.epochs[-1]) * 2) for l, v in vals.items()}

        def rho(sample):
            depth = [int(l[len("layer") :]) for l in layers for _ in range(len(sample[l]))]
            return spearman(depth, torch.cat([sample[l] for l in layers]).tolist())

        g = torch.Generator().manual_seed(seed)
        boots = []
        for _ in range(n_boot):
            s = {l: v[torch.randint(len(v), (len(v),), generator=g)] for l, v in vals.items()}
            r = rho(s)
            boots.append(0.0 if math.isnan(r) else r)
        b = torch.tensor(boots, dtype=torch.float64)
        low, high = (
            float(x) for x in torch.quantile(b, torch.tensor([0.025, 0.975], dtype=torch.float64))
        )
        n = sum(len(v) for v in vals.values())
        return from_interval(
            "fig4_lower_layers_converge_first",
            rho(vals),
            low,
            high,
            source=f"bootstrap over {n} firing maps within their layers ({n_boot} resamples; "
            f"seed variance not included)",
        )

    def depth_correlation(self, which: str = "topk") -> float:
        """Spearman correlation of layer depth with convergence epoch (> 0: deeper = later)."""
        conv = self.topk_converged if which == "topk" else self.weight_converged
        layers = [l for l in conv if l.startswith("layer") and not math.isnan(conv[l])]
        depth = [int(l[len("layer") :]) for l in layers]
        return spearman(depth, [conv[l] for l in layers])

    def table_text(self) -> str:
        """Per layer: firing maps, the median and IQR of the per-map convergence epochs, and the
        layer-mean top-9 and weight convergence epochs, as printed text."""
        lines = [
            f"{'layer':8s} {'firing maps':>11s} {'median epoch':>12s} {'IQR':>13s} "
            f"{'layer mean top-9 at':>20s} {'weights at':>11s}"
        ]
        for l in self.map_converged:
            med, q1, q3 = self.spread(l)
            lines.append(
                f"{l:8s} {self.alive_maps[l]:5d}/{self.total_maps[l]:<5d} {med:12g} "
                f"{f'{q1:g}-{q3:g}':>13s} {self.topk_converged[l]:20g} {self.weight_converged[l]:11g}"
            )
        return "\n".join(lines)

    def numbers(self) -> dict:
        """The numbers notebook 04 records for Fig. 4's convergence reading: per layer the
        convergence epochs (top-9, weights, per-map median and IQR), the depth correlations, the
        thresholds and the number of mined images."""
        return {
            **{f"topk_converged_epoch_{l}": x for l, x in self.topk_converged.items()},
            **{f"weight_converged_epoch_{l}": x for l, x in self.weight_converged.items()},
            **{f"map_converged_epoch_median_{l}": self.spread(l)[0] for l in self.map_converged},
            **{
                f"map_converged_epoch_iqr_{l}": [self.spread(l)[1], self.spread(l)[2]]
                for l in self.map_converged
            },
            "convergence_depth_spearman_topk": self.depth_correlation("topk"),
            "convergence_depth_spearman_weights": self.depth_correlation("weights"),
            "topk_threshold": self.topk_threshold,
            "weight_threshold": self.weight_threshold,
            "mined_images": self.n_images,
        }


def history_text(run: TrainRun) -> str:
    """A training run per epoch as printed text (loss, running and eval-mode training error,
    validation top-1 and top-5 error, images/s; the paper reports the running error, section 3),
    the checkpoint epochs (Fig. 4's columns) and the dead-map share per layer at the end."""
    lines = [
        f"{'epoch':>5s} {'train loss':>10s} {'train err':>9s} {'train err (eval)':>16s} {'val err':>8s} "
        f"{'val top-5':>9s} {'img/s':>6s}"
    ]
    for h in run.history:
        lines.append(
            f"{h.epoch:5d} {h.train_loss:10.3f} {h.train_top1_error:8.1f}% {h.train_eval_top1_error:15.1f}% "
            f"{h.val_top1_error:7.1f}% {h.val_top5_error:8.1f}% {h.images_per_s:6.0f}"
        )
    lines.append(f"checkpoints kept at epochs {[f'{e:g}' for e in run.checkpoint_epochs]}")
    lines.append(
        "dead maps at the end: "
        + ", ".join(f"{l} {v:.0%}" for l, v in run.final.dead_share.items())
    )
    return "\n".join(lines)


def run_numbers(run: TrainRun) -> dict:
    """The numbers notebook 04 records for the main training run: final validation accuracy and
    top-5 error, eval-mode training error, training time (the training steps, and the per-epoch
    validation with its dead-map count), epochs, learning-rate drops, arithmetic, checkpoint
    epochs, the layer-1 filters' low-frequency share and the share of dead maps per layer at the
    end."""
    f = run.final
    return dict(
        final_val_accuracy=f.val_accuracy,
        final_val_top5_error=f.val_top5_error,
        final_train_eval_top1_error=f.train_eval_top1_error,
        training_seconds=run.train_seconds,
        training_minutes=run.train_seconds / 60,
        epochs=len(run.history),
        validation_seconds=sum(h.val_seconds for h in run.history),
        lr_drop_epochs=list(run.spec.profile.lr_drop_epochs),
        precision=run.spec.profile.precision,
        layer1_low_frequency_share=low_frequency_share(run.model()),
        checkpoint_epochs=run.checkpoint_epochs,
        **{f"dead_map_share_{l}": v for l, v in f.dead_share.items()},
    )


def _training_images(run: TrainRun, n_images: int) -> torch.Tensor:
    """The first ``n_images`` training images of the run's data (un-augmented, normalised)."""
    from .data import get_dataset
    from .train import rendered_split

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
        from .mining import mine_topk

        images = _training_images(run, n_images)
        final_model = run.model(epochs[-1])
        final_state = final_model.state_dict()
        from .train import build_model

        init_state = build_model(run.spec).state_dict()
        layers = [l for l in CONV_LAYERS if l in final_model.layer_names]
        tops = {}
        weight_sim: dict[str, list[float]] = {}
        it = epochs
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(epochs, desc="checkpoints", unit="ckpt")
        for e in it:
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


# ---------------------------------------------------------------------------------------------
# Fig. 4: the strongest activation of chosen maps at every checkpoint, projected to pixels
# ---------------------------------------------------------------------------------------------


@dataclass
class Fig4Projections(Result):
    """``projections[layer]``: ``(maps, checkpoints, 3, s, s)`` deconvnet projections of each
    chosen map's strongest activation over the mined images, cropped to the layer's receptive
    field; ``patches`` the image patches under them; ``maps[layer]`` the chosen map indices;
    ``activations[layer]`` ``(maps, checkpoints)`` the strongest activation's value."""

    epochs: list[float]
    maps: dict[str, list[int]]
    projections: dict[str, torch.Tensor]
    patches: dict[str, torch.Tensor]
    activations: dict[str, torch.Tensor]
    image_index: dict[str, torch.Tensor] = field(default_factory=dict)
    #: per layer, how many maps fire at the final checkpoint (the shown maps are drawn among
    #: them, at random) and how many the layer has
    alive: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)

    def alive_text(self) -> str:
        """How many maps of each layer fire at the final checkpoint, as a printed sentence."""
        return "maps that fire at the final checkpoint (on the mined images): " + ", ".join(
            f"{l} {self.alive[l]}/{self.total[l]}" for l in self.alive
        )

    def numbers(self) -> dict:
        """``fig4_firing_maps_<layer>``: the maps Fig. 4's rows are drawn among."""
        return {f"fig4_firing_maps_{l}": v for l, v in self.alive.items()}


def strongest_projections(
    model: nn.Module, images: torch.Tensor, maps: "dict[str, Sequence[int]]"
) -> dict:
    """For each ``layer: [maps]``, the strongest activation of each map over ``images`` projected
    to pixels with the deconvnet and cropped to the receptive field, with the image patch under
    it, its value and the image's index: ``{"projections": {layer: (M, 3, s, s)}, "patches":
    ..., "activations": {layer: (M,)}, "image_index": {layer: (M,)}}`` (Fig. 2 with k = 1,
    Fig. 4 at one checkpoint, Fig. 6 (d)-(e))."""
    from .deconv import project
    from .mining import mine_topk, top_requests
    from .receptive import crop_patch, receptive_field

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


def fig4_projections(
    run: TrainRun,
    maps_per_layer: int = 3,
    n_images: int = 1000,
    layers: Sequence[str] = CONV_LAYERS,
    seed: int = 0,
    progress: bool = True,
    cache: bool = True,
) -> Fig4Projections:
    """Fig. 4 for ``run``: for ``maps_per_layer`` feature maps of each layer drawn at random among
    those that fire at the final checkpoint (the same maps at every checkpoint), the strongest activation over the first ``n_images`` training images,
    projected to pixel space with the deconvnet (:func:`zfcore.deconv.project`) and cropped to
    the layer's receptive field (:func:`zfcore.receptive.crop_patch`)."""
    if maps_per_layer < 1:
        raise EvolutionError(f"maps_per_layer must be >= 1, got {maps_per_layer!r}")
    epochs = list(run.checkpoint_epochs)
    n_images = min(int(n_images), run.spec.profile.n_train)

    def build() -> dict:
        images = _training_images(run, n_images)
        final = run.model(epochs[-1])
        use = [l for l in layers if l in final.layer_names]
        from .mining import mine_topk

        g = torch.Generator().manual_seed(seed)
        top1 = mine_topk(final, images, k=1, layers=use, batch_size=250, progress=False)
        alive = {l: torch.nonzero(top1[l].values[:, 0] > 0).flatten() for l in use}
        if any(len(a) == 0 for a in alive.values()):
            raise EvolutionError(
                f"no map of {[l for l, a in alive.items() if not len(a)]} fires on the "
                f"{len(images)} mined images at the final checkpoint: the network is dead there"
            )
        maps = {
            l: sorted(a[torch.randperm(len(a), generator=g)[:maps_per_layer]].tolist())
            for l, a in alive.items()
        }
        per_epoch = []
        it = epochs
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(epochs, desc="Fig. 4 checkpoints", unit="ckpt")
        for e in it:
            per_epoch.append(strongest_projections(run.model(e), images, maps))
        out = {
            "epochs": epochs,
            "maps": maps,
            "alive": {l: len(a) for l, a in alive.items()},
            "total": {l: int(top1[l].values.shape[0]) for l in use},
        }
        for key in ("projections", "patches", "activations", "image_index"):
            out[key] = {l: torch.stack([r[key][l] for r in per_epoch], 1) for l in use}
        return out

    config = {
        "version": EVOLUTION_VERSION,
        "kind": "fig4",
        "run": run.spec.key_config(),
        "epochs": epochs,
        "n_images": n_images,
        "maps": maps_per_layer,
        "layers": list(layers),
        "seed": seed,
    }
    raw = cached(run.spec.profile.cache_dir, "evolution", config, build) if cache else build()
    return Fig4Projections(**raw)
