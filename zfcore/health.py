"""Is the network healthy? Dead feature maps per layer and the layer-1 filters' frequency content.

A feature map (a channel of a convolutional layer, or a unit of a fully connected one) *fires* on
an image when its rectified output is positive somewhere in that image. A map that fires on no
image of a representative set is *dead* (the package's one meaning of the word): it contributes
nothing to the layers above, gets no gradient, and draws a blank panel in Fig. 2 and Fig. 4 of
the paper. A map that fires on fewer than ``rare`` (1 %) of the images is *nearly dead*
(:meth:`DeadMaps.rare_share`). The first-layer maps whose mean response is far below the
others' are *weak* (:func:`zfcore.firstlayer.weak_maps`, the "dead" filters of the paper's
Fig. 6), a different measure. :func:`low_frequency_share` reads the layer-1 filters' spectrum
(learned edges and blobs against the random start).

:class:`FireCounter` accumulates, batch by batch, how many images each map fired on; the trainer
feeds it during validation (so every checkpoint of the training history carries
``dead_share_layer1..7``) and :func:`dead_maps` runs it over any image set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch
from torch import nn

from .errors import ZFCoreError
from .firstlayer import frequency_profile
from .models import (
    capture_layers,
    conv_layers,
    eval_mode,
    hidden_layers,
    layer_names,
    model_device,
)

__all__ = [
    "FireCounter",
    "DeadMaps",
    "dead_maps",
    "low_frequency_share",
    "HealthError",
    "network_layers",
]


class HealthError(ZFCoreError, ValueError):
    """A bad argument to the health measures (no images, unknown layer, bad threshold)."""


def network_layers(model: nn.Module) -> list[str]:
    """The rectified hidden layers of ``model`` (``layer1`` ... ``layer7``, those it has)."""
    return hidden_layers(model)


def _fired(output: torch.Tensor) -> torch.Tensor:
    """``(N, C)`` bool: did each map fire anywhere in each image (of an ``(N, C, H, W)`` or
    ``(N, C)`` layer output)."""
    if output.dim() == 4:
        output = output.amax(dim=(2, 3))
    elif output.dim() != 2:
        raise HealthError(
            f"expected a (N, C, H, W) or (N, C) layer output, got shape {tuple(output.shape)}"
        )
    return output > 0


@dataclass
class DeadMaps:
    """Per layer: maps, how many images each fired on, out of ``n_images``."""

    n_images: int
    fire_counts: dict[str, torch.Tensor] = field(default_factory=dict)
    rare: float = 0.01

    def dead_share(self, layer: str) -> float:
        """Share of the layer's maps that fired on no image."""
        c = self.fire_counts[layer]
        return float((c == 0).float().mean())

    def rare_share(self, layer: str) -> float:
        """Share of the layer's maps that fired on fewer than ``rare`` of the images: the nearly
        dead (dead included)."""
        c = self.fire_counts[layer]
        return float((c < self.rare * self.n_images).float().mean())

    def alive(self, layer: str) -> torch.Tensor:
        """Indices of the maps of ``layer`` that fired at least once."""
        return torch.nonzero(self.fire_counts[layer] > 0).flatten()

    def as_record(self, prefix: str = "") -> dict[str, float]:
        """``{dead_map_share_layer1: ..., rare_map_share_layer1: ..., ...}`` for a JSON report."""
        out: dict[str, float] = {}
        for k in self.fire_counts:
            out[f"{prefix}dead_map_share_{k}"] = self.dead_share(k)
            out[f"{prefix}rare_map_share_{k}"] = self.rare_share(k)
        return out

    def table(self) -> list[dict]:
        """One row per layer: maps, dead, nearly dead (for printing)."""
        return [
            {
                "layer": k,
                "maps": len(c),
                "dead": int((c == 0).sum()),
                "dead_share": self.dead_share(k),
                "rare_share": self.rare_share(k),
            }
            for k, c in self.fire_counts.items()
        ]


class FireCounter:
    """Counts, per layer and map, the images a map fired on, over any number of forward passes.

    >>> counter = FireCounter(model)                     # doctest: +SKIP
    >>> with counter.watch(model): model(x)              # doctest: +SKIP
    >>> counter.result().dead_share("layer2")            # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, layers: "Sequence[str] | None" = None, rare: float = 0.01):
        if not 0 <= rare < 1:
            raise HealthError(f"rare must be a share in [0, 1), not {rare!r}")
        known = network_layers(model)
        self.layers = list(layers) if layers is not None else known
        unknown = [k for k in self.layers if k not in layer_names(model)]
        if unknown:
            raise HealthError(f"unknown layer(s) {unknown}: this model has {known}")
        self.counts: dict[str, torch.Tensor] = {}
        self.n = 0
        self.rare = rare

    def _add(self, key: str, output: torch.Tensor) -> None:
        fired = _fired(output.detach()).sum(0).to(torch.int64)  # stays on the device
        self.counts[key] = self.counts.get(key, torch.zeros_like(fired)) + fired

    def watch(self, model: nn.Module):
        """A context manager: every forward pass inside it is counted."""
        counter = self

        class _Watch:
            def __enter__(self):
                self._cm = capture_layers(model, counter.layers, transform=self._record)
                self._cm.__enter__()
                return counter

            def _record(self, key, output):
                if key == counter.layers[0]:
                    counter.n += output.shape[0]
                counter._add(key, output)
                return None

            def __exit__(self, *exc):
                return self._cm.__exit__(*exc)

        return _Watch()

    def result(self) -> DeadMaps:
        if self.n == 0:
            raise HealthError("no images were counted: run forward passes inside watch()")
        return DeadMaps(
            self.n, {k: self.counts[k].cpu() for k in self.layers if k in self.counts}, self.rare
        )


@torch.no_grad()
def dead_maps(
    model: nn.Module,
    images: "torch.Tensor | Iterable",
    layers: "Sequence[str] | None" = None,
    rare: float = 0.01,
    batch_size: int = 256,
) -> DeadMaps:
    """Dead and nearly dead maps of ``model`` (eval mode, restored after) on ``images``.

    ``images`` is a normalised ``(N, 3, H, W)`` tensor or an iterable of such batches (or of
    ``(images, labels)``, e.g. a DataLoader), streamed batch by batch.
    """
    if isinstance(images, torch.Tensor):
        if images.dim() != 4 or len(images) == 0:
            raise HealthError(
                f"images must be a non-empty (N, 3, H, W) tensor, got shape {tuple(images.shape)}"
            )
        batches: Iterable = images.split(batch_size)
    else:
        batches = images
    counter = FireCounter(model, layers, rare)
    device = model_device(model)
    with eval_mode(model), counter.watch(model):
        for b in batches:
            x = b[0] if isinstance(b, (tuple, list)) else b
            model(x.to(device))
    return counter.result()


def low_frequency_share(model: nn.Module, cutoff: float = 0.25) -> float:
    """Share of the first layer's (mean-removed) filter power at radial spatial frequencies up to
    ``cutoff`` cycles per pixel. Learned layer-1 filters of the paper (Fig. 2, Fig. 6) are edges
    and colour blobs, mostly below 1/4 cycle per pixel; random noise filters put about 18 % there
    (a 7x7 filter's spectrum is spread evenly to 1/2)."""
    if not 0 < cutoff <= 0.5 * 2**0.5:
        raise HealthError(f"cutoff must be in (0, 0.707] cycles per pixel, not {cutoff!r}")
    prof = frequency_profile(conv_layers(model)[0], edges=(cutoff, cutoff))
    return prof["low"] + prof["mid"]
