"""One verb for every way of explaining a network's output in pixels: :func:`attribute`.

Zeiler & Fergus explain a unit in two ways: project its activation down to pixels with the
deconvnet (section 2.1, Fig. 1) and watch its response while a grey square hides part of the
image (section 4.2, Fig. 7). The literature added the gradient (Simonyan et al. 2014) and guided
backpropagation (Springenberg et al. 2015), which differ from the deconvnet only in how a ReLU
passes the signal down. Comparing them should not need adapters, so, as Captum's ``attribute``
does, every method here takes the same arguments and returns the same shape::

    from zfcore import attribute
    maps = attribute(model, images, target=None, method="guided")    # (N, C, H, W)

``target`` is a class of ``layer="logits"`` (default: the predicted class) or a feature map of a
hidden layer (``layer="layer5"``; default: each image's strongest map). The projections start
from the target's whole map (:func:`zfcore.deconv.project`); occlusion spreads the drop of the
target's output over the pixels each square covered, in Captum's ``Occlusion`` convention
(:func:`zfcore.occlusion.pixel_attribution`: p(class) for logits, the map's summed activation
for a hidden layer), the same in every channel. Every method runs the model in eval mode and
gives it back in the mode it had.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .deconv import RULES, project, requests
from .errors import ZFCoreError
from .models import eval_mode, forward_layers, layer_key, model_device
from .occlusion import default_window, occlude, pixel_attribution

__all__ = ["METHODS", "AttributionError", "attribute", "default_targets"]

#: The deconvnet and its two relatives (their ReLU rule), and occlusion.
METHODS: tuple[str, ...] = RULES + ("occlusion",)
_PROJECT_OPTIONS = {"scale", "batch_size", "method"}
_OCCLUDE_OPTIONS = {
    "window",
    "stride",
    "fill",
    "batch_size",
    "mode",
    "truncate",
    "coarse",
    "refine",
    "tol",
    "precision",
    "incremental",
}


class AttributionError(ZFCoreError, ValueError):
    """A bad argument to :func:`attribute` (method, images, target or option)."""


def _check_images(images) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or len(images) == 0:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise AttributionError(
            f"images must be a non-empty (N, C, H, W) tensor of normalised "
            f"model inputs, got {shape}; add a batch axis with images[None]"
        )
    return images


@torch.no_grad()
def default_targets(model: nn.Module, images: torch.Tensor, layer: str = "logits") -> torch.Tensor:
    """Each image's predicted class (``layer="logits"``) or strongest feature map (its largest
    activation anywhere in the map), as an ``(N,)`` long tensor."""
    key = layer_key(layer, model)
    with eval_mode(model):
        out = forward_layers(model, images.to(model_device(model)), [key])[key]
    return out.flatten(2).amax(2).argmax(1).cpu() if out.dim() == 4 else out.argmax(1).cpu()


def _targets(model, images, target, layer) -> torch.Tensor:
    n = len(images)
    if target is None:
        return default_targets(model, images, layer)
    if isinstance(target, bool):
        raise AttributionError(f"target must be an int or one int per image, not {target!r}")
    if isinstance(target, int):
        return torch.full((n,), target, dtype=torch.long, device="cpu")
    t = torch.as_tensor(target)
    if t.dim() != 1 or len(t) != n or t.is_floating_point() or t.dtype == torch.bool:
        raise AttributionError(
            f"target must be an int or one int per image ({n}), got {tuple(t.shape)} of {t.dtype}"
        )
    return t.long().cpu()


def _options(given: dict, allowed: set, method: str) -> dict:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise AttributionError(
            f"option(s) {unknown} do not apply to method={method!r}; it takes {sorted(allowed)}"
        )
    return given


def attribute(
    model: nn.Module,
    images: torch.Tensor,
    target: "int | Sequence[int] | torch.Tensor | None" = None,
    *,
    method: str = "deconvnet",
    layer: "str | int" = "logits",
    progress: bool = False,
    **options,
) -> torch.Tensor:
    """``(N, C, H, W)`` attributions of ``target`` at ``layer`` for ``images`` by ``method``.

    ``method``: ``"deconvnet"`` (the paper's projection, Fig. 1), ``"guided"`` (guided
    backpropagation), ``"gradient"`` (the plain gradient) or ``"occlusion"`` (Fig. 7).
    ``options`` go to the method: for the projections ``scale`` (``"activation"``, the paper's
    default, or ``"unit"``: the unit's gradient, Captum's convention), ``batch_size`` and
    ``method`` (the deconvnet's implementation); for occlusion ``window``/``stride`` (default: a
    quarter of the side in steps of a 28th), ``fill``, ``batch_size`` and the approximation knobs
    of :func:`zfcore.occlusion.occlude` (``mode="fast"``, ``precision``, ``truncate``,
    ``coarse``, ``refine``, ``tol``).
    The result lies on the images' device.
    """
    images = _check_images(images)
    if method not in METHODS:
        raise AttributionError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    key = layer_key(layer, model)
    targets = _targets(model, images, target, key)
    if method in RULES:
        opts = _options(options, _PROJECT_OPTIONS, method)
        req = requests(torch.arange(len(images), device="cpu"), targets)
        return project(model, images, key, req, rule=method, progress=progress, **opts).pixels
    opts = _options(options, _OCCLUDE_OPTIONS, method)
    side = min(images.shape[-2:])
    window, stride = default_window(side)
    opts = {"window": window, "stride": stride, **opts}
    hidden = key != "logits"
    out = torch.empty_like(images)
    items = range(len(images))
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc=f"occlusion ({key})", unit="image")
    for i in items:
        t = int(targets[i])
        res = (
            occlude(model, images[i], layer=key, feature=t, **opts)
            if hidden
            else occlude(model, images[i], target=t, **opts)
        )
        pix = pixel_attribution(res, "feature_total" if hidden else "prob_target")
        out[i] = pix.to(out, non_blocking=True)[None].expand(images.shape[1], -1, -1)
    return out
